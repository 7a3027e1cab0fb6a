"""How well could any confidence tell bad captions, given how much people's captions differ? (a measurement)

    python scripts/reference_noise.py --cache runs/confidence/lite2.npz

A caption is "bad" when its CIDEr-D against its photo's references is under 0.2, and which five people described
the photo decides part of that. An oracle that knows what *other* people said shows how far the label can be
predicted at all: for each way of splitting a dev photo's first five references into 2 and 3, the caption's
CIDEr-D against the 2 (the oracle) ranks the captions, and "bad" is judged against the other 3 (the same share of
bad captions as the real label: 3 references score lower than 5). The AUROC of that oracle is a rough ceiling for
a confidence computed from the photo and the caption alone (the real label has 5 references, so its noise is
somewhat smaller; the oracle has only 2, so it is somewhat weaker). Beside it, on the same 3-reference labels, the
shipped confidence's features fitted and scored as ``caption-calibrate`` does (half of each dev split, the mean over
the halves of ``--seeds``). Dev captions from ``caption-calibrate``'s cache.
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from captioning.training.calibrate import auroc, held_out_auroc, read_dev_cache
from captioning.training.data import read_dataset
from captioning.training.metrics import CiderD

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def cider(captions: list[list[str]], refs: list[list[str]]) -> np.ndarray:
    return np.asarray(CiderD(refs).score(captions, refs))  # document frequencies from these references


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", required=True, help="caption-calibrate's --cache file (.npz, with its .json)")
    p.add_argument("--data", default=str(DATA), help="folder of the datasets named in the cache (default: %(default)s)")
    p.add_argument("--seeds", default="0,1,2", help="dev halves for the confidence (default: %(default)s)")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]

    got = read_dev_cache(args.cache)
    meta, arrays, names, shipped, dataset = got.meta, got.arrays, got.names, got.shipped, got.dataset
    refs, captions, share_bad = {}, {}, {}
    for name in names:
        dev = read_dataset(str(Path(args.data) / name / "captions.csv"), split="dev")
        if [str(it.image) for it in dev] != meta[f"{name}/images"]:
            raise SystemExit(f"{args.cache}: its {name} dev photos are not {args.data}'s")
        refs[name] = [it.captions[:5] for it in dev]
        captions[name] = [list(t) for t in meta[f"{name}/tokens"]]
        share_bad[name] = float((arrays[f"{name}/cider"] < 0.2).mean())
    oracle_auroc, confidence_auroc = [], []
    for two in itertools.combinations(range(5), 2):
        three = [i for i in range(5) if i not in two]
        bad, row = [], []
        for name in names:
            oracle = cider(captions[name], [[r[i] for i in two] for r in refs[name]])
            judged = cider(captions[name], [[r[i] for i in three] for r in refs[name]])
            bad.append(judged < np.quantile(judged, share_bad[name]))
            row.append(auroc(-oracle, bad[-1]))
        oracle_auroc.append(row)
        confidence_auroc.append(held_out_auroc(shipped, np.concatenate(bad), dataset, names, seeds)[1:])
    print("bad: CIDEr-D against 3 of the 5 references under the share of bad captions of the real label; "
          "AUROC, mean over the 10 splits (range)")
    for j, name in enumerate(names):
        o, c = np.array(oracle_auroc)[:, j], np.array(confidence_auroc)[:, j]
        print(f"{name}: {len(refs[name])} dev captions, {share_bad[name]:.1%} bad; the oracle (2 other references) "
              f"{o.mean():.3f} ({o.min():.3f}-{o.max():.3f}); the shipped confidence's features, held out "
              f"{c.mean():.3f} ({c.min():.3f}-{c.max():.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
