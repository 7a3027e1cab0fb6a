"""Which recorded decoding suits a bundle? (a measurement, not a test)

    python scripts/decoding_sweep.py [--weights W] [--length-penalties 0.6,0.8,1.0,1.2,1.5]

Encodes every dev photo of ../shared/data (Flickr8k and the COCO subset) once, then decodes them with
beam 3 and each combination of the length penalties given and the blocks (the recorded ones, and
each block turned off), and prints per combination: CIDEr-D and BLEU-4 on each dev split, their
mean CIDEr-D (the selection score of issue #21), and distinct captions and words on each split.
The bundle's recorded decoding is marked with *.
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import torch

from captioning import Captioner, Encoded
from captioning.training.calibrate import DEFAULT_DATA
from captioning.training.data import read_dataset
from captioning.training.metrics import coco_scores

SPLITS = {Path(csv).parent.name: Path(csv) for csv in DEFAULT_DATA}  # flickr8k, coco_subset


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=None, help="bundle (default: weights/DEFAULT)")
    p.add_argument("--length-penalties", default="0.6,0.8,1.0,1.2,1.5", help="comma-separated (default: %(default)s)")
    args = p.parse_args(argv)

    cap = Captioner.load(args.weights, device="cpu")
    recorded = cap.decoding
    encoded, refs = {}, {}
    for split, csv in SPLITS.items():
        items = read_dataset(csv, split="dev")
        parts = [cap.encode([str(i.image) for i in items[s:s + 32]]) for s in range(0, len(items), 32)]
        encoded[split] = Encoded(*(torch.cat([getattr(e, k) for e in parts]) for k in ("grid", "pooled", "logits")))
        refs[split] = {n: list(i.captions) for n, i in enumerate(items)}
        print(f"{split}: {len(items)} dev photos encoded")
    blocks = [{}, {"no_repeat_ngram_size": 0}, {"no_repeat_words": False}, {"no_dangling_end": False}]
    penalties = [float(x) for x in args.length_penalties.split(",")]
    print(f"{'length penalty, blocks':<44} {'CIDEr-D F / C / mean':<22} {'BLEU-4 F / C':<14} distinct captions, words")
    for penalty, block in itertools.product(penalties, blocks):
        decoding = recorded.replace(beam_size=3, length_penalty=penalty, **block)
        row = {}
        for split in SPLITS:
            texts = [r.text for r in cap.decode(encoded[split], **decoding.asdict())]
            scores = coco_scores(dict(enumerate(texts)), refs[split])
            row[split] = (scores["CIDEr-D"], scores["BLEU-4"], len(set(texts)), len({w for t in texts for w in t.split()}))
        mark = "*" if decoding == recorded else " "
        label = f"{mark}{penalty:.1f} " + (", ".join(f"{k}={v}" for k, v in block.items()) or "recorded blocks")
        f, c = row["flickr8k"], row["coco_subset"]
        print(f"{label:<44} {f[0]:.3f} / {c[0]:.3f} / {(f[0] + c[0]) / 2:.3f}   {f[1]:.3f} / {c[1]:.3f}   "
              f"{f[2]} / {c[2]}, {f[3]} / {c[3]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
