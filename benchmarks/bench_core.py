"""Encoder, embedding and end-to-end caption throughput of every encoder backend, side by side (not a test).

    python benchmarks/bench_core.py [--weights W] [--backends torch,openvino,onnxruntime] [--batch-size 32]
                                    [--repeats 5] [--beam-size B] [--threads N] [--compile] [--device cpu]

Loads the bundle once per backend (``Captioner.load(backend=...)``; this warm-up also fills the
ONNX graph cache, so nothing timed exports or compiles a graph) and, on one batch of real photos
(the first ``--batch-size`` Flickr8k dev photos if ``../shared/data/flickr8k/images`` exists, else
random images) at the bundle's input size (``cap.preprocessing.size``), times:

- the reference: the bare eager torch forward, ``cap.encoder(pixels)`` on channels-last pixels;
- per backend: the encoder alone (the backend's encoder on that backend's ready pixels:
  ``cap._encode``, the function ``Captioner.encode`` calls), ``Captioner.embed`` (preprocessing from
  the decoded photos + encoder), and end to end ``cap.decode(cap.encode(images))`` (preprocessing +
  encoder + beam search with the bundle's recorded decoding, or ``--beam-size``).

Every figure runs once untimed, then all of them are interleaved over ``--repeats`` rounds. Prints
each figure's median images/s (and the min..max over repeats) and its ratio to the reference's median.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (FLICKR_IMAGES, interleave, machine_facts, median, parse_backends, photo_paths, show,  # noqa: E402
                    spread, timer, warm_backends)

FIGURES = ("encoder only", "embed", "encode + beam")


def _images(n: int, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """``n`` decoded RGB photos (uint8 HxWx3, their own size) and where they came from."""
    from captioning.images import load_image

    paths = photo_paths(n) if FLICKR_IMAGES.is_dir() else []
    if len(paths) == n:
        return [np.asarray(load_image(p)) for p in paths], f"{n} Flickr8k photos from {FLICKR_IMAGES}"
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(n)], f"{n} random 224x224 images"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=None, help="bundle name or folder (default: weights/DEFAULT)")
    p.add_argument("--backends", default=None,
                   help="comma-separated encoder backends (default: every installed one)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved timed rounds; medians reported "
                   "(default: %(default)s)")
    p.add_argument("--beam-size", type=int, default=None, help="beam width (default: the bundle's)")
    p.add_argument("--threads", type=int, default=0, help="threads of every backend (0: their default; "
                   "default: %(default)s)")
    p.add_argument("--compile", action="store_true", help="also time the torch.compile'd torch encoder")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    args = p.parse_args(argv)
    if args.batch_size < 1 or args.repeats < 1:
        p.error("--batch-size and --repeats must be >= 1")
    backends = parse_backends(args.backends)
    if "torch" not in backends:
        backends = ["torch"] + backends  # the reference is torch's own encoder

    print(machine_facts())
    print(f"command: {show([sys.executable, *sys.argv] if argv is None else [sys.executable, __file__, *argv])}")
    print("warm-up (every backend loaded once before timing; the first load of a runtime exports its ONNX graph)")
    caps = warm_backends(args.weights, args.device, backends, args.threads)
    if args.compile:
        from captioning import Captioner

        compiled = Captioner.load(args.weights, device=args.device, backend="torch", threads=args.threads,
                                  compile=True)
        if compiled._encode is compiled.encoder:
            print("  torch.compile is not available here: left out")
        else:
            caps["torch.compile"] = compiled
    ref = caps["torch"]
    size = ref.preprocessing.size
    images, source = _images(args.batch_size)
    beam = args.beam_size if args.beam_size is not None else ref.decoding.beam_size
    print(f"bundle {ref.name} {ref.version}, input {size}x{size} (preprocessing.size), batch {args.batch_size} "
          f"of {source}; beam {beam}{'' if args.beam_size else ' (the bundle default)'}; device {args.device}, "
          f"threads {args.threads or 'default'}; {args.repeats} interleaved repeats, medians")

    ref_pixels = ref.pixels(images)  # channels-last on torch
    tasks = {("eager torch forward", "reference"): timer(lambda: ref.encoder(ref_pixels), args.device)}
    for figure in FIGURES:
        for name, cap in caps.items():
            if figure == "encoder only":
                pixels = cap.pixels(images)  # the layout this backend's encoder gets from Captioner.encode
                fn = lambda cap=cap, pixels=pixels: cap._encode(pixels)  # noqa: E731
            elif figure == "embed":
                fn = lambda cap=cap: cap.embed(images, batch_size=args.batch_size)  # noqa: E731
            else:
                fn = lambda cap=cap: cap.decode(cap.encode(images), beam_size=beam)  # noqa: E731
            tasks[(name, figure)] = timer(fn, args.device)
    keys = list(tasks)
    with torch.inference_mode():
        seconds = interleave({f"{b}: {f}": tasks[(b, f)] for b, f in keys}, args.repeats, warmup=True)
    rates = {key: [args.batch_size / s for s in seconds[f"{key[0]}: {key[1]}"]] for key in keys}
    reference = median(rates[keys[0]])

    print(f"\n{'backend':<22}{'figure':<16}{'images/s':>10}{'x eager':>9}  {'min..max':<14}")
    for key in keys:
        r = median(rates[key])
        print(f"{key[0]:<22}{key[1]:<16}{r:10.1f}{r / reference:9.2f}  {spread(rates[key]):<14}")
    print("(x eager: median images/s over the bare eager torch forward's median, same run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
