"""Do word detectors, or how common a caption's words are, say how good it is? (a measurement, not a test)

    python scripts/word_confidence.py --cache runs/confidence/lite2.npz [--seeds 0,1,2]

Visual word detectors (Fang et al. 2015, "From captions to visual concepts and back"): for every content word
that at least ``--min-photos`` training photos' references use, a ridge regression of "the references use it" on
the training photos' unit semantic vectors (closed form; one penalty ``--ridge`` per run). On a dev photo, the
detectors' lift of each of its caption's content words, log(predicted share / base rate), says how much the photo
itself supports the word; a caption gets the least and the mean lift of its words. Unlike the neighbour words the
shipped confidence uses (the references of the 10 nearest training photos), a detector sees every training photo.
Also tried: the caption's mean content-word idf (generic captions score low CIDEr-D). Each signal is added to the
shipped features (``caption-calibrate``'s cache, built first with ``caption-calibrate --cache ...``) and fitted and
scored as ``caption-calibrate`` does: held-out AUROC for telling captions under CIDEr-D 0.2 from the rest,
pooled / per dataset, the mean over the dev halves of ``--seeds``.
"""
from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from captioning.confidence import STOP_WORDS
from captioning.training.calibrate import auroc, held_out_auroc, read_dev_cache
from captioning.vocab import tokenize


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def word_lifts(train: np.ndarray, used: list[set[str]], dev: np.ndarray, captions: list[list[str]], *,
               min_photos: int, ridge: float) -> np.ndarray:
    """(N_dev, 2) the least and the mean detector lift of each caption's content words (0 when it has none)."""
    counts = Counter(w for s in used for w in s)
    index = {w: i for i, w in enumerate(sorted(w for w, c in counts.items() if c >= min_photos))}
    y = np.zeros((len(train), len(index)))  # (N_train, V) do photo i's references use word v
    for i, s in enumerate(used):
        y[i, [index[w] for w in s if w in index]] = 1
    center, base = train.mean(0), y.mean(0)  # (D,), (V,) the base rates
    x = train - center
    w = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ (y - base))  # (D, V)
    share = np.clip((dev - center) @ w + base, 1e-3, 1.0)  # (N_dev, V) predicted share of references using it
    out = np.zeros((len(dev), 2))
    for i, caption in enumerate(captions):
        ids = [index[t] for t in caption if t in index]
        if ids:
            lift = np.log(share[i, ids] / base[ids])
            out[i] = lift.min(), lift.mean()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", required=True, help="caption-calibrate's --cache file (.npz, with its .json)")
    p.add_argument("--seeds", default="0,1,2", help="dev halves to average over (default: %(default)s)")
    p.add_argument("--min-photos", type=int, default=10, help="a word gets a detector when at least this many "
                                                              "training photos' references use it (default: %(default)s)")
    p.add_argument("--ridge", default="0.1,1,10,100", help="detector penalties tried (default: %(default)s)")
    args = p.parse_args(argv)

    got = read_dev_cache(args.cache)
    meta, arrays, names, familiar = got.meta, got.arrays, got.names, got.familiar
    shipped, bad, dataset = got.shipped, got.bad, got.dataset
    seeds = [int(s) for s in args.seeds.split(",")]
    captions = [t for n in names for t in meta[f"{n}/tokens"]]
    train = unit(np.concatenate([arrays[f"{n}/train"] for n in names]).astype(np.float64))  # (N_train, D)
    dev = unit(np.concatenate([arrays[f"{n}/pooled"] for n in names]).astype(np.float64))  # (N_dev, D)
    used = [{w for c in refs for w in tokenize(c)} - STOP_WORDS for n in names for refs in meta[f"{n}/train_refs"]]
    idf, rare = dict(zip(familiar.words, familiar.idf)), float(familiar.idf.max())
    mean_idf = np.array([np.mean([idf.get(w, rare) for w in t if w not in STOP_WORDS] or [0.0]) for t in captions])

    def show(label: str, extra: np.ndarray | None) -> None:
        x = shipped if extra is None else np.column_stack([shipped, extra])
        print(f"  {label:>34}: " + " / ".join(f"{v:.3f}" for v in held_out_auroc(x, bad, dataset, names, seeds)))

    print(f"held-out AUROC (bad: CIDEr-D < 0.2), mean over seeds {seeds}: pooled / " + " / ".join(names))
    show("shipped", None)
    show("+ mean content-word idf", mean_idf)
    for ridge in (float(v) for v in args.ridge.split(",")):
        lifts = word_lifts(train, used, dev, captions, min_photos=args.min_photos, ridge=ridge)
        print(f" detectors, ridge {ridge:g}: alone (all dev) least / mean lift "
              + " / ".join(f"{auroc(-v, bad):.3f}" for v in lifts.T))
        show("+ mean lift", lifts[:, 1])
        show("+ least and mean lift", lifts)
        show("+ both lifts + mean idf", np.column_stack([lifts, mean_idf]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
