"""Video tagging speed on this machine (not a test): the real-time factor of ``tag_video``.

    python benchmarks/bench_video.py [--video clip.mp4] [--weights W] [--fps 1] [--images DIR]

Without ``--video`` it writes a 60 s 1280x720 30 fps MPEG-4 clip (cv2.VideoWriter 'mp4v')
of 12 photos with slow pans and zooms (from ``--images``, else scikit-image samples), so the
clip is not trivially compressible and has 11 cuts. Without ``--weights`` (and no default
bundle) it builds a bundle with random weights of the real size (vocabulary 2538 words,
default decoder config: captions are gibberish but cost what real ones cost).

Prints: frame sampling time with grab() vs seeking; then ``tag_video`` at ``--fps`` with
shot captions: the real-time factor (video duration / wall-clock processing time) and the
wall-clock split decode / encode / caption; then the same work stage by stage in CPU
seconds, which shows what the machine does when no other job shares the CPU (use
``--threads 1`` on a loaded machine: idle OpenMP threads spin and inflate CPU time).
"""
from __future__ import annotations

import argparse
import glob
import tempfile
import time
from pathlib import Path

import numpy as np

from pipelines.video import TagOptions, tag_video
from pipelines.video.io import VideoReader


def make_clip(path: Path, *, images: str | None, seconds: int = 60, fps: int = 30, size=(1280, 720),
              shot_seconds: float = 5.0) -> Path:
    import cv2

    files = sorted(glob.glob(str(Path(images) / "*.jpg")))[:: 97] if images else []
    if files:
        pictures = [cv2.imread(f) for f in files[: int(seconds / shot_seconds)]]
    else:
        import skimage.data

        names = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry"]
        pictures = [cv2.cvtColor(getattr(skimage.data, n)(), cv2.COLOR_RGB2BGR) for n in names]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    per_shot, total = int(shot_seconds * fps), seconds * fps
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


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    tagging = TagOptions()  # tag-video's defaults
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--video", default=None, help="clip to tag (default: generate one in --work)")
    p.add_argument("--images", default="/work/shared/data/flickr8k/images",
                   help="photos for the generated clip (default: %(default)s, else scikit-image samples)")
    p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "bench_video"),
                   help="folder for the generated clip and bundle (default: %(default)s)")
    p.add_argument("--weights", default=None, help="bundle name or folder (default: weights/DEFAULT, else a "
                   "random-weights bundle of realistic size built in --work)")
    p.add_argument("--fps", type=float, default=tagging.fps, help="frames sampled per second (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=tagging.batch_size,
                   help="frames per encoder pass (default: %(default)s)")
    p.add_argument("--beam-size", type=int, default=3, help="caption beam width (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    args = p.parse_args(argv)

    import torch

    from captioning import Captioner, NoDefaultBundleError

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    video = Path(args.video) if args.video else work / "clip_720p30_60s.mp4"
    if not video.exists():
        images = args.images if args.images and Path(args.images).is_dir() else None
        _, wall, _ = _timed(lambda: make_clip(video, images=images))
        print(f"wrote {video} ({video.stat().st_size / 1e6:.1f} MB, from {images or 'scikit-image'}) in {wall:.0f} s")
    try:
        captioner = Captioner.load(args.weights, device=args.device)
    except NoDefaultBundleError:
        bundle = work / "bench_random.video"
        if not bundle.exists():
            make_bundle(bundle)
        captioner = Captioner.load(bundle, device=args.device)
    print(f"bundle {captioner.name}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"video {video}")

    for strategy in ("grab", "seek", "grab", "seek"):
        def sample(strategy=strategy):
            with VideoReader(video) as reader:
                return [f.time for f in reader.sample(fps=args.fps, strategy=strategy)]
        times, wall, cpu = _timed(sample)
        print(f"sampling at {args.fps:g} fps with {strategy}: {len(times)} frames in {wall:.2f} s wall, {cpu:.2f} s CPU")

    tag_video(video, captioner, fps=2.0, every_n_frames=300, batch_size=args.batch_size)  # warm-up
    tags, wall, cpu = _timed(lambda: tag_video(video, captioner, fps=args.fps, batch_size=args.batch_size,
                                               beam_size=args.beam_size))
    d, t, n_shots = tags.video.duration, tags.timings, len(tags.shots)
    print(f"tag_video --fps {args.fps:g}: {tags.video.sampled_frames} frames, {n_shots} shots, {d:.1f} s of video, "
          f"mean caption {np.mean([len(s.caption.split()) for s in tags.shots]):.1f} words")
    print(f"  wall {wall:.2f} s -> REAL-TIME FACTOR {d / wall:.1f}x   (CPU time {cpu:.2f} s)")
    print(f"  split (wall s): decode {t['decode']:.2f} (in a thread, overlapping), encode {t['encode']:.2f}, "
          f"caption {t['caption']:.2f} ({n_shots} keyframes, beam {args.beam_size})")

    # the same work stage by stage, in CPU seconds (what the machine does without other load)
    from PIL import Image

    def decode():
        with VideoReader(video) as reader:
            return [captioner.preprocessing.to_array(Image.fromarray(f.image)) for f in reader.sample(fps=args.fps)]
    arrays, _, cpu_decode = _timed(decode)
    encs, _, cpu_encode = _timed(lambda: [captioner.encode(arrays[i:i + args.batch_size])
                                          for i in range(0, len(arrays), args.batch_size)])
    enc = encs[0]
    rows = torch.arange(n_shots) % len(enc)
    from captioning.api import Encoded
    keyframes = Encoded(enc.grid[rows], enc.pooled[rows], enc.logits[rows])
    _, _, cpu_caption = _timed(lambda: captioner.decode(keyframes, beam_size=args.beam_size))
    total = cpu_decode + cpu_encode + cpu_caption
    print(f"  CPU s by stage: decode+resize {cpu_decode:.2f}, encode {cpu_encode:.2f}, caption {cpu_caption:.2f}; "
          f"total {total:.2f}")
    print(f"  -> on free cores: {d / total:.1f}x on one core; {d / max(cpu_decode, cpu_encode + cpu_caption):.1f}x "
          f"with decoding overlapped on the second core (as tag_video does)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
