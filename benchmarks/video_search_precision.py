"""How far to trust a video search hit (not a test): precision of ``VideoTags.search`` by confidence.

    python benchmarks/video_search_precision.py [--photos 60] [--seconds-each 3] [--weights W]

Makes a clip of COCO *dev* photos (../shared/data/coco_subset, every Nth of dev.txt; 448x448,
10 fps, mp4v, one photo per shot), tags it with ``tag_video`` at 1 frame/s, then searches it for
every everyday word (captioning/everyday_tags.json). Each hit is cut at the photo boundaries; a
hit on a photo is right when the photo's five reference captions name the word (the word, its
plural or a WordNet synonym: captioning.confidence.words_named). Prints the hits and their
precision per confidence bin: a calibrated confidence has precision close to it in every bin.
(References do not name everything in a photo, so precision here is a lower bound.)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
COCO = PROJECT.parent / "shared" / "data" / "coco_subset" / "captions.csv"


def make_clip(photos: list[Path], path: Path, seconds: float, fps: int = 10, side: int = 448) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (side, side))
    for photo in photos:
        frame = cv2.resize(cv2.imread(str(photo)), (side, side))
        for _ in range(int(seconds * fps)):
            writer.write(frame)
    writer.release()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=int, default=60, help="COCO dev photos in the clip (default: 60)")
    p.add_argument("--seconds-each", type=float, default=3.0, help="seconds per photo (default: 3)")
    p.add_argument("--weights", default=None, help="bundle (default: weights/DEFAULT)")
    args = p.parse_args(argv)

    from captioning import Captioner
    from captioning.confidence import words_named
    from captioning.everyday import everyday_table
    from captioning.training.data import read_dataset
    from captioning.vocab import tokenize
    from pipelines.video import tag_video

    dev = read_dataset(COCO, split="dev")
    chosen = dev[:: max(1, len(dev) // args.photos)][: args.photos]
    table = everyday_table()
    truth = [words_named([w for c in item.captions for w in tokenize(c)]) for item in chosen]  # per photo
    cap = Captioner.load(args.weights)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "coco_dev.mp4"
        make_clip([item.image for item in chosen], clip, args.seconds_each)
        tags = tag_video(clip, cap, fps=1.0)

    hits = []  # (confidence, right) per (query, photo) a hit covers
    no_match = 0
    for w, word in enumerate(table.words):
        segments = tags.search(word)
        no_match += not segments
        for s in segments:
            first = int(s.start // args.seconds_each)
            last = min(len(chosen) - 1, int(np.ceil(s.end / args.seconds_each)) - 1)
            for photo in range(first, last + 1):
                hits.append((s.confidence, w in truth[photo]))
    conf = np.array([c for c, _ in hits])
    right = np.array([r for _, r in hits], bool)
    print(f"{cap.name} {cap.version}: {len(chosen)} COCO dev photos, {len(tags.shots)} shots; "
          f"{len(table.words)} everyday words searched, {no_match} without a match; {len(hits)} hits (query x photo)")
    print(f"precision of all hits: {right.mean():.3f}")
    print(f"{'confidence':>12} {'hits':>6} {'precision':>10}")
    for lo, hi in zip(np.arange(0, 1, 0.2), np.arange(0.2, 1.01, 0.2)):
        m = (conf >= lo) & (conf < hi if hi < 1 else conf <= hi)
        if m.any():
            print(f"{lo:4.1f} - {hi:3.1f} {int(m.sum()):>6} {right[m].mean():>10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
