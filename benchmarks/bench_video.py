"""Video tagging speed per encoder backend, side by side (not a test): the real-time factor of
``tag-video --fps 1`` against the clip's bare decoding floor.

    python benchmarks/bench_video.py [--video clip.mp4 | --seconds 180 --images DIR] [--fps 1]
                                     [--backends torch,openvino,onnxruntime] [--repeats 1]
                                     [--weights W] [--threads N] [--device cpu]

Without ``--video`` it writes the team's reference clip into a temporary folder for this run (or
into ``--work``, where it is kept and reused): ``--seconds`` (default 180) of 1280x720 30 fps
MPEG-4 (cv2.VideoWriter 'mp4v'), one photo per 10 s shot with a slow zoom and pan (18 photos for
180 s, every 97th JPEG of ``--images``, else scikit-image samples), so the clip is not trivially
compressible and has a cut every 10 s. Without ``--weights`` and no default bundle it builds a
bundle with random weights of the real size (captions are gibberish but cost what real ones cost).

Every backend is first loaded once in-process, which fills the ONNX graph cache the CLIs read.
Then, interleaved over ``--repeats`` rounds, it runs the whole ``tag-video`` CLI as a subprocess
once per backend (``--backend B --fps F --out DIR --formats json --strict``; start-up included:
imports, bundle load, graph compile from the warm cache), checking each wrote its JSON with every
sampled frame, the clip's cuts at their exact frames and no error, and times, in-process, the decode
floor (PyAV decoding every frame, ``thread_type="AUTO"``, nothing converted) and the floor plus cut
detection (:class:`pipelines.video.io.VideoReader` handing every frame's small luma picture to
:class:`pipelines.video.cuts.CutDetector`). Prints each one's median real-time factor (clip seconds
/ wall seconds) and its ratio to the floor (tag-video decodes every frame too, so the ratio is at
most 1), with the CLI's own split (decode / encode / caption seconds from its JSON).
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (FLICKR_IMAGES, BackendRuns, interleave, machine_facts, median, parse_backends, show,  # noqa: E402
                    spread, timer, tool, warm_backends)

SIZE, FPS, SHOT_SECONDS = (1280, 720), 30, 10.0  # the reference clip


def make_clip(path: Path, *, images: str | None, seconds: int = 180, fps: int = FPS, size=SIZE,
              shot_seconds: float = SHOT_SECONDS) -> Path:
    """``seconds`` of ``fps`` MPEG-4 ('mp4v') at ``size``: one photo per ``shot_seconds`` shot, slowly
    zooming in while panning left to right (every 97th JPEG of ``images``, else scikit-image samples,
    reused in turn when there are fewer photos than shots)."""
    import cv2

    shots = max(1, math.ceil(seconds / shot_seconds))
    files = sorted(glob.glob(str(Path(images) / "*.jpg")))[:: 97] if images else []
    if files:
        pictures = [cv2.imread(f) for f in files[:shots]]
    else:
        import skimage.data

        names = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry"]
        pictures = [cv2.cvtColor(getattr(skimage.data, n)(), cv2.COLOR_RGB2BGR) for n in names]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    per_shot, total = int(shot_seconds * fps), int(seconds * fps)
    for k in range(total):
        img = pictures[(k // per_shot) % len(pictures)]
        h, w = img.shape[:2]
        u = (k % per_shot) / per_shot  # pan left to right while zooming in
        cw = int(min(w, h * size[0] / size[1]) * (0.85 - 0.2 * u))
        ch = int(cw * size[1] / size[0])
        x, y = int((w - cw) * u), int((h - ch) * (1 - u) / 2)
        writer.write(cv2.resize(img[y:y + ch, x:x + cw], size, interpolation=cv2.INTER_LINEAR))
    writer.release()
    return path


def make_bundle(path: Path) -> Path:
    from captioning.bundle import BundleInfo
    from captioning.testing import PRODUCTION_VOCAB, placeholder_vocabulary, save_random_bundle

    info = BundleInfo(name="bench_random.video", version="0.0.0", metrics={"note": "random decoder weights"})
    return save_random_bundle(path, placeholder_vocabulary(PRODUCTION_VOCAB), info)


def decode_all(video: Path) -> tuple[int, float]:
    """(frames, the container's fps): PyAV decoding every frame on all cores, nothing converted."""
    import av

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = sum(1 for _ in container.decode(stream))
        return frames, float(stream.average_rate)


def decode_and_cut(video: Path) -> list[int]:
    """The boundaries' frames: VideoReader over every frame, its small luma into the cut detector."""
    from pipelines.video.cuts import CutDetector, CutOptions
    from pipelines.video.io import VideoReader

    with VideoReader(video) as reader:
        detector = CutDetector(CutOptions(), fps=float(reader.info.rate))
        found = [b.frame for f in reader.frames() for b in detector.push(f.index, f.time, f.luma()).final]
    return found + [b.frame for b in detector.finish().final]


def _check(out: Path, frames_expected: int, cuts: list[int]) -> tuple[str | None, dict]:
    """(problem or None, the video JSON): written, not partial, every sampled frame tagged, the cuts found."""
    files = sorted(f for f in out.rglob("*.json") if not f.name.endswith(".run.json"))  # OUT/<video>/<video>.json
    if len(files) != 1:
        return f"{len(files)} JSON files in {out}", {}
    try:
        tags = json.loads(files[0].read_text())
    except (OSError, ValueError) as e:
        return f"unreadable {files[0]}: {e}", {}
    if tags.get("partial") or tags.get("errors"):
        return f"partial results: {'; '.join(tags.get('errors', []))}", tags
    sampled = sum(f["sampled"] for f in tags["frames"])
    if abs(sampled - frames_expected) > 1:
        return f"{sampled} frames sampled, {frames_expected} expected", tags
    if cuts and [s["start_frame"] for s in tags["shots"][1:]] != cuts:
        return f"shots start at {[s['start_frame'] for s in tags['shots'][1:]]}, cuts are at {cuts}", tags
    return None, tags


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--video", default=None, help="clip to tag (default: generate the reference clip)")
    p.add_argument("--seconds", type=int, default=180, help="length of the generated clip (default: %(default)s)")
    p.add_argument("--images", default=str(FLICKR_IMAGES) if FLICKR_IMAGES.is_dir() else None,
                   help="photos for the generated clip (default: %(default)s, else scikit-image samples)")
    p.add_argument("--work", default=None, help="keep the generated clip (and a random bundle) in this folder and "
                   "reuse them (default: a temporary folder for this run)")
    p.add_argument("--backends", default=None, help="comma-separated encoder backends (default: every installed one)")
    p.add_argument("--repeats", type=int, default=1, help="interleaved rounds; medians reported (default: %(default)s)")
    p.add_argument("--weights", default=None, help="bundle name or folder (default: weights/DEFAULT, else a "
                   "random-weights bundle of realistic size)")
    p.add_argument("--fps", type=float, default=1.0, help="frames sampled per second (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=None, help="frames per encoder pass (default: tag-video's)")
    p.add_argument("--beam-size", type=int, default=None, help="caption beam width (default: the bundle's)")
    p.add_argument("--threads", type=int, default=0, help="--threads of the CLI (0: its default, every core; "
                   "default: %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    args = p.parse_args(argv)
    if args.seconds < 1 or args.repeats < 1 or not args.fps > 0:
        p.error("--seconds and --repeats must be >= 1, --fps > 0")
    backends = parse_backends(args.backends)

    from captioning import NoDefaultBundleError
    from captioning.bundle import resolve_bundle

    print(machine_facts())
    print(f"command: {show([sys.executable, *sys.argv] if argv is None else [sys.executable, __file__, *argv])}")
    with tempfile.TemporaryDirectory(prefix="bench_video.") as tmp:
        tmp = Path(tmp)
        work = Path(args.work) if args.work else tmp
        work.mkdir(parents=True, exist_ok=True)
        if args.video:
            video = Path(args.video)
        else:
            images = args.images if args.images and Path(args.images).is_dir() else None
            video = work / f"clip_720p30_{args.seconds}s_{'photos' if images else 'skimage'}.mp4"
            if video.exists():
                print(f"reusing {video}")
            else:
                t = time.perf_counter()
                make_clip(video, images=images, seconds=args.seconds)
                print(f"wrote {video} ({video.stat().st_size / 1e6:.1f} MB, {args.seconds} s, "
                      f"{math.ceil(args.seconds / SHOT_SECONDS)} shots of {SHOT_SECONDS:g} s from "
                      f"{images or 'scikit-image'}) in {time.perf_counter() - t:.0f} s")
        weights = args.weights
        if weights is None:
            try:
                resolve_bundle(None)
            except NoDefaultBundleError:
                weights = str(work / "bench_random.video")
                if not Path(weights).exists():
                    make_bundle(Path(weights))
                print(f"no default bundle: random-weights bundle {weights}")

        print("warm-up (every backend loaded once in-process before timing; the first load of a runtime exports "
              "its ONNX graph into the cache the CLIs read)")
        caps = warm_backends(weights, args.device, backends, args.threads)
        bundle = next(iter(caps.values()), None)
        bundle = f"{bundle.name} {bundle.version}" if bundle else "?"
        backends = [b for b in backends if b in caps]
        caps.clear()
        if not backends:
            print("no backend loads here")
            return 1

        frames, fps = decode_all(video)  # also the page cache's warm-up
        clip_seconds = frames / fps
        sampled = math.ceil(clip_seconds * args.fps - 1e-9)  # samples at 0, 1/fps, 2/fps... (checked to +-1)
        generated = not args.video  # the reference clip: a cut every SHOT_SECONDS
        cuts = [round(k * SHOT_SECONDS * fps) for k in range(1, math.ceil(clip_seconds / SHOT_SECONDS))] if generated else []
        print(f"clip {video}: {frames} frames at {fps:g} fps = {clip_seconds:.1f} s; bundle {bundle}")

        common_argv = [video, "--fps", args.fps, "--formats", "json", "--strict", "--device", args.device]
        common_argv += ["--batch-size", args.batch_size] if args.batch_size is not None else []
        common_argv += ["--beam-size", args.beam_size] if args.beam_size is not None else []
        common_argv += ["--threads", args.threads] if args.threads else []
        common_argv += ["--weights", weights] if weights else []
        cli = BackendRuns(tool("tag-video", "pipelines.video"), common_argv, tmp, lambda out: _check(out, sampled, cuts))
        cli.print_commands(backends)
        print(f"  decode floor in-process: PyAV decoding all {frames} frames of {video.name}; then with cut detection")
        tasks = {"floor": timer(lambda: decode_all(video)), "cuts": timer(lambda: decode_and_cut(video))}
        tasks |= {b: cli.task(b) for b in backends}
        seconds = interleave(tasks, args.repeats, say=print)

    runs, problems, failed = cli.runs, cli.problems, cli.failed
    for problem in problems:
        print(f"run failed: {problem}")
    rtf = {name: [clip_seconds / s for s in seconds[name]] for name in tasks}
    floor = median(rtf["floor"])
    print(f"\n{clip_seconds:.0f} s clip, tag-video --fps {args.fps:g} ({sampled} frames), "
          f"median of {args.repeats} interleaved repeat(s)")
    print(f"{'':<34}{'wall s':>8}{'x real time':>13}{'/ floor':>9}  {'min..max':<12}  in-CLI split, medians (s)")
    print(f"{'decode floor: PyAV, every frame':<34}{median(seconds['floor']):8.1f}{floor:13.1f}{1:9.3f}  "
          f"{spread(rtf['floor']):<12}")
    r = median(rtf["cuts"])
    print(f"{'  + cut detection (in-process)':<34}{median(seconds['cuts']):8.1f}{r:13.1f}{r / floor:9.3f}  "
          f"{spread(rtf['cuts']):<12}")
    for b in backends:
        r = median(rtf[b])
        timings = [run["result"]["timings"] for run in runs[b] if run["result"]]
        t = {k: median([x[k] for x in timings]) for k in ("decode", "encode", "caption", "total")} if timings else None
        split = (f"decode {t['decode']:.1f} (overlapped), encode {t['encode']:.1f}, caption {t['caption']:.1f}, "
                 f"total {t['total']:.1f}" if t else "")
        shots = next((len(run["result"]["shots"]) for run in runs[b] if run["result"]), None)
        print(f"{'tag-video --backend ' + b:<34}{median(seconds[b]):8.1f}{r:13.1f}{r / floor:9.3f}  "
              f"{spread(rtf[b]):<12}  " + ("FAILED (see above)" if b in failed else
                                           split + (f"; {shots} shots" if shots is not None else "")))
    print("(x real time = clip seconds / wall seconds, CLI start-up included; / floor = over the decode floor's "
          "median, same run)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
