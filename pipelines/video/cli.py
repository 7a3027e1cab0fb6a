"""Tag videos frame by frame: frame-exact shots, scenes, tags, captions and a searchable timeline.

    tag-video clip.mp4 'videos/*.mkv' --out tags/ --formats json,srt,vtt,chapters,edl,otio,html --query dog
    tag-video videos/ -r --out tags/       # re-run the same command to resume

How a video is tagged: :mod:`pipelines.video`; where its files go: :mod:`.layout`; resuming:
:mod:`.runs`; the flags: ``tag-video --help``.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import time
from typing import Callable

from tqdm import tqdm

from captioning.bundle import BundleError
from captioning.everyday import EverydayOptions
from captioning.options import (add_dataclass_flags, add_runtime_flags, add_strict_flag, add_weights_flag,
                                dataclass_kwargs, flag, options_from_args, runtime_from_args)

from ..files import VIDEO_EXTENSIONS
from ..flags import add_engine_flags, add_recursive_flag
from ..inputs import discover
from .batch import PROG, Bars, LocalEngine, RayEngine, plan
from .cuts import CutOptions
from .export import OutputOptions
from .layout import LayoutError, targets
from .results import Segment, VideoTags, no_matches, shown_segments
from .subtitles import timestamp
from .options import SearchOptions, TagOptions

OUTPUT_FLAGS = {"out_dir": "out"}  # OutputOptions field -> flag name, where they differ
SEARCH_FLAGS = {"min_confidence": "min_hit_confidence"}  # SearchOptions field -> flag name (caption-images'
# --min-confidence is a caption's confidence, another quantity)
EPILOG = ("Resume: run the same command again; a video whose files are all in its --out folder, made with the same "
          "bundle and options, is skipped; one made otherwise is refused, naming the difference, unless --overwrite.")


def _format_segment(path: str, s: Segment) -> str:
    return (f"{path}\t{timestamp(s.start, sep='.')} --> {timestamp(s.end, sep='.')}\t"
            f"{s.confidence:.3f}\t{', '.join(s.labels)}")


def _report(tags: VideoTags, queries: list[str], write: Callable[[str], None], *,
            search: SearchOptions = SearchOptions(), warn: Callable[[str], None] = lambda line: None) -> None:
    if queries:
        for q in queries:  # like grep: one line per matching segment; none: one line on stderr
            hits, hidden = shown_segments(tags, q, search)
            for s in hits:
                write(_format_segment(tags.video.path, s))
            if not hits:
                threshold = f"under {flag(SEARCH_FLAGS['min_confidence'])} {search.min_confidence:g}"
                warn(no_matches(q, tags.video.path, hidden=hidden, threshold=threshold))
        return
    top = {source: ", ".join(f"{t.label} ({t.probability:.2f})" for t in tags.summary.tags if t.source == source)
           for source in ("everyday", "imagenet")}
    write(f"{tags.video.path}: {tags.video.duration:.1f} s, {len(tags.shots)} shots, "
          f"{tags.video.sampled_frames} frames; top tags: {top['imagenet']}"
          + (f"; everyday tags: {top['everyday']}" if top["everyday"] else ""))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0], epilog=EPILOG)
    p.add_argument("inputs", nargs="+", metavar="VIDEO", help="video files, folders or glob patterns (quote them); "
                   f"folders and patterns keep the {' '.join(VIDEO_EXTENSIONS)} files (any case)")
    add_recursive_flag(p)
    add_dataclass_flags(p, TagOptions, skip=("cuts", "everyday"))
    add_dataclass_flags(p, EverydayOptions)
    add_dataclass_flags(p.add_argument_group("cut detection (pipelines.video.cuts)"), CutOptions)
    files = p.add_argument_group("output files")
    add_dataclass_flags(files, OutputOptions, rename=OUTPUT_FLAGS)
    files.add_argument("--overwrite", action="store_true", help="start over: tag every video again, replacing the "
                       "files earlier runs wrote (never another file) (default: off)")
    search = p.add_argument_group("search")
    search.add_argument("--query", action="append", default=[], metavar="TAG",
                        help="print the segments where TAG is seen (path, start --> end, confidence, "
                        "matching tags; tab-separated) instead of a summary; TAG may be an everyday word's synonym "
                        "(puppy, automobile); repeatable (default: none)")
    add_dataclass_flags(search, SearchOptions, rename=SEARCH_FLAGS)
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


def _options(p: argparse.ArgumentParser,
             args: argparse.Namespace) -> tuple[TagOptions, OutputOptions, SearchOptions]:
    if (args.formats or args.thumbnails) and not args.out:
        p.error("--formats and --thumbnails need --out DIR")
    cuts = _dataclass_from_args(p, CutOptions, args, {})
    tag = options_from_args(p, TagOptions, args, skip=("cuts", "everyday"))
    everyday = options_from_args(p, EverydayOptions, args)
    return (dataclasses.replace(tag, cuts=cuts, everyday=everyday),
            _dataclass_from_args(p, OutputOptions, args, OUTPUT_FLAGS),
            _dataclass_from_args(p, SearchOptions, args, SEARCH_FLAGS))


def _error(line: object) -> None:
    print(f"{PROG}: {line}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    options, output, search = _options(p, args)
    runtime = runtime_from_args(p, args)
    found = discover(args.inputs, recursive=args.recursive, extensions=VIDEO_EXTENSIONS)
    for warning in found.warnings:
        _error(warning)
    if not found.paths:
        _error("no videos found in the given inputs")
        return 2
    try:
        folders = targets(found.paths, found.relative, output.out_dir) if output.out_dir else [None] * len(found.paths)
        if args.engine == "ray":  # the bundle folder every Ray actor loads
            engine = RayEngine(args.weights, runtime, options, output, address=args.address, actors=args.actors)
        else:
            engine = LocalEngine(args.weights, runtime, options, output)
    except (LayoutError, BundleError, RuntimeError) as e:  # videos sharing a folder, no/damaged bundle, no device
        _error(e)
        return 2
    todo = plan(found.paths, folders, engine.settings, overwrite=args.overwrite)
    if todo.refused:
        n = len(todo.refused) - 1
        more = f" (and {n} more folder{'s' if n > 1 else ''})" if n else ""
        _error(f"{todo.refused[0]}; resume with the same ones, start over with --overwrite, or choose another "
               f"--out{more}")
        return 2
    for note in todo.skipped:
        _error(note)
    return _tag(engine, todo.jobs, len(todo.skipped), args, search)


def _tag(engine: LocalEngine | RayEngine, jobs: list, skipped: int, args: argparse.Namespace,
         search: SearchOptions) -> int:
    """Tag ``jobs`` with ``engine``, reporting each video as it ends (``--query``'s segments as
    ``search`` says); returns the exit status."""
    bars, start = Bars(len(jobs)), time.perf_counter()
    tagged, failed, seconds = 0, 0, 0.0
    say = lambda line: tqdm.write(line, file=sys.stdout)  # noqa: E731
    try:
        for path, tags, error in engine.run(jobs, bars):
            bars.done()
            if error is not None:
                failed += 1
                tqdm.write(f"{PROG}: {error}", file=sys.stderr)
                continue
            tagged, seconds = tagged + 1, seconds + tags.video.duration
            if tags.partial:
                tqdm.write(f"{PROG}: {path}: partial results: {'; '.join(tags.errors)}", file=sys.stderr)
            _report(tags, args.query, say, search=search,
                    warn=lambda line: tqdm.write(f"{PROG}: {line}", file=sys.stderr))
    except KeyboardInterrupt:
        bars.close()
        _error("interrupted; run the same command again to resume")
        return 130
    except (BundleError, RuntimeError) as e:  # the model would not load (a bad bundle, no CUDA)
        bars.close()
        _error(" ".join(str(e).split()))
        return 2
    bars.close()
    wall = time.perf_counter() - start
    speed = f" in {wall:.1f} s ({seconds / wall:.1f}x real time)" if tagged else ""
    _error(f"tagged {tagged}, skipped {skipped} (already done), failed {failed}{speed}")
    return 1 if args.strict and failed else 0
