"""How well could any confidence tell bad captions, given how much people's captions differ? (a measurement)

    python scripts/reference_noise.py --cache runs/confidence/lite2.npz

A caption is "bad" when its CIDEr-D against its photo's references is under 0.2, and which five people described
the photo decides part of that. An oracle that knows what *other* people said shows how far the label can be
predicted at all: for each way of splitting a dev photo's first five references into 2 and 3, the caption's
CIDEr-D against the 2 (the oracle) ranks the captions, and "bad" is judged against the other 3 (the same share of
bad captions as the real label: 3 references score lower than 5). The AUROC of that oracle is a rough ceiling for
a confidence computed from the photo and the caption alone (the real label has 5 references, so its noise is
somewhat smaller; the oracle has only 2, so it is somewhat weaker). Dev captions from ``caption-calibrate``'s cache.
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from captioning.training.calibrate import auroc
from captioning.training.data import read_dataset
from captioning.training.metrics import CiderD

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def cider(captions: list[list[str]], refs: list[list[str]]) -> np.ndarray:
    return np.asarray(CiderD(refs).score(captions, refs))  # document frequencies from these references


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", required=True, help="caption-calibrate's --cache file (.npz, with its .json)")
    p.add_argument("--data", default=str(DATA), help="folder of the datasets named in the cache (default: %(default)s)")
    args = p.parse_args(argv)

    cache = Path(args.cache)
    meta, arrays = json.loads(cache.with_suffix(".json").read_text()), dict(np.load(cache))
    for name in meta["datasets"]:
        dev = read_dataset(str(Path(args.data) / name / "captions.csv"), split="dev")
        if [str(it.image) for it in dev] != meta[f"{name}/images"]:
            raise SystemExit(f"{cache}: its {name} dev photos are not {args.data}'s")
        refs = [it.captions[:5] for it in dev]
        captions = [list(t) for t in meta[f"{name}/tokens"]]
        share_bad = float((arrays[f"{name}/cider"] < 0.2).mean())
        aurocs = []
        for two in itertools.combinations(range(5), 2):
            three = [i for i in range(5) if i not in two]
            oracle = cider(captions, [[r[i] for i in two] for r in refs])
            judged = cider(captions, [[r[i] for i in three] for r in refs])
            aurocs.append(auroc(-oracle, judged < np.quantile(judged, share_bad)))
        print(f"{name}: {len(refs)} dev captions, {share_bad:.1%} bad; the oracle's AUROC {np.mean(aurocs):.3f} "
              f"(the 10 splits: {min(aurocs):.3f}-{max(aurocs):.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
