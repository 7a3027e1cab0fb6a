"""Does a lower-precision encoder earn its place? (a measurement, not a test)

    python benchmarks/encoder_precision.py [--precisions bf16,int8] [--weights W] [--calibration 300] [--repeats 5]

Runs the bundle's encoder graph (the FP32 ONNX graph of captioning.runtime) on OpenVINO in FP32 and in
each of ``--precisions``:
- ``bf16``: OpenVINO's BF16 inference (``INFERENCE_PRECISION_HINT``), on CPUs with AVX-512 BF16 or AMX;
- ``int8``: NNCF's post-training quantization (``pip install nncf``), calibrated on photos of the
  *train* splits of ../shared/data (Flickr8k and COCO, never dev).
It prints, in one run:
- encoder images/s on batch 32, FP32 vs each precision (interleaved repeats, medians);
- dev CIDEr-D / BLEU-4 on every dev split in ../shared/data with each encoder (the same decoder and
  recorded decoding), and how many captions differ from FP32's.
The team's bar for shipping one: CIDEr-D at most 0.005 lower on every dev split, and at least
1.4x the FP32 runtime's speed.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from captioning import Captioner, Encoded, load_image
from captioning.runtime import EncoderGraph, _difference, _openvino, openvino_encode, precision_here
from captioning.training.calibrate import DEFAULT_DATA
from captioning.training.data import read_dataset
from captioning.training.metrics import coco_scores

SPLITS = {Path(csv).parent.name: Path(csv) for csv in DEFAULT_DATA}  # flickr8k, coco_subset


def main(argv: list[str] | None = None) -> int:
    import openvino as ov

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=None, help="bundle (default: weights/DEFAULT)")
    p.add_argument("--precisions", default="bf16", help="comma-separated, from bf16 and int8 (default: %(default)s)")
    p.add_argument("--calibration", type=int, default=300, help="train photos to calibrate on (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="timed batches per figure (default: %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="dev photos per split (default: all)")
    p.add_argument("--preset", choices=("performance", "mixed"), default="performance",
                   help="NNCF preset: symmetric (performance) or asymmetric activations (mixed) (default: %(default)s)")
    p.add_argument("--full-bias-correction", action="store_true",
                   help="NNCF's slower, more exact bias correction (default: the fast one)")
    args = p.parse_args(argv)

    cap = Captioner.load(args.weights, device="cpu", backend="openvino")
    size = cap.preprocessing.size
    graph = EncoderGraph(cap.encoder, size)

    precisions = [x for x in args.precisions.split(",") if x]
    unknown = set(precisions) - {"bf16", "int8"}
    if unknown:
        p.error(f"unknown precision(s): {', '.join(sorted(unknown))}")
    train = [item.image for name, csv in SPLITS.items() if csv.exists()
             for item in read_dataset(csv, split="train")]
    rng = np.random.default_rng(0)
    chosen = [train[i] for i in rng.choice(len(train), size=min(args.calibration, len(train)), replace=False)]
    runs = {"fp32": _openvino(graph, 0)}  # as the tools compile it
    if "bf16" in precisions:
        print(f"bf16: OpenVINO runs in {precision_here('bf16')} on this CPU")
        runs["bf16"] = _openvino(graph, 0, "bf16")
    if "int8" in precisions:
        core = ov.Core()
        runs["int8"] = openvino_encode(core.compile_model(_int8(args, cap, core, graph, chosen), "CPU",
                                                          {"PERFORMANCE_HINT": "LATENCY"}))

    pixels = cap.pixels(chosen[:32])  # (32, 3, S, S)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for run in runs.values():
        run(pixels)  # warm-up
    for _ in range(args.repeats):
        for name, run in runs.items():
            t = time.perf_counter()
            run(pixels)
            times[name].append(len(pixels) / (time.perf_counter() - t))
    rate = {k: statistics.median(v) for k, v in times.items()}
    reference = runs["fp32"](pixels)
    for name in precisions:
        out = runs[name](pixels)
        error = _difference(reference, out, "fp32")  # the largest absolute difference in any output
        print(f"encoder, batch 32: FP32 {rate['fp32']:.1f} images/s, {name.upper()} {rate[name]:.1f} images/s "
              f"({rate[name] / rate['fp32']:.2f}x); largest difference in any output {error:.3g}")

    for split, csv in SPLITS.items():
        if not csv.exists():
            continue
        items = read_dataset(csv, split="dev")[: args.limit]
        refs = {n: list(item.captions) for n, item in enumerate(items)}
        texts: dict[str, list[str]] = {k: [] for k in runs}
        for start in range(0, len(items), 32):
            batch = cap.pixels([cap.preprocessing.to_array(load_image(i.image)) for i in items[start:start + 32]])
            for name, run in runs.items():
                out = run(batch)
                texts[name] += [r.text for r in cap.decode(Encoded(out.grid.contiguous(), out.pooled, out.logits))]
        scores = {k: coco_scores(dict(enumerate(v)), refs) for k, v in texts.items()}
        for name in precisions:
            differ = sum(a != b for a, b in zip(texts["fp32"], texts[name]))
            print(f"{split} dev ({len(items)} photos): CIDEr-D FP32 {scores['fp32']['CIDEr-D']:.4f} {name.upper()} "
                  f"{scores[name]['CIDEr-D']:.4f} ({scores[name]['CIDEr-D'] - scores['fp32']['CIDEr-D']:+.4f}); "
                  f"BLEU-4 {scores['fp32']['BLEU-4']:.4f} / {scores[name]['BLEU-4']:.4f}; {differ} captions differ")
    return 0


def _int8(args: argparse.Namespace, cap: Captioner, core, graph: EncoderGraph, chosen: list[Path]):
    """The encoder graph quantized by NNCF on ``chosen`` train photos."""
    import nncf

    calibration = nncf.Dataset(chosen, lambda path: cap.pixels([path]).contiguous().numpy())  # (1, 3, S, S)
    t = time.perf_counter()
    quantized = nncf.quantize(core.read_model(str(graph.path)), calibration, subset_size=len(chosen),
                              preset=getattr(nncf.QuantizationPreset, args.preset.upper()),
                              fast_bias_correction=not args.full_bias_correction)
    print(f"int8: quantized on {len(chosen)} train photos in {time.perf_counter() - t:.0f} s "
          f"(preset {args.preset}, {'full' if args.full_bias_correction else 'fast'} bias correction)")
    return quantized


if __name__ == "__main__":
    raise SystemExit(main())
