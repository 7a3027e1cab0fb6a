"""Encoder and end-to-end caption throughput on this machine (not a test).

    python benchmarks/bench_core.py [--weights W] [--batch-size 32] [--compile]

Prints images/s for: the encoder alone (eager channels-last, and torch.compile when
asked), and encoder + beam-3 decoding on real-looking 224x224 inputs.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def _rate(fn, n_images: int, repeats: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return n_images * repeats / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=None, help="bundle name or folder (default: weights/DEFAULT)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="timed batches per figure (default: %(default)s)")
    p.add_argument("--beam-size", type=int, default=3, help="beam width (default: %(default)s)")
    p.add_argument("--compile", action="store_true", help="also time the torch.compile'd encoder")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    args = p.parse_args(argv)

    from captioning import Captioner

    cap = Captioner.load(args.weights, device=args.device)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(args.batch_size)]
    pixels = cap.pixels(images)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, bundle {cap.name}")
    with torch.inference_mode():
        eager = _rate(lambda: cap.encoder(pixels), args.batch_size, args.repeats)
    print(f"encoder (eager, channels-last): {eager:6.1f} images/s")
    if args.compile:
        t = time.perf_counter()
        cap._try_compile()
        print(f"  torch.compile warm-up: {time.perf_counter() - t:.0f} s")
        with torch.inference_mode():
            compiled = _rate(lambda: cap._encode(pixels), args.batch_size, args.repeats)
        print(f"encoder (torch.compile):        {compiled:6.1f} images/s")
    e2e = _rate(lambda: cap.decode(cap.encode(images), beam_size=args.beam_size), args.batch_size, args.repeats)
    print(f"end to end (preprocess + encoder + beam {args.beam_size}): {e2e:6.1f} images/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
