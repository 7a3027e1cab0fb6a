"""Caption decoding: greedy, batched beam search, and seeded sampling.

All functions take the decoder and the encoder's grid / semantic vector for a batch of
images and run the whole batch at once (beam search runs batch x beam rows per step).
They do not switch grad mode: callers wrap inference in ``torch.inference_mode()``; SCST
training calls :func:`sample` with gradients on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .config import DECODING_OPTIONS, Decoding  # noqa: F401 (re-exported)
from .decoder import AttentionLSTMDecoder
from .vocab import Vocabulary

NEG_INF = float("-inf")


@dataclass
class Hypothesis:
    tokens: list[int]  # word ids without <start>/<end>
    logprob: float  # sum of log-probabilities incl. the <end> token when present
    score: float  # ranking score: logprob / length ** length_penalty
    attention: torch.Tensor  # (len(tokens), S*S) attention weights of each emitted word


def _length(n_words: int, ended: bool) -> int:
    return n_words + int(ended)


def _finalize(seq: list[int], step_logprobs: list[float], alphas: torch.Tensor, end_id: int,
              length_penalty: float) -> Hypothesis:
    """Cut a raw token row at <end>; score = summed log-prob / length ** penalty."""
    ended = end_id in seq
    n = seq.index(end_id) if ended else len(seq)
    logprob = float(sum(step_logprobs[: _length(n, ended)]))
    return Hypothesis(seq[:n], logprob, logprob / max(_length(n, ended), 1) ** length_penalty, alphas[:n])


def greedy(decoder: AttentionLSTMDecoder, grid: torch.Tensor, pooled: torch.Tensor, *, vocab: Vocabulary,
           max_length: int = Decoding.max_length, min_length: int = Decoding.min_length) -> list[Hypothesis]:
    """Most likely word at each step, for the whole batch at once."""
    n = grid.shape[0]
    state = decoder.init_state(grid, pooled)
    tokens = torch.full((n,), vocab.start_id, dtype=torch.long, device=grid.device)
    seqs, logps, alphas = [], [], []
    done = torch.zeros(n, dtype=torch.bool, device=grid.device)
    for t in range(max_length + 1):
        logits, state, alpha = decoder.step(tokens, state)
        logprobs = logits.float().log_softmax(dim=-1)  # (N, V), in float32 whatever precision the logits have
        _restrict(logprobs, t, vocab, min_length=min_length, max_length=max_length)
        logp, tokens = logprobs.max(dim=-1)
        seqs.append(tokens)
        logps.append(logp)
        alphas.append(alpha)
        done |= tokens == vocab.end_id
        if done.all():
            break
    seqs_t, logps_t, alphas_t = torch.stack(seqs, 1), torch.stack(logps, 1), torch.stack(alphas, 1)
    return [_finalize(seqs_t[i].tolist(), logps_t[i].tolist(), alphas_t[i].float().cpu(), vocab.end_id, 0.0)
            for i in range(n)]


def _restrict(logprobs: torch.Tensor, t: int, vocab: Vocabulary, *, min_length: int, max_length: int) -> None:
    """In place: never <pad>/<start>/<unk>; no <end> before min_length words; only <end>
    after max_length words."""
    logprobs[..., [vocab.pad_id, vocab.start_id, vocab.unk_id]] = NEG_INF
    _restrict_end(logprobs, t, vocab.end_id, min_length=min_length, max_length=max_length)


def _restrict_end(logprobs: torch.Tensor, t: int, end_id: int, *, min_length: int, max_length: int) -> None:
    if t < min_length:
        logprobs[..., end_id] = NEG_INF
    if t >= max_length:
        end = logprobs[..., end_id].clone()
        logprobs.fill_(NEG_INF)
        logprobs[..., end_id] = end


def _block_repeated_ngrams(logprobs: torch.Tensor, seqs: torch.Tensor, n: int) -> None:
    """In place: forbid any word that would repeat an n-gram already in the row. logprobs (R, V), seqs (R, T)."""
    if n <= 0 or seqs.shape[1] < n:
        return
    ngrams = seqs.unfold(1, n, 1)  # (R, T - n + 1, n) every n-gram of each row
    prefix = seqs[:, seqs.shape[1] - (n - 1):]  # (R, n - 1) the words the next n-gram starts with
    rows, starts = (ngrams[:, :, :n - 1] == prefix.unsqueeze(1)).all(-1).nonzero(as_tuple=True)
    logprobs[rows, ngrams[rows, starts, n - 1]] = NEG_INF


def _word_mask(size: int, ids: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """(V,) True at ``ids``."""
    mask = torch.zeros(size, dtype=torch.bool, device=device)
    mask[list(ids)] = True
    return mask


def _block_repeated_words(logprobs: torch.Tensor, seqs: torch.Tensor, once: torch.Tensor) -> None:
    """In place: forbid the ``once`` words (V,) already in the row. logprobs (R, V), seqs (R, T)."""
    rows, steps = once[seqs].nonzero(as_tuple=True)  # each once-word used so far: its row and step
    logprobs[rows, seqs[rows, steps]] = NEG_INF


def _block_dangling_end(logprobs: torch.Tensor, seqs: torch.Tensor, dangling: torch.Tensor, end_id: int) -> None:
    """In place: no <end> right after a ``dangling`` word (V,). logprobs (R, V), seqs (R, T)."""
    if seqs.shape[1]:
        logprobs[:, end_id].masked_fill_(dangling[seqs[:, -1]], NEG_INF)


def beam_search(decoder: AttentionLSTMDecoder, grid: torch.Tensor, pooled: torch.Tensor, *, vocab: Vocabulary,
                beam_size: int = Decoding.beam_size, max_length: int = Decoding.max_length,
                min_length: int = Decoding.min_length, length_penalty: float = Decoding.length_penalty,
                no_repeat_ngram_size: int = Decoding.no_repeat_ngram_size,
                no_repeat_words: bool = Decoding.no_repeat_words,
                no_dangling_end: bool = Decoding.no_dangling_end) -> list[list[Hypothesis]]:
    """Batched beam search: all images x beams advance together in one (B*K)-row batch.

    Finished beams are carried along with frozen scores (they can only extend with <pad>
    at log-prob 0), so every image keeps exactly K hypotheses. Returns, per image, the K
    hypotheses sorted best first by ``logprob / length ** length_penalty``. ``no_repeat_words``:
    no word outside :data:`~captioning.vocab.REPEATABLE_WORDS` twice in a caption;
    ``no_dangling_end``: no <end> right after :data:`~captioning.vocab.DANGLING_WORDS` (but at
    ``max_length`` <end> is forced). The options and their defaults are :class:`Decoding`'s.

    The decoder runs only the rows still writing (a finished beam's next word is <pad>, known
    without it), and at step 0 one row per image (the K beams start the same); each parent's
    attention once, whatever its number of new beams; every row reads its image's projected grid
    through the state's row -> image index, never a copy of it. A batch of at most MIN_ROWS rows,
    or of a number of rows not a multiple of ROW_MULTIPLE, runs all its rows in place at every step
    instead: BLAS sums such batches' rows by position, so each row keeps the numbers it has in the
    straightforward search.
    """
    b, k, dev = grid.shape[0], beam_size, grid.device
    rules = _Rules(vocab, dev, min_length=min_length, max_length=max_length, ngram=no_repeat_ngram_size,
                   once=no_repeat_words, dangling=no_dangling_end)
    beams = _Beams(b, k, vocab.end_id, vocab.start_id, dev)
    compact = b * k > MIN_ROWS and b * k % ROW_MULTIPLE == 0
    state = decoder.init_state(grid, pooled)  # B rows: each image's grid projected once
    every = torch.arange(b * k, device=dev)  # (B*K,)
    image = every // k  # (B*K,) each full row's image; at step 0 of a compact batch beam 0 stands for all K
    src = image if compact else every  # (B*K,) the computed row each full row takes
    computed = beams.offsets.view(-1) if compact else every  # (n,) the full rows computed
    parents = torch.arange(b, device=dev) if compact else image  # (n,) the state row each computed row extends
    for t in range(max_length + 1):
        state = _attend_rows(decoder, state, parents, most=b * k, share=compact)  # (n rows)
        logprobs, state, alpha = _run_rows(decoder, state, beams.tokens[computed], most=b * k)
        rules.apply(logprobs, t, beams.seqs.view(b * k, -1)[computed])  # (B, K, t) -> (n, t) words so far
        # (B*K, S*S) each row's attention (a finished row's is never returned: any row's will do)
        alpha = alpha[src.clamp(min=0)]
        parent_rows = beams.advance(_full_rows(logprobs, src, beams.finished.view(-1), vocab.pad_id), alpha)
        if beams.finished.all():
            break
        parents = src[parent_rows]  # (B*K,) the row of this step's state each new beam extends
        if compact:
            computed = (~beams.finished).view(-1).nonzero().squeeze(1)  # (n,) full rows still writing
            parents, src = parents[computed], torch.full_like(src, -1)
            src[computed] = torch.arange(len(computed), device=dev)
    return beams.hypotheses(length_penalty)


# A compact step runs at least MIN_ROWS rows, a multiple of ROW_MULTIPLE (padded with copies, at most
# B*K): BLAS sums a few rows, or a count that is not such a multiple, in another order (by position).
MIN_ROWS, ROW_MULTIPLE = 16, 4


def _padding(n: int, most: int, device: torch.device) -> torch.Tensor:
    """Row index (>= n rows) that runs rows 0..n-1 and then copies of them."""
    rows = max(n, min(most, max(MIN_ROWS, -(-n // ROW_MULTIPLE) * ROW_MULTIPLE)))
    return torch.arange(rows, device=device) % n  # (rows,)


def _attend_rows(decoder: AttentionLSTMDecoder, state: Any, index: torch.Tensor, *, most: int, share: bool) -> Any:
    """The states of rows ``index`` with their attention computed: with ``share`` once per distinct
    row (beams that extend one parent attend alike), else row by row in place."""
    if not share:
        return decoder.attend_ahead(state.rows(index))
    distinct, inverse = torch.unique(index, return_inverse=True)  # (u,), (n,)
    return decoder.attend_ahead(state.rows(distinct[_padding(len(distinct), most, index.device)])).rows(inverse)


def _run_rows(decoder: AttentionLSTMDecoder, state: Any, tokens: torch.Tensor, *,
              most: int) -> tuple[torch.Tensor, Any, torch.Tensor]:
    """One step of ``len(tokens)`` rows (state row i feeds token i) -> log-probabilities (n, V),
    next state (>= n rows, the first n those of the tokens) and attention (n, S*S)."""
    n = len(tokens)
    index = _padding(n, most, tokens.device)
    if len(index) > n:
        state, tokens = state.rows(index), tokens[index]
    logits, state, alpha = decoder.step(tokens, state)
    return logits[:n].float().log_softmax(dim=-1), state, alpha[:n]  # (n, V), state, (n, S*S)


def _full_rows(logprobs: torch.Tensor, src: torch.Tensor, finished: torch.Tensor, pad_id: int) -> torch.Tensor:
    """All B*K rows' next-word log-probabilities (B*K, V): a row still writing takes computed row
    ``src[r]`` of ``logprobs``; a finished row only <pad>, at log-prob 0."""
    full = logprobs.new_full((len(src), logprobs.shape[1]), NEG_INF)  # (B*K, V)
    full[:, pad_id].masked_fill_(finished, 0.0)
    live = (~finished).nonzero().squeeze(1)  # (n',) rows still writing
    return full.index_copy_(0, live, logprobs.index_select(0, src[live]))


class _Rules:
    """The word restrictions of a beam-search step (:func:`_restrict` and the blocks)."""

    def __init__(self, vocab: Vocabulary, device: torch.device, *, min_length: int, max_length: int,
                 ngram: int, once: bool, dangling: bool):
        self.vocab, self.min_length, self.max_length, self.ngram = vocab, min_length, max_length, ngram
        self.once = _word_mask(len(vocab), vocab.once_ids, device) if once else None  # allowed once per caption
        self.dangling = _word_mask(len(vocab), vocab.dangling_ids, device) if dangling else None  # no <end> after

    def apply(self, logprobs: torch.Tensor, t: int, words: torch.Tensor) -> None:
        """In place on logprobs (n, V) of step ``t``; words (n, t) each row's words so far."""
        _restrict(logprobs, t, self.vocab, min_length=self.min_length, max_length=self.max_length)
        _block_repeated_ngrams(logprobs, words, self.ngram)
        if self.once is not None:
            _block_repeated_words(logprobs, words, self.once)
        if self.dangling is not None and t < self.max_length:
            _block_dangling_end(logprobs, words, self.dangling, self.vocab.end_id)


