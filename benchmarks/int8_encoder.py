"""Does an INT8 encoder earn its place? (a measurement, not a test; needs ``pip install nncf``)

    python benchmarks/int8_encoder.py [--weights W] [--calibration 300] [--repeats 5]

Quantizes the bundle's encoder graph (the FP32 ONNX graph of captioning.runtime) with NNCF's
post-training quantization for OpenVINO, calibrated on photos of the *train* splits of
../shared/data (Flickr8k and COCO, never dev), then prints, in one run:
- encoder images/s on batch 32, OpenVINO FP32 vs INT8 (interleaved repeats, medians);
- dev CIDEr-D / BLEU-4 on every dev split in ../shared/data with the FP32 and the INT8 encoder
  (the same decoder and recorded decoding), and how many captions differ.
The team's bar for shipping it: CIDEr-D at most 0.005 lower on every dev split, and at least
1.4x the FP32 runtime's speed.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from captioning import Captioner, Encoded, load_image
from captioning.runtime import EncoderGraph, openvino_encode
from captioning.training.data import read_dataset
from captioning.training.metrics import coco_scores

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SPLITS = {"flickr8k": DATA / "flickr8k" / "captions.csv", "coco_subset": DATA / "coco_subset" / "captions.csv"}


def main(argv: list[str] | None = None) -> int:
    import nncf
    import openvino as ov

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=None, help="bundle (default: weights/DEFAULT)")
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
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    fp32 = core.compile_model(str(graph.ensure()), "CPU", config)

    train = [item.image for name, csv in SPLITS.items() if csv.exists()
             for item in read_dataset(csv, split="train")]
    rng = np.random.default_rng(0)
    chosen = [train[i] for i in rng.choice(len(train), size=min(args.calibration, len(train)), replace=False)]
    calibration = nncf.Dataset(chosen, lambda path: cap.pixels([path]).contiguous().numpy())  # (1, 3, S, S)
    t = time.perf_counter()
    quantized = nncf.quantize(core.read_model(str(graph.path)), calibration, subset_size=len(chosen),
                              preset=getattr(nncf.QuantizationPreset, args.preset.upper()),
                              fast_bias_correction=not args.full_bias_correction)
    print(f"quantized on {len(chosen)} train photos in {time.perf_counter() - t:.0f} s "
          f"(preset {args.preset}, {'full' if args.full_bias_correction else 'fast'} bias correction)")
    int8 = core.compile_model(quantized, "CPU", {"PERFORMANCE_HINT": "LATENCY"})
    runs = {"fp32": openvino_encode(fp32), "int8": openvino_encode(int8)}

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
    print(f"encoder, batch 32: FP32 {rate['fp32']:.1f} images/s, INT8 {rate['int8']:.1f} images/s "
          f"({rate['int8'] / rate['fp32']:.2f}x)")

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
        differ = sum(a != b for a, b in zip(texts["fp32"], texts["int8"]))
        print(f"{split} dev ({len(items)} photos): CIDEr-D FP32 {scores['fp32']['CIDEr-D']:.4f} INT8 "
              f"{scores['int8']['CIDEr-D']:.4f} ({scores['int8']['CIDEr-D'] - scores['fp32']['CIDEr-D']:+.4f}); "
              f"BLEU-4 {scores['fp32']['BLEU-4']:.4f} / {scores['int8']['BLEU-4']:.4f}; {differ} captions differ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
