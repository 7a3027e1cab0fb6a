"""Does the decoder's dropout say when a caption is wrong? (a measurement, not a test)

    python scripts/dropout_confidence.py --cache runs/confidence/lite2.npz [--masks 10] [--seeds 0,1,2]

Monte Carlo dropout as a quality signal (Fomicheva et al. 2020, "Unsupervised Quality Estimation for
Neural Machine Translation"): each dev caption of ``caption-calibrate``'s cache (build it first with
``caption-calibrate --cache ...``) is re-scored by teacher forcing with the decoder's dropout on,
under ``--masks`` random masks: the mean of its per-word log-probability over the masks (D-TP) and
its spread (D-Var). Then, as ``caption-calibrate`` fits the shipped confidence (a logistic model on
half of each dev split, AUROC on the other half for telling captions under CIDEr-D 0.2 from the
rest), it prints held-out AUROC pooled / Flickr8k / COCO for the shipped features, with each new
signal added, and for each signal alone, averaged over ``--seeds`` (the halves).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from captioning import Captioner
from captioning.training.calibrate import held_out_auroc, read_dev_cache


def dropout_scores(cap: Captioner, images: list[str], tokens: list[list[str]], masks: int, seed: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Per caption: mean over ``masks`` dropout masks of its mean per-word log-probability (incl.
    <end>), and the standard deviation of that over the masks."""
    vocab, decoder = cap.vocab, cap.model.decoder
    torch.manual_seed(seed)
    means, spreads = [], []
    for start in range(0, len(images), 32):
        enc = cap.encode(images[start:start + 32])
        rows = [[vocab.start_id] + [vocab.stoi.get(w, vocab.unk_id) for w in t] + [vocab.end_id]
                for t in tokens[start:start + 32]]
        width = max(map(len, rows))
        ids = torch.tensor([r + [vocab.pad_id] * (width - len(r)) for r in rows])  # (B, T+1)
        mask = ids[:, 1:] != vocab.pad_id  # (B, T) the words (and <end>) predicted
        grid = enc.grid  # (B, S*S, D)
        per_mask = []
        decoder.train()
        try:
            with torch.no_grad():
                for _ in range(masks):
                    logits, _ = decoder(grid, enc.pooled, ids[:, :-1])  # (B, T, V)
                    lp = logits.log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, T)
                    per_mask.append(((lp * mask).sum(1) / mask.sum(1)).numpy())
        finally:
            decoder.eval()
        per_mask = np.stack(per_mask)  # (masks, B)
        means.append(per_mask.mean(0))
        spreads.append(per_mask.std(0))
    return np.concatenate(means), np.concatenate(spreads)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", required=True, help="caption-calibrate's --cache file (.npz, with its .json)")
    p.add_argument("--weights", default=None, help="bundle the cache was made with (default: weights/DEFAULT)")
    p.add_argument("--masks", type=int, default=10, help="dropout masks per caption (default: %(default)s)")
    p.add_argument("--seeds", default="0,1,2", help="dev halves to average over (default: %(default)s)")
    p.add_argument("--components", type=int, default=128, help="as caption-calibrate (default: %(default)s)")
    p.add_argument("--k", type=int, default=10, help="as caption-calibrate (default: %(default)s)")
    args = p.parse_args(argv)

    got = read_dev_cache(args.cache, components=args.components, k=args.k)
    meta, names, shipped, bad, dataset = got.meta, got.names, got.shipped, got.bad, got.dataset
    cap = Captioner.load(args.weights, device="cpu")

    extra = []
    for n in names:
        mean, spread = dropout_scores(cap, meta[f"{n}/images"], meta[f"{n}/tokens"], args.masks, seed=0)
        extra.append(np.column_stack([mean, spread]))
        print(f"{n}: {len(mean)} dev captions re-scored under {args.masks} dropout masks")
    extra = np.concatenate(extra)
    print(f"correlation of D-TP with the beam score: {np.corrcoef(extra[:, 0], shipped[:, 0])[0, 1]:.3f}")

    variants = {"shipped": shipped, "+ D-TP": np.column_stack([shipped, extra[:, 0]]),
                "+ D-Var": np.column_stack([shipped, extra[:, 1]]), "+ both": np.column_stack([shipped, extra]),
                "D-TP alone": extra[:, :1], "D-Var alone": -extra[:, 1:]}
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"held-out AUROC (bad: CIDEr-D < 0.2), mean over seeds {seeds}: pooled / " + " / ".join(names))
    for label, x in variants.items():
        print(f"  {label:>12}: " + " / ".join(f"{v:.3f}" for v in held_out_auroc(x, bad, dataset, names, seeds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