class _Beams:
    """K beams per image of B, rows image-major: scores, words, and each step's back-pointers."""

    def __init__(self, b: int, k: int, end_id: int, start_id: int, device: torch.device):
        self.b, self.k, self.end_id = b, k, end_id
        self.scores = torch.zeros(b, k, device=device)
        self.scores[:, 1:] = NEG_INF  # at step 0 all beams are the same: expand only the first
        self.finished = torch.zeros(b, k, dtype=torch.bool, device=device)
        self.seqs = torch.empty(b, k, 0, dtype=torch.long, device=device)  # (B, K, t) words so far
        self.step_logps = torch.empty(b, k, 0, device=device)  # (B, K, t) each word's log-prob
        self.tokens = torch.full((b * k,), start_id, dtype=torch.long, device=device)  # (B*K,) the last words
        self.offsets = (torch.arange(b, device=device) * k).unsqueeze(1)  # (B, 1) first row of each image
        self.alphas: list[torch.Tensor] = []  # per step (B*K, S*S): each row's attention
        self.parents: list[torch.Tensor] = []  # per step (B, K): the beam each new beam extends

    def advance(self, logprobs: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """Keep the K best extensions per image of logprobs (B*K, V), the rows' attention alpha
        (B*K, S*S); returns the parent row of each new beam (B*K,)."""
        b, k = self.b, self.k
        vocab_size = logprobs.shape[-1]
        logprobs = logprobs.view(b, k * vocab_size)  # (B, K*V)
        candidates = (self.scores.unsqueeze(-1) + logprobs.view(b, k, vocab_size)).view(b, k * vocab_size)
        self.scores, flat = candidates.topk(k, dim=-1)  # (B, K)
        beam, word = flat // vocab_size, flat % vocab_size  # (B, K) parent beam and new word
        # (B, K, t+1): the parent's words and log-probs, and the new one
        self.seqs = torch.cat([self.seqs.gather(1, beam.unsqueeze(-1).expand_as(self.seqs)), word.unsqueeze(-1)], -1)
        self.step_logps = torch.cat([self.step_logps.gather(1, beam.unsqueeze(-1).expand_as(self.step_logps)),
                                     logprobs.gather(1, flat).unsqueeze(-1)], dim=-1)
        self.finished = self.finished.gather(1, beam) | (word == self.end_id)
        self.alphas.append(alpha)
        self.parents.append(beam)
        self.tokens = word.view(-1)  # (B*K,)
        return (self.offsets + beam).view(-1)  # (B*K,)

    def attention(self) -> torch.Tensor:
        """(B, K, T, S*S): the attention of each beam's words, followed back through the parents."""
        b, k = self.b, self.k
        beam = torch.arange(k, device=self.scores.device).expand(b, k)  # (B, K) beams after the last step
        steps = []
        for alpha, parents in zip(reversed(self.alphas), reversed(self.parents)):
            beam = parents.gather(1, beam)  # (B, K) the row that wrote this step's word
            steps.append(alpha.view(b, k, -1).gather(1, beam.unsqueeze(-1).expand(b, k, alpha.shape[-1])))
        return torch.stack(steps[::-1], dim=2)  # (B, K, T, S*S)

    def hypotheses(self, length_penalty: float) -> list[list[Hypothesis]]:
        """Per image, the K hypotheses best first."""
        seqs, logps, alphas = self.seqs.tolist(), self.step_logps.tolist(), self.attention().float().cpu()
        out = []
        for i in range(self.b):
            hyps = [_finalize(seqs[i][j], logps[i][j], alphas[i, j], self.end_id, length_penalty) for j in range(self.k)]
            out.append(sorted(hyps, key=lambda h: h.score, reverse=True))
        return out


@dataclass
class Samples:
    tokens: torch.Tensor  # (N, T) sampled word ids, <pad> after <end>
    logprobs: torch.Tensor  # (N, T) log-probability of each sampled word under the sampling policy (0 on padding)
    mask: torch.Tensor  # (N, T) True for real words and the <end> token
    attention: torch.Tensor  # (N, T, S*S) attention weights at each step


def sample(decoder: AttentionLSTMDecoder, grid: torch.Tensor, pooled: torch.Tensor, *, vocab: Vocabulary,
           max_length: int = Decoding.max_length, temperature: float = 1.0, top_p: float = 1.0,
           generator: torch.Generator | None = None) -> Samples:
    """Draw one caption per row (ancestral sampling with temperature and nucleus top-p).

    Reproducible for a seeded ``generator``. Differentiable through ``logprobs`` when
    called with gradients on (self-critical training).
    """
    if temperature <= 0:
        raise ValueError("temperature must be > 0 (use greedy() for temperature 0)")
    n = grid.shape[0]
    state = decoder.init_state(grid, pooled)
    tokens = torch.full((n,), vocab.start_id, dtype=torch.long, device=grid.device)
    alive = torch.ones(n, dtype=torch.bool, device=grid.device)
    out_tokens, out_logps, out_mask, out_alpha = [], [], [], []
    for t in range(max_length + 1):
        logits, state, alpha = decoder.step(tokens, state)
        out_alpha.append(alpha.detach())
        # the policy actually sampled from: temperature, forbidden tokens and nucleus removed,
        # renormalised; its log-probabilities keep their gradient (self-critical training)
        allowed = torch.zeros_like(logits, dtype=torch.float)  # (N, V): 0 = allowed, -inf = removed
        _restrict(allowed, t, vocab, min_length=0, max_length=max_length)
        policy = (logits / temperature + allowed).log_softmax(dim=-1)  # (N, V)
        if top_p < 1.0:
            policy = _nucleus(policy, top_p).log_softmax(dim=-1)  # renormalised over the nucleus
        tokens = torch.multinomial(policy.detach().exp(), 1, generator=generator).squeeze(1)  # (N,)
        tokens = tokens.masked_fill(~alive, vocab.pad_id)
        out_tokens.append(tokens)
        out_logps.append(policy.gather(1, tokens.unsqueeze(1)).squeeze(1) * alive)
        out_mask.append(alive.clone())
        alive = alive & (tokens != vocab.end_id)
        if not alive.any():
            break
    return Samples(torch.stack(out_tokens, 1), torch.stack(out_logps, 1), torch.stack(out_mask, 1),
                   torch.stack(out_alpha, 1))


def _nucleus(logprobs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of words whose probability mass reaches top_p (always >= 1 word)."""
    sorted_lp, order = logprobs.sort(dim=-1, descending=True)
    mass_before = sorted_lp.exp().cumsum(dim=-1) - sorted_lp.exp()
    sorted_lp = sorted_lp.masked_fill(mass_before >= top_p, NEG_INF)
    return torch.full_like(logprobs, NEG_INF).scatter(1, order, sorted_lp)


def samples_to_hypotheses(samples: Samples, *, vocab: Vocabulary) -> list[Hypothesis]:
    """Turn sampled rows into hypotheses (text, log-probability, attention)."""
    alphas = samples.attention.float().cpu()
    return [_finalize(row, lps, alphas[i], vocab.end_id, 0.0)
            for i, (row, lps) in enumerate(zip(samples.tokens.tolist(), samples.logprobs.detach().tolist()))]
