"""Do the encoder backends give the same captions? (a measurement, not a test)

    python benchmarks/backend_captions.py [--data ../shared/data/flickr8k/captions.csv] [--split dev]
                                          [--weights W] [--backends torch,openvino,onnxruntime] [--limit N]
                                          [--show 20]

Captions every photo of the split with each backend (the same preprocessed pixels, the bundle's
recorded decoding; an entry ``backend:precision`` such as ``openvino:bf16`` loads that --precision),
then prints per backend: how many captions differ from the first backend's (listing up to ``--show``
of them, with the largest grid difference of that photo), and the COCO-caption scores (BLEU-4,
CIDEr-D...) against the split's references. Needs pycocoevalcap (the ``train`` extra).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from captioning import Captioner, load_image
from captioning.training.data import read_dataset
from captioning.training.metrics import coco_scores

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import split_backend  # noqa: E402

PROJECT = Path(__file__).resolve().parent.parent
DATA = PROJECT.parent / "shared" / "data" / "flickr8k" / "captions.csv"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DATA), help="dataset file (default: %(default)s)")
    p.add_argument("--split", default="dev", help="split (default: %(default)s)")
    p.add_argument("--weights", default=None, help="bundle (default: weights/DEFAULT)")
    p.add_argument("--backends", default="torch,openvino,onnxruntime", help="comma-separated, torch first "
                   "(default: %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="only the first N photos (default: all)")
    p.add_argument("--batch-size", type=int, default=32, help="photos per batch (default: %(default)s)")
    p.add_argument("--show", type=int, default=20, help="differing captions listed per backend (default: %(default)s)")
    args = p.parse_args(argv)

    items = read_dataset(args.data, split=args.split)[: args.limit]
    backends = args.backends.split(",")
    caps = {b: Captioner.load(args.weights, device="cpu", backend=split_backend(b)[0], precision=split_backend(b)[1])
            for b in backends}
    reference = caps[backends[0]]
    texts: dict[str, list[str]] = {b: [] for b in backends}
    grid_diff: dict[str, list[float]] = {b: [] for b in backends}
    for start in range(0, len(items), args.batch_size):
        arrays = [reference.preprocessing.to_array(load_image(i.image)) for i in items[start:start + args.batch_size]]
        base = None
        for b, cap in caps.items():
            enc = cap.encode(arrays)  # resized uint8 arrays: every backend gets the same pixels
            base = base or enc
            grid_diff[b] += (enc.grid - base.grid).abs().flatten(1).max(dim=1).values.tolist()  # (B,)
            texts[b] += [r.text for r in cap.decode(enc)]
    refs = {n: list(item.captions) for n, item in enumerate(items)}
    print(f"{len(items)} photos of {args.data} ({args.split}), bundle {reference.name} v{reference.version}, "
          f"decoding {reference.decoding.asdict()}")
    for b in backends:
        scores = coco_scores(dict(enumerate(texts[b])), refs)
        differ = [n for n in range(len(items)) if texts[b][n] != texts[backends[0]][n]]
        print(f"{b:12s} BLEU-4 {scores['BLEU-4']:.4f}  CIDEr-D {scores['CIDEr-D']:.4f}  captions differing from "
              f"{backends[0]}: {len(differ)} ({100 * len(differ) / len(items):.1f}%), largest grid difference "
              f"{max(grid_diff[b]):.2g}")
        for n in differ[: args.show]:
            print(f"    {items[n].image.name}: {texts[backends[0]][n]!r} vs {texts[b][n]!r} "
                  f"(grid difference {grid_diff[b][n]:.2g})")
    return 0


if __name__ == "__main__":
    with torch.inference_mode():
        raise SystemExit(main())
