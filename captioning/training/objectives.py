"""The two training objectives, each on a batch of images with their captions, and their targets.

- :func:`xe_batch`: teacher-forced cross-entropy (label-smoothed) plus the attention regulariser
  of Show, Attend and Tell;
- :func:`scst_batch`: self-critical sequence training (Rennie et al. 2017): REINFORCE with the
  CIDEr-D of sampled captions as reward, minus a baseline; :func:`scst_xe_batch` adds a weighted
  cross-entropy term to it.

:class:`Objective` wraps the decoder and the fine-tuned encoder blocks, so that one forward()
call goes from cached features to the loss (what DistributedDataParallel needs).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from ..decoding import greedy, sample
from ..vocab import Vocabulary, tokenize
from .config import TrainConfig
from .metrics import CiderD

_MIRRORED = {"left": "right", "right": "left"}  # words whose meaning a horizontal flip swaps


def mirror_caption(caption: str) -> str:
    """The caption of the mirrored photo: lower-cased words, "left" and "right" swapped."""
    return " ".join(_MIRRORED.get(w, w) for w in tokenize(caption))


def caption_targets(items, vocab: Vocabulary, max_length: int, *, mirror: bool = False) -> list[list[list[int]]]:
    """Per image, its captions as [<start>, words..., <end>] (words cut at max_length): the
    cross-entropy targets."""
    return [[[vocab.start_id, *vocab.encode(mirror_caption(c) if mirror else c)[:max_length], vocab.end_id]
             for c in it.captions] for it in items]


def xe_batch(decoder, grid, captions, cfg: TrainConfig, device) -> tuple[torch.Tensor, float]:
    """Cross-entropy + attention regulariser for a batch of images (I, S*S, 1280) with all their
    captions. The loss is a mean over captions of per-caption means, so DDP halves average exactly."""
    rows = sorted(((len(c) - 1, i, c) for i, image_captions in enumerate(captions) for c in image_captions),
                  reverse=True)
    lengths = [n for n, _, _ in rows]  # predicted tokens per caption (words + <end>)
    tokens = torch.zeros(len(rows), lengths[0] + 1, dtype=torch.long)
    for r, (_, _, c) in enumerate(rows):
        tokens[r, :len(c)] = torch.tensor(c)
    row_image = torch.tensor([i for _, i, _ in rows], device=device)
    grid = grid.to(device).float()  # (I, S*S, 1280)
    tokens = tokens.to(device)
    logits, alphas = decoder.forward_packed(grid, grid.mean(1), row_image, tokens, lengths)
    targets = pack_padded_sequence(tokens[:, 1:], lengths, batch_first=True)
    token_loss = F.cross_entropy(logits, targets.data, reduction="none", label_smoothing=cfg.label_smoothing)
    row_of_token = pack_padded_sequence(torch.arange(len(rows)).unsqueeze(1).expand_as(tokens[:, 1:]),
                                        lengths, batch_first=True).data.to(device)
    lengths_t = torch.tensor(lengths, dtype=torch.float, device=device)
    per_caption = torch.zeros(len(rows), device=device).index_add_(0, row_of_token, token_loss) / lengths_t
    attention_reg = ((1.0 - alphas.sum(dim=1)) ** 2).mean(dim=1)  # (N,) sum over words, mean over cells
    loss = (per_caption + cfg.attention_reg * attention_reg).mean()
    return loss, float(per_caption.detach().mean())


def scst_batch(decoder, grid, batch_refs, cfg: TrainConfig, cider: CiderD, vocab, device, gen):
    """REINFORCE with the CIDEr-D of captions sampled from the nucleus-truncated policy as reward,
    minus a baseline: the greedy caption's reward or the mean of the image's other samples."""
    grid = grid.to(device).float()  # (I, S*S, 1280)
    pooled = grid.mean(1)
    k = cfg.scst_samples
    if cfg.scst_baseline == "greedy":
        decoder.eval()
        with torch.no_grad():
            base = greedy(decoder, grid, pooled, vocab=vocab, max_length=cfg.max_length)
        decoder.train()
        baseline = cider.score([" ".join(vocab.decode(h.tokens)) for h in base], batch_refs).repeat(k)  # (I*k,)
    rep = torch.arange(len(batch_refs), device=device).repeat_interleave(k)
    s = sample(decoder, grid[rep], pooled[rep], vocab=vocab, max_length=cfg.max_length, top_p=cfg.scst_top_p,
               generator=gen)  # s.logprobs: log-probs under the truncated policy actually sampled from
    words = [" ".join(vocab.decode(row)) for row in s.tokens.tolist()]
    reward = cider.score(words, [batch_refs[j // k] for j in range(len(words))])  # (I*k,)
    if cfg.scst_baseline == "mean":
        per_image = reward.reshape(-1, k)  # (I, k)
        baseline = ((per_image.sum(1, keepdims=True) - per_image) / (k - 1)).reshape(-1)  # leave-one-out mean
    advantage = torch.tensor(reward - baseline, dtype=torch.float, device=device)  # (I*k,)
    # REINFORCE: the gradient of log p(caption) = sum of its token log-probs, scaled by a
    # constant (the batch's token count), never by each caption's own length (that would bias it)
    loss = -(advantage * s.logprobs.sum(1)).sum() / s.mask.sum().clamp(min=1)
    return loss, float(reward.mean())


def scst_xe_batch(decoder, grid, captions, batch_refs, cfg: TrainConfig, cider: CiderD, vocab, device, gen):
    """:func:`scst_batch`'s loss plus ``cfg.scst_xe_weight`` times :func:`xe_batch`'s on the same
    grids (the references' words keep their probability, so the captions stay varied)."""
    loss, reward = scst_batch(decoder, grid, batch_refs, cfg, cider, vocab, device, gen)
    if cfg.scst_xe_weight:
        loss = loss + cfg.scst_xe_weight * xe_batch(decoder, grid, captions, cfg, device)[0]
    return loss, reward


class Objective(torch.nn.Module):
    """Wraps the decoder (and the fine-tuned encoder blocks) so DistributedDataParallel sees each
    loss as one forward() call: cached features -> grid -> loss."""

    def __init__(self, decoder: torch.nn.Module, encoder: torch.nn.Module, start: int | None):
        super().__init__()
        self.decoder, self.encoder, self.start = decoder, encoder, start

    def grid(self, features: torch.Tensor) -> torch.Tensor:
        """Cached rows -> (I, S*S, 1280) grids: as they are, or through the encoder blocks from ``start``."""
        features = features.float()  # (I, S*S, 1280), or (I, C, H, W) activations entering block start
        return features if self.start is None else self.encoder.tail(features, start=self.start).grid

    def forward(self, loss_fn, features, *args):
        return loss_fn(self.decoder, self.grid(features), *args)
