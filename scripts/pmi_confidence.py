"""Is a caption more likely for its own photo than for any photo? (a measurement, not a test)

    python scripts/pmi_confidence.py --cache runs/confidence/lite2.npz [--background 32] [--seeds 0,1,2]

The beam's score says how likely the caption is given the photo; a generic caption ("a man is standing in front of a
building") is likely given almost any photo. Its pointwise mutual information with the photo says how much the photo
itself made it likely: log p(caption | photo) - log mean_j p(caption | photo_j) over ``--background`` training photos
drawn once (teacher forcing, the decoder in eval mode). Each dev caption of ``caption-calibrate``'s cache (build it first
with ``caption-calibrate --cache ...``) gets its PMI, in total and per word; each is added to the shipped features
and fitted and scored as ``caption-calibrate`` does (held-out AUROC for captions under CIDEr-D 0.2, pooled / per
dataset, the mean over the halves of ``--seeds``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from captioning import Captioner
from captioning.training.calibrate import auroc, held_out_auroc, read_dev_cache
from captioning.training.data import read_dataset

BATCH = 32


def grids(cap: Captioner, images: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, S*S, D) feature grids and (N, D) semantic vectors of the images."""
    out_grid, out_pooled = [], []
    for start in range(0, len(images), BATCH):
        enc = cap.encode(images[start:start + BATCH])
        out_grid.append(enc.grid.float())  # (B, S*S, D)
        out_pooled.append(enc.pooled.float())
    return torch.cat(out_grid), torch.cat(out_pooled)


def token_ids(cap: Captioner, captions: list[list[str]]) -> torch.Tensor:
    """(C, T+1) <start> caption <end>, padded."""
    vocab = cap.vocab
    rows = [[vocab.start_id] + [vocab.stoi.get(w, vocab.unk_id) for w in t] + [vocab.end_id] for t in captions]
    width = max(map(len, rows))
    return torch.tensor([r + [vocab.pad_id] * (width - len(r)) for r in rows])


def paired_log_probs(cap: Captioner, grid: torch.Tensor, pooled: torch.Tensor, ids: torch.Tensor) -> np.ndarray:
    """(N,) summed log-probability of caption row i (its words and <end>) given image i (teacher forcing)."""
    with torch.no_grad():
        logits, _ = cap.model.decoder(grid, pooled, ids[:, :-1])  # (N, T, V)
        lp = logits.log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)  # (N, T)
        return (lp * (ids[:, 1:] != cap.vocab.pad_id)).sum(1).numpy()


def background_log_probs(cap: Captioner, grid: torch.Tensor, pooled: torch.Tensor, captions: list[list[str]]
                         ) -> np.ndarray:
    """(C, K) each caption's summed log-probability given each of the K background images."""
    ids, k = token_ids(cap, captions), len(grid)
    per = max(1, 256 // k)  # captions per forward pass
    out = np.zeros((len(captions), k))
    for c in range(0, len(captions), per):
        chunk = ids[c:c + per]  # (c, T+1)
        n = len(chunk)
        out[c:c + n] = paired_log_probs(cap, grid.repeat(n, 1, 1), pooled.repeat(n, 1),  # (c*K, S*S, D), (c*K, D)
                                        chunk.repeat_interleave(k, 0)).reshape(n, k)  # rows: caption-major
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", required=True, help="caption-calibrate's --cache file (.npz, with its .json)")
    p.add_argument("--weights", default=None, help="bundle the cache was made with (default: weights/DEFAULT)")
    p.add_argument("--background", type=int, default=32, help="training photos the caption is also scored on "
                                                               "(default: %(default)s)")
    p.add_argument("--seeds", default="0,1,2", help="dev halves to average over (default: %(default)s)")
    args = p.parse_args(argv)

    got = read_dev_cache(args.cache)
    meta, names, shipped, bad, dataset = got.meta, got.names, got.shipped, got.bad, got.dataset
    cap = Captioner.load(args.weights, device="cpu")
    train = [str(it.image) for n in names for it in read_dataset(str(Path(meta[f"{n}/images"][0]).parents[1]
                                                                       / "captions.csv"), split="train")]
    rng = np.random.default_rng(0)
    bg_grid, bg_pooled = grids(cap, [train[i] for i in rng.choice(len(train), args.background, replace=False)])

    pmi = []
    for n in names:
        captions = meta[f"{n}/tokens"]
        own = np.zeros(len(captions))
        for start in range(0, len(captions), BATCH):
            g, pooled = grids(cap, meta[f"{n}/images"][start:start + BATCH])
            own[start:start + len(g)] = paired_log_probs(cap, g, pooled, token_ids(cap, captions[start:start + BATCH]))
        others = background_log_probs(cap, bg_grid, bg_pooled, captions)  # (C, K)
        marginal = np.logaddexp.reduce(others, axis=1) - np.log(others.shape[1])
        words = np.array([len(t) + 1 for t in captions])
        pmi.append(np.column_stack([own - marginal, (own - marginal) / words]))
        print(f"{n}: {len(captions)} dev captions scored under their photo and {args.background} others")
    pmi = np.concatenate(pmi)
    seeds = [int(s) for s in args.seeds.split(",")]
    print("alone (all dev): PMI " + f"{auroc(-pmi[:, 0], bad):.3f}, per word {auroc(-pmi[:, 1], bad):.3f}")
    print(f"held-out AUROC (bad: CIDEr-D < 0.2), mean over seeds {seeds}: pooled / " + " / ".join(names))
    for label, x in {"shipped": shipped, "+ PMI": np.column_stack([shipped, pmi[:, 0]]),
                     "+ PMI per word": np.column_stack([shipped, pmi[:, 1]]),
                     "+ both": np.column_stack([shipped, pmi])}.items():
        print(f"  {label:>16}: " + " / ".join(f"{v:.3f}" for v in held_out_auroc(x, bad, dataset, names, seeds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
