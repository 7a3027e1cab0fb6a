"""Beam-search throughput of the decoder alone, per thread count and batch size (not a test).

    python benchmarks/bench_decode.py [--weights W] [-n 128] [--batch-sizes 32,8] [--threads 1,2]
                                      [--repeats 5] [--beam-size B] [--device cpu]

Encodes the first N Flickr8k dev photos (``../shared/data/flickr8k``; without it, the package's
example photos in ``captioning/examples``, repeated up to N) once with the torch encoder, keeps
the encoded grids, then times only ``Captioner.decode`` on them, ``--batch-sizes`` images per call,
with the bundle's recorded decoding (or ``--beam-size``). Every (threads, batch size) figure runs
once untimed, then all of them are interleaved over ``--repeats`` rounds (each round sets its
thread count with ``torch.set_num_threads``). Prints each figure's median images/s and the
min..max over repeats.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import FLICKR_IMAGES, PROJECT, interleave, machine_facts, median, photo_paths, show, spread  # noqa: E402

from captioning import Captioner  # noqa: E402
from captioning.api import Encoded  # noqa: E402

EXAMPLES = PROJECT / "captioning" / "examples"
ENCODE_BATCH = 32  # images per encoder pass while preparing the grids


def _photos(n: int) -> tuple[list[Path], str]:
    """``n`` photo paths and where they came from."""
    paths = photo_paths(n) if FLICKR_IMAGES.is_dir() else []
    if len(paths) == n:
        return paths, f"{n} Flickr8k dev photos from {FLICKR_IMAGES}"
    examples = sorted(EXAMPLES.glob("*.jpg"))
    return [examples[i % len(examples)] for i in range(n)], f"{n} copies of the {len(examples)} example photos"


def _encode(cap: Captioner, paths: list[Path]) -> Encoded:
    """The photos' Encoded batch (grids and semantic vectors of all N), encoded once."""
    parts = [cap.encode(paths[i:i + ENCODE_BATCH]) for i in range(0, len(paths), ENCODE_BATCH)]
    return Encoded(*(torch.cat([getattr(e, f) for e in parts]) for f in ("grid", "pooled", "logits")))


def _slices(encoded: Encoded, batch_size: int) -> list[Encoded]:
    """``encoded`` cut into batches of ``batch_size`` images (the last one may be smaller)."""
    n = len(encoded)
    return [Encoded(encoded.grid[i:i + batch_size], encoded.pooled[i:i + batch_size], encoded.logits[i:i + batch_size])
            for i in range(0, n, batch_size)]


def _task(cap: Captioner, batches: list[Encoded], threads: int, beam_size: int | None):
    """Decode every batch on ``threads`` threads; returns the wall-clock seconds."""
    def run() -> float:
        torch.set_num_threads(threads)
        t = time.perf_counter()
        for batch in batches:
            cap.decode(batch, beam_size=beam_size)
        return time.perf_counter() - t
    return run


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=None, help="bundle name or folder (default: weights/DEFAULT)")
    p.add_argument("-n", "--images", type=int, default=128, help="photos decoded per figure (default: %(default)s)")
    p.add_argument("--batch-sizes", default="32,8", help="comma-separated images per decode call "
                   "(default: %(default)s)")
    p.add_argument("--threads", default="1,2", help="comma-separated torch thread counts (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved timed rounds; medians reported "
                   "(default: %(default)s)")
    p.add_argument("--beam-size", type=int, default=None, help="beam width (default: the bundle's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    args = p.parse_args(argv)
    batch_sizes, thread_counts = _ints(args.batch_sizes), _ints(args.threads)
    if args.images < 1 or args.repeats < 1 or min(batch_sizes + thread_counts, default=0) < 1:
        p.error("--images, --repeats, --batch-sizes and --threads must be >= 1")

    print(machine_facts())
    print(f"command: {show([sys.executable, *sys.argv] if argv is None else [sys.executable, __file__, *argv])}")
    cap = Captioner.load(args.weights, device=args.device, backend="torch")
    paths, source = _photos(args.images)
    encoded = _encode(cap, paths)
    decoding = cap.decoding.replace(beam_size=args.beam_size)
    print(f"bundle {cap.name} {cap.version}, grid {tuple(encoded.grid.shape[1:])} per image, {source}; "
          f"decoding {decoding.asdict()}; device {args.device}; {args.repeats} interleaved repeats, medians")

    tasks = {(t, b): _task(cap, _slices(encoded, b), t, args.beam_size) for t in thread_counts for b in batch_sizes}
    seconds = interleave({f"{t} threads, batch {b}": task for (t, b), task in tasks.items()}, args.repeats,
                         warmup=True)
    print(f"\n{'threads':>7}{'batch':>7}{'images/s':>10}  {'min..max':<14}")
    for t, b in tasks:
        rates = [args.images / s for s in seconds[f"{t} threads, batch {b}"]]
        print(f"{t:>7}{b:>7}{median(rates):10.1f}  {spread(rates):<14}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
