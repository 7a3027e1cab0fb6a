"""End-to-end throughput of the ``caption-images`` CLI per encoder backend, side by side (not a test).

    python benchmarks/bench_images.py [--folder ../shared/data/flickr8k/images] [-n 500]
                                      [--backends torch,openvino,onnxruntime] [--repeats 1]
                                      [--weights W | --random-weights] [--beam-size B] [--batch-size 32]
                                      [--workers 2] [--threads N] [--device cpu]

Runs the whole ``caption-images`` CLI as a subprocess (start-up included: imports, bundle load,
the backend's graph compiled from the warm cache; then discovery, threaded decoding, encoder,
batched beam search with the bundle's recorded decoding or ``--beam-size``, JSONL writing with
fsync) on the first N photos of the folder, once per backend (``--backend B``) per repeat, and
checks each run wrote N records, one per photo, with no error. Before anything is timed every
backend is loaded once in-process, which fills the ONNX graph cache the CLIs then read.

In the same run, interleaved with the CLI runs, it times the reference: the bare eager torch
encoder (``cap.encoder`` on channels-last pixels) in-process over the same N photos, decoded and
preprocessed beforehand. Prints each backend's median images/s (start-up included) and its ratio
to the reference's. Outputs go to a temporary folder, removed at the end. ``--random-weights``
builds a bundle with the real encoder and a random decoder of the default (production) size, for
measuring before a trained bundle exists (random decoders never stop early, so beam search runs
to max_length: a pessimistic figure).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (FLICKR_IMAGES, BackendRuns, interleave, machine_facts, median, parse_backends, show,  # noqa: E402
                    spread, timer, tool, warm_backends)

from pipelines.images.local import BATCH_SIZE, WORKERS  # noqa: E402
from pipelines.inputs import discover  # noqa: E402


def _random_bundle(directory: Path) -> Path:
    """Real EfficientNet-Lite0 encoder + a random default-size decoder (the shipped vocabulary's size)."""
    from captioning.bundle import BundleInfo
    from captioning.testing import PRODUCTION_VOCAB, placeholder_vocabulary, save_random_bundle

    info = BundleInfo(name="random_sat.bench", version="0.0.0", decoding={"beam_size": 3})
    return save_random_bundle(directory / "random_sat.bench", placeholder_vocabulary(PRODUCTION_VOCAB), info)


def _check(out: Path, photos: list[str]) -> tuple[str | None, list[dict]]:
    """(problem or None, records): N records, one per photo, none with an error or without a caption."""
    try:
        records = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as e:
        return f"unreadable output {out}: {e}", []
    if len(records) != len(photos):
        return f"{len(records)} records for {len(photos)} photos", records
    if {r.get("path") for r in records} != set(photos):
        return "the records do not name the photos given", records
    failed = [r for r in records if r.get("error") or not r.get("caption")]
    if failed:
        return f"{len(failed)} records with an error or no caption, e.g. {failed[0].get('error')}", records
    return None, records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--folder", type=Path, default=FLICKR_IMAGES, help="folder of photos (default: %(default)s)")
    p.add_argument("-n", "--images", type=int, default=500, help="photos to caption (default: %(default)s)")
    p.add_argument("--backends", default=None, help="comma-separated encoder backends (default: every installed one)")
    p.add_argument("--repeats", type=int, default=1, help="interleaved rounds; medians reported (default: %(default)s)")
    p.add_argument("--weights", default=None, help="bundle name or folder (default: weights/DEFAULT)")
    p.add_argument("--random-weights", action="store_true", help="use a random default-size decoder (default: off)")
    p.add_argument("--beam-size", type=int, default=None, help="beam width (default: the bundle's)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="images per batch (default: %(default)s)")
    p.add_argument("--workers", type=int, default=WORKERS, help="decoding threads (default: %(default)s)")
    p.add_argument("--threads", type=int, default=0, help="--threads of the CLI and of the reference "
                   "(0: the default, every core; default: %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    args = p.parse_args(argv)
    if args.images < 1 or args.repeats < 1:
        p.error("-n and --repeats must be >= 1")
    backends = parse_backends(args.backends)

    photos = discover([str(args.folder)]).paths[: args.images]
    if len(photos) < args.images:
        p.error(f"{args.folder} has only {len(photos)} photos")
    print(machine_facts())
    print(f"command: {show([sys.executable, *sys.argv] if argv is None else [sys.executable, __file__, *argv])}")
    with tempfile.TemporaryDirectory(prefix="bench_images.") as tmp:
        tmp = Path(tmp)
        weights = str(_random_bundle(tmp)) if args.random_weights else args.weights
        print("warm-up (every backend loaded once in-process before timing; the first load of a runtime exports "
              "its ONNX graph into the cache the CLIs read)")
        caps = warm_backends(weights, args.device, list(dict.fromkeys(["torch", *backends])), args.threads)
        if "torch" not in caps:
            print("the torch backend does not load: no reference")
            return 1
        ref = caps["torch"]  # the reference: its bare eager encoder
        backends = [b for b in backends if b in caps]
        caps.clear()  # the runtimes' sessions are not needed in-process any more

        from captioning.images import load_image

        arrays = [ref.preprocessing.to_array(load_image(path)) for path in photos]  # also warms the page cache
        batches = [ref.pixels(arrays[i:i + args.batch_size]) for i in range(0, len(arrays), args.batch_size)]
        del arrays

        def reference() -> None:
            with torch.inference_mode():
                for pixels in batches:
                    ref.encoder(pixels)

        (tmp / "list.txt").write_text("\n".join(photos) + "\n")
        common_argv = ["--from-list", tmp / "list.txt", "--overwrite", "--tags", "5", "--batch-size", args.batch_size,
                       "--workers", args.workers, "--device", args.device]
        common_argv += ["--beam-size", args.beam_size] if args.beam_size is not None else []
        common_argv += ["--threads", args.threads] if args.threads else []
        common_argv += ["--weights", weights] if weights else []
        cli = BackendRuns(tool("caption-images", "pipelines.images"), common_argv, tmp, lambda out: _check(out, photos),
                          suffix=".jsonl")
        cli.print_commands(backends)
        print(f"  reference in-process: cap.encoder(pixels) over {len(batches)} pre-decoded channels-last batches")
        tasks = {"reference": timer(reference, args.device)} | {b: cli.task(b) for b in backends}
        seconds = interleave(tasks, args.repeats, say=print)

    runs, problems, failed = cli.runs, cli.problems, cli.failed
    for problem in problems:
        print(f"run failed: {problem}")
    n = len(photos)
    rates = {name: [n / s for s in seconds[name]] for name in tasks}
    reference_rate = median(rates["reference"])
    first = next((r["result"][0] for b in backends for r in runs[b] if r["result"]), None)
    if first:
        print(f"\n{n} photos from {args.folder}, bundle {first['model']} {first['model_version']}, "
              f"beam {first['options']['beam_size']}, batch {args.batch_size}, {args.workers} workers, "
              f"median of {args.repeats} interleaved repeat(s); {ref.preprocessing.size}x{ref.preprocessing.size} input")
    print(f"{'':<38}{'seconds':>9}{'images/s':>10}{'x eager':>9}  {'min..max':<12}")
    print(f"{'eager torch encoder (in-process)':<38}{median(seconds['reference']):9.1f}{reference_rate:10.1f}"
          f"{1:9.2f}  {spread(rates['reference']):<12}")
    for b in backends:
        r = median(rates[b])
        words = [len(rec["caption"].split()) for run in runs[b] for rec in run["result"] if rec.get("caption")]
        print(f"{'caption-images --backend ' + b:<38}{median(seconds[b]):9.1f}{r:10.1f}{r / reference_rate:9.2f}  "
              f"{spread(rates[b]):<12}" + ("  FAILED (see above)" if b in failed else
                                            f"  mean caption {sum(words) / len(words):.1f} words" if words else ""))
    print("(CLI figures include start-up; x eager: over the bare eager encoder's median on the same photos, same run)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
