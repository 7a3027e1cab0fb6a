"""End-to-end throughput of ``caption-images`` on a folder of photos (not a test).

    python benchmarks/bench_images.py [--folder ../shared/data/flickr8k/images] [-n 500]
                                      [--weights W | --random-weights] [--batch-size 32] [--workers 2]

Runs the CLI code itself (``pipelines.images.cli.main``: discovery, threaded decoding, encoder,
batched beam search, JSONL writing with fsync) on the first N photos of the folder with
beam 3, and prints images/s for the whole run, model loading included. ``--random-weights``
builds a bundle with the real encoder and a random decoder of the default (production) size,
for measuring before a trained bundle exists (random decoders never stop early, so beam
search runs to --max-length: a pessimistic figure).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from pipelines.images.cli import main as caption_images_main
from pipelines.images.inputs import discover
from pipelines.images.local import BATCH_SIZE, WORKERS

PROJECT = Path(__file__).resolve().parent.parent
DEFAULT_FOLDER = PROJECT.parent / "shared" / "data" / "flickr8k" / "images"


def _random_bundle(directory: Path) -> Path:
    """Real EfficientNet-Lite0 encoder + a random default-size decoder (the shipped vocabulary's size)."""
    from captioning.bundle import BundleInfo
    from captioning.testing import PRODUCTION_VOCAB, placeholder_vocabulary, save_random_bundle

    info = BundleInfo(name="random_sat.bench", version="0.0.0", decoding={"beam_size": 3})
    return save_random_bundle(directory / "random_sat.bench", placeholder_vocabulary(PRODUCTION_VOCAB), info)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--folder", type=Path, default=DEFAULT_FOLDER, help="folder of photos (default: %(default)s)")
    p.add_argument("-n", "--images", type=int, default=500, help="photos to caption (default: %(default)s)")
    p.add_argument("--weights", default=None, help="bundle name or folder (default: weights/DEFAULT)")
    p.add_argument("--random-weights", action="store_true", help="use a random default-size decoder (default: off)")
    p.add_argument("--beam-size", type=int, default=3, help="beam width (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="images per batch (default: %(default)s)")
    p.add_argument("--workers", type=int, default=WORKERS, help="decoding threads (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    args = p.parse_args(argv)

    photos = discover([str(args.folder)]).paths[: args.images]
    if len(photos) < args.images:
        p.error(f"{args.folder} has only {len(photos)} photos")
    with tempfile.TemporaryDirectory(prefix="bench_images.") as tmp:
        tmp = Path(tmp)
        weights = str(_random_bundle(tmp)) if args.random_weights else args.weights
        (tmp / "list.txt").write_text("\n".join(photos) + "\n")
        out = tmp / "captions.jsonl"
        argv = ["--from-list", str(tmp / "list.txt"), "--out", str(out), "--overwrite", "--tags", "5",
                "--beam-size", str(args.beam_size), "--batch-size", str(args.batch_size),
                "--workers", str(args.workers), "--device", args.device]
        if weights:
            argv += ["--weights", weights]
        print("caption-images " + " ".join(argv))
        start = time.perf_counter()
        status = caption_images_main(argv)
        seconds = time.perf_counter() - start
        records = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    if status != 0 or len(records) != len(photos):
        print(f"run failed (exit {status}, {len(records)} records)")
        return 1
    words = sum(len(r["caption"].split()) for r in records if r["caption"]) / max(len(records), 1)
    print(f"{len(photos)} photos, beam {args.beam_size}, batch {args.batch_size}, {args.workers} workers, "
          f"bundle {records[0]['model']}: {seconds:.1f} s end to end = {len(photos) / seconds:.1f} images/s "
          f"(mean caption {words:.1f} words)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
