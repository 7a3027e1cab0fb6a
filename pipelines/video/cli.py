"""Tag videos frame by frame: frame-exact shots, scenes, tags, captions and a searchable timeline.

    tag-video clip.mp4 videos/ --out tags/ --formats json,srt,vtt,chapters,edl,otio,html --query dog

How a video is tagged: :mod:`pipelines.video`; the flags: ``tag-video --help``.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from captioning import BundleError, Captioner
from captioning.bundle import resolve_bundle
from captioning.options import (add_dataclass_flags, add_runtime_flags, add_strict_flag, add_weights_flag,
                                dataclass_kwargs, flag, options_from_args, runtime_from_args)

from ..files import VIDEO_EXTENSIONS
from ..flags import add_engine_flags
from .cuts import CutOptions
from .export import OutputOptions
from .io import find_videos
from .job import describe_error, process_video
from .ray import tag_videos_ray
from .results import Segment, VideoTags
from .subtitles import timestamp
from .tagger import TagOptions

OUTPUT_FLAGS = {"out_dir": "out"}  # OutputOptions field -> flag name, where they differ


def unique_stems(paths: list[Path]) -> list[str]:
    """Output file stems: the file name without extension, made unique with -2, -3..."""
    stems, seen = [], set()
    for p in paths:
        stem, n = p.stem or "video", 1
        while (stem if n == 1 else f"{stem}-{n}") in seen:
            n += 1
        stems.append(stem if n == 1 else f"{stem}-{n}")
        seen.add(stems[-1])
    return stems


def _format_segment(path: str, s: Segment) -> str:
    return (f"{path}\t{timestamp(s.start, sep='.')} --> {timestamp(s.end, sep='.')}\t"
            f"{s.confidence:.3f}\t{', '.join(s.labels)}")


def _report(tags: VideoTags, queries: list[str], write: Callable[[str], None]) -> None:
    if queries:
        for q in queries:  # like grep: one line per matching segment, nothing when none
            for s in tags.search(q):
                write(_format_segment(tags.video.path, s))
        return
    top = ", ".join(f"{t.label} ({t.probability:.2f})" for t in tags.summary.tags if t.source == "imagenet")
    write(f"{tags.video.path}: {tags.video.duration:.1f} s, {len(tags.shots)} shots, "
          f"{tags.video.sampled_frames} frames; top tags: {top}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tag-video", description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", metavar="VIDEO_OR_DIR",
                   help=f"video files, or folders searched recursively for {' '.join(VIDEO_EXTENSIONS)}")
    add_dataclass_flags(p, TagOptions, skip=("cuts",))
    add_dataclass_flags(p.add_argument_group("cut detection (pipelines.video.cuts)"), CutOptions)
    add_dataclass_flags(p.add_argument_group("output files"), OutputOptions, rename=OUTPUT_FLAGS)
    p.add_argument("--query", action="append", default=[], metavar="TAG",
                   help="print the segments where TAG is seen (path, start --> end, confidence, "
                   "matching tags; tab-separated) instead of a summary; repeatable (default: none)")
    add_engine_flags(p, actors=None, actors_default="one per CPU, at most one per video")
    add_weights_flag(p)
    add_runtime_flags(p)
    add_strict_flag(p)
    return p


def _dataclass_from_args(p: argparse.ArgumentParser, cls: type, args: argparse.Namespace, rename: dict[str, str]):
    """``cls`` from its flags (renamed ones too); an invalid value exits through ``p.error`` naming the flag."""
    try:
        return cls(**dataclass_kwargs(args, cls, rename=rename))
    except ValueError as e:
        message = str(e)
        for f in dataclasses.fields(cls):
            message = re.sub(rf"\b{f.name}\b", flag(rename.get(f.name, f.name)), message)
        p.error(message)


def _options(p: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[TagOptions, OutputOptions]:
    if (args.formats or args.thumbnails) and not args.out:
        p.error("--formats and --thumbnails need --out DIR")
    cuts = _dataclass_from_args(p, CutOptions, args, {})
    tag = options_from_args(p, TagOptions, args, skip=("cuts",))
    return dataclasses.replace(tag, cuts=cuts), _dataclass_from_args(p, OutputOptions, args, OUTPUT_FLAGS)


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    options, output = _options(p, args)
    runtime = runtime_from_args(p, args)
    videos = find_videos(args.inputs)
    if not videos:
        print("tag-video: no video files found in " + " ".join(args.inputs), file=sys.stderr)
        return 1
    jobs = list(zip(map(str, videos), unique_stems(videos)))
    try:  # the model (local) or the bundle folder every Ray worker loads (ray)
        if args.engine == "ray":
            bundle = str(resolve_bundle(args.weights).resolve())
        else:
            captioner = Captioner.load(args.weights, **asdict(runtime))
    except (BundleError, RuntimeError) as e:  # no/damaged bundle, unavailable device
        print(f"tag-video: {e}", file=sys.stderr)
        return 2

    failed = 0
    bar = tqdm(unit="frame", desc="tag-video", dynamic_ncols=True, disable=None)
    say = lambda line: tqdm.write(line, file=sys.stdout)  # noqa: E731
    warn = lambda line: tqdm.write(line, file=sys.stderr)  # noqa: E731
    start, seconds = time.perf_counter(), [0.0]

    def progress(frames: int, video_seconds: float) -> None:  # tqdm shows frames/s; add the real-time factor
        seconds[0] += video_seconds
        bar.update(frames)
        bar.set_postfix_str(f"{seconds[0] / max(time.perf_counter() - start, 1e-9):.1f}x real time", refresh=False)

    def done(path: str, tags: VideoTags | None, error: str | None) -> None:
        nonlocal failed
        if error is not None:
            failed += 1
            warn(f"tag-video: {error}")
            return
        if tags.partial:
            warn(f"tag-video: {path}: partial results: {'; '.join(tags.errors)}")
        _report(tags, args.query, say)

    try:
        if args.engine == "ray":
            for path, tags, error in tag_videos_ray(jobs, bundle=bundle, runtime=runtime, options=options,
                                                    output=output, address=args.address, actors=args.actors):
                if tags is not None:
                    progress(tags.video.sampled_frames, tags.video.duration)
                done(path, tags, error)
        else:
            for path, stem in jobs:
                try:
                    tags = process_video(path, stem, captioner, options, output, progress)
                except Exception as e:  # one bad video never stops the batch
                    done(path, None, describe_error(path, e))
                else:
                    done(path, tags, None)
    finally:
        bar.close()
    if failed:
        print(f"tag-video: {failed} of {len(jobs)} videos failed", file=sys.stderr)
    return 1 if args.strict and failed else 0

