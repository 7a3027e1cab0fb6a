"""``tag-video``'s batch: which videos to tag (resume, :mod:`.runs`), the two engines that tag
them (this process, or Ray actors), and the progress bars."""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from tqdm import tqdm

from captioning.bundle import recorded_decoding, resolve_bundle, verified_manifest
from captioning.config import RuntimeOptions, precision_here
from captioning.images import Preprocessing
from captioning.startup import model_loading

from ..headstart import worth_starting
from .export import OutputOptions
from .io import VideoError, VideoReader
from .job import describe_error, process_video
from .layout import Target
from .ray import tag_videos_ray
from .results import VideoTags
from .runs import previous_run, run_settings
from .scan import scan_ahead
from .options import TagOptions

PROG = "tag-video"
Outcome = tuple[str, VideoTags | None, str | None]  # (video, its tags or None, one-line error or None)


@dataclass(frozen=True)
class Plan:
    jobs: list[tuple[str, Target | None]]  # (video, its output folder) to tag, in input order
    skipped: list[str]  # one note a video already done
    refused: list[str]  # one line a folder an earlier run made otherwise (none with overwrite)


def plan(paths: list[str], targets: list[Target | None], settings: dict[str, Any], *, overwrite: bool) -> Plan:
    """What to do with each video, from what earlier runs left in its output folder (see :mod:`.runs`)."""
    result = Plan([], [], [])
    for path, target in zip(paths, targets):
        previous = previous_run(target, path, settings) if target is not None and not overwrite else None
        if previous is not None and previous.state == "done":
            result.skipped.append(f"{path}: already done in {target.folder} (same bundle and options); skipped")
        elif previous is not None and previous.state == "other":
            result.refused.append(f"{target.folder}: made with other settings: {previous.difference}")
        else:
            result.jobs.append((path, target))
    return result


class Bars:
    """A bar over the videos to tag and, below it, one over the frames tagged in the current video
    (frames/s and the real-time factor); shown only on a terminal, as tqdm decides (``disable=None``)."""

    def __init__(self, total: int):
        self.videos = tqdm(total=total, unit="video", desc=PROG, dynamic_ncols=True, disable=None, file=sys.stderr)
        self.shown = not self.videos.disable
        self.frames: tqdm | None = None
        self.start, self.seconds = 0.0, 0.0

    def video(self, name: str, expected: int | None) -> None:
        """A video starts: its frame bar (``expected``: about how many frames it will tag)."""
        self.frames = tqdm(total=expected, unit="frame", desc=name, leave=False, position=1, dynamic_ncols=True,
                           disable=None, file=sys.stderr)
        self.start, self.seconds = time.perf_counter(), 0.0

    def progress(self, frames: int, seconds: float) -> None:
        """tag_video's ``progress``: frames just tagged, the video time they advanced."""
        self.seconds += seconds
        if self.frames is not None:
            self.frames.update(frames)
            speed = self.seconds / max(time.perf_counter() - self.start, 1e-9)
            self.frames.set_postfix_str(f"{speed:.1f}x real time", refresh=False)

    def done(self) -> None:
        """A video is finished (tagged or failed)."""
        if self.frames is not None:
            self.frames.close()
            self.frames = None
        self.videos.update()

    def close(self) -> None:
        if self.frames is not None:
            self.frames.close()
        self.videos.close()


def expected_frames(path: str, options: TagOptions) -> int | None:
    """About how many frames tag_video will tag (the samples the container's duration or frame count promises)."""
    try:
        with VideoReader(path) as reader:
            info = reader.info
    except VideoError:  # tag_video says why
        return None
    if options.every_n_frames:
        return -(-info.frame_count // options.every_n_frames) if info.frame_count else None
    return int(info.duration * options.fps) + 1 if info.duration else None


class LocalEngine:
    """The videos one after the other in this process, on a model loaded once. The bundle is
    checked here; the model is loaded when the first video starts, while a head start
    (:mod:`pipelines.headstart`) decodes that video: loading imports torch, which takes seconds."""

    def __init__(self, weights: str | None, runtime: RuntimeOptions, options: TagOptions, output: OutputOptions):
        self.bundle = resolve_bundle(weights)
        manifest = verified_manifest(self.bundle)  # a damaged bundle fails here, before any video
        self.preprocessing = Preprocessing(**manifest["preprocessing"])
        self.runtime, self.options, self.output = runtime, options, output
        self.settings = run_settings(manifest["name"], manifest["version"], recorded_decoding(self.bundle, manifest),
                                     options, output, precision_here(runtime.precision))  # what a resumed run needs

    def run(self, jobs: list[tuple[str, Target | None]], bars: Bars) -> Iterator[Outcome]:
        if not jobs:
            return
        head = scan_ahead(jobs[0][0], self.options, self.preprocessing) if worth_starting() else None
        try:
            with model_loading():
                from captioning import Captioner  # imports torch, while the head start decodes

                captioner = Captioner.load(self.bundle, **asdict(self.runtime))
            for path, target in jobs:
                bars.video(Path(path).name, expected_frames(path, self.options) if bars.shown else None)
                try:
                    tags = process_video(path, target, captioner, self.options, self.output, bars.progress, head=head)
                except Exception as e:  # one bad video never stops the batch
                    yield path, None, describe_error(path, e)
                else:
                    yield path, tags, None
                finally:
                    if head is not None:
                        head.close()
                        head = None
        finally:
            if head is not None:
                head.close()


class RayEngine:
    """The videos spread over Ray actors (:mod:`.ray`), each loading the bundle once."""

    def __init__(self, weights: str | None, runtime: RuntimeOptions, options: TagOptions, output: OutputOptions, *,
                 address: str | None, actors: int | None):
        path = resolve_bundle(weights).resolve()
        manifest = verified_manifest(path)  # a damaged bundle fails here, before Ray starts
        self.settings = run_settings(manifest["name"], manifest["version"], recorded_decoding(path, manifest), options,
                                     output, precision_here(runtime.precision))
        self.bundle, self.runtime, self.options, self.output = str(path), runtime, options, output
        self.address, self.actors = address, actors

    def run(self, jobs: list[tuple[str, Target | None]], bars: Bars) -> Iterator[Outcome]:
        if jobs:  # else Ray is not started
            yield from tag_videos_ray(jobs, bundle=self.bundle, runtime=self.runtime, options=self.options,
                                      output=self.output, address=self.address, actors=self.actors)
