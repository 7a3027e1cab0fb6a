"""Does where a photo lies in the semantic space say how good its caption is? (a measurement, not a test)

    python scripts/vector_confidence.py --cache runs/confidence/lite2.npz [--seeds 0,1,2]

Two signals from the photo's semantic vector, added to the shipped confidence features (``caption-calibrate``'s
cache, built first with ``caption-calibrate --cache ...``), each fitted and scored as ``caption-calibrate`` does (a
logistic model on half of each dev split, held-out AUROC for telling captions under CIDEr-D 0.2 from the rest,
pooled / per dataset, averaged over ``--seeds``):

- the vector's first principal coordinates (the training photos' directions the bundle keeps): lets the model learn
  which kinds of photo it captions badly;
- the local error rate: the share of bad captions among the ``--near`` fitting-half dev photos nearest to the photo
  (cosine; a fitting photo's own caption left out), a nonparametric version of the same.
"""
from __future__ import annotations

import argparse

import numpy as np

from captioning.training.calibrate import dev_halves, held_out_auroc, read_dev_cache


def local_error_rate(unit: np.ndarray, bad: np.ndarray, fit: np.ndarray, near: int) -> np.ndarray:
    """(N,) share of bad captions among the ``near`` fitting photos nearest each photo (itself excluded)."""
    sims = unit @ unit[fit].T  # (N, n_fit)
    own = np.flatnonzero(fit)
    sims[own, np.arange(len(own))] = -np.inf  # a fitting photo is not its own neighbour
    nearest = np.argpartition(sims, -near, axis=1)[:, -near:]  # (N, near)
    return bad[fit][nearest].mean(axis=1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", required=True, help="caption-calibrate's --cache file (.npz, with its .json)")
    p.add_argument("--seeds", default="0,1,2", help="dev halves to average over (default: %(default)s)")
    p.add_argument("--components", type=int, default=128, help="as caption-calibrate (default: %(default)s)")
    p.add_argument("--k", type=int, default=10, help="as caption-calibrate (default: %(default)s)")
    p.add_argument("--coordinates", default="4,8,16,32", help="principal coordinates tried (default: %(default)s)")
    p.add_argument("--near", default="10,25,50", help="neighbours for the local error rate (default: %(default)s)")
    args = p.parse_args(argv)

    got = read_dev_cache(args.cache, components=args.components, k=args.k)
    arrays, names, familiar, shipped, bad, dataset = got.arrays, got.names, got.familiar, got.shipped, got.bad, got.dataset
    pooled = np.concatenate([arrays[f"{n}/pooled"] for n in names]).astype(np.float64)  # (N, D)
    unit = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    coords = (unit - familiar.center) @ familiar.components  # (N, P) principal coordinates
    seeds = [int(s) for s in args.seeds.split(",")]

    def show(label: str, aurocs: np.ndarray) -> None:
        print(f"  {label:>26}: " + " / ".join(f"{v:.3f}" for v in aurocs))

    print(f"held-out AUROC (bad: CIDEr-D < 0.2), mean over seeds {seeds}: pooled / " + " / ".join(names))
    show("shipped", held_out_auroc(shipped, bad, dataset, names, seeds))
    for m in (int(c) for c in args.coordinates.split(",")):
        show(f"+ {m} principal coordinates", held_out_auroc(np.column_stack([shipped, coords[:, :m]]), bad, dataset,
                                                           names, seeds))
    for near in (int(c) for c in args.near.split(",")):
        # the local error rate depends on the fitting half: computed per seed
        rows = [held_out_auroc(np.column_stack([shipped, local_error_rate(unit, bad, dev_halves(dataset, names, seed),
                                                                          near)]), bad, dataset, names, [seed])
                for seed in seeds]
        show(f"+ error rate of {near} nearest", np.mean(rows, axis=0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
