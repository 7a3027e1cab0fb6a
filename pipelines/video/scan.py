"""One pass over every decoded frame: cut detection on each, and the frames the encoder gets.

:func:`scan` feeds each frame's small luma picture to the :class:`~pipelines.video.cuts.CutDetector`
and converts only the frames the encoder needs: the samples (``fps`` / ``every_n_frames``),
and for a shot that no sample falls in, the frame on which its boundary was proposed (a few
frames after a cut; the first frame after a fade's black or after a dissolve), so every shot
has at least one tagged frame; each comes with the spread of its small luma picture, which
tells a near-uniform frame (black, grey, a flat colour) without looking at it again. It yields,
strictly in frame order, :class:`Picked` frames and the :class:`~pipelines.video.cuts.Boundary`
before each shot's frames: a consumer closes a shot at each boundary. Samples wait until the detector's horizon passes them (about the dissolve
window, ~1 s), so memory holds a second of converted frames at most.

:func:`scan_video` is that pass over one file, as :func:`~pipelines.video.tag_video` runs it (in a
thread, or in a head start's child process: it needs no torch), ending with a :class:`Scanned`.
"""
from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from ..headstart import HeadStart
from .cuts import Boundary, CutDetector, Update
from .io import DecodedFrame, Sampler, VideoError, VideoInfo, VideoReader

if TYPE_CHECKING:
    from captioning.images import Preprocessing

    from .options import TagOptions


# Items the head start's scan may run ahead of tag-video: enough to keep scanning through the ~2 s the parent spends
# importing torch and loading the model (~110 frames of the 3-minute clip at --fps 1; 64, the earlier lead, left a core
# idle: 4% longer runs, docs/experiments.md), ~200 KB each at 260x260 in the head start's file.
SCAN_AHEAD = 256


class VideoTooLong(VideoError):
    """A video that runs past the ``max_seconds`` given to :func:`tag_video`."""


@dataclass(frozen=True)
class Scanned:
    """The last item of :func:`scan_video`: what the reader saw of the whole file."""
    path: str  # the file
    info: VideoInfo  # its container's facts
    end_time: float  # time just after the last frame decoded
    frames_read: int  # frames decoded
    errors: tuple[str, ...]  # packets that did not decode, a possible truncation
    seconds: float  # time spent decoding, detecting and converting


@dataclass(frozen=True)
class Picked:
    index: int  # frame number
    time: float  # its presentation time
    array: Any  # what ``convert`` made of it (the encoder's input)
    sampled: bool  # False: a shot's first frames, picked because no sample falls in the shot
    spread: float = float("inf")  # standard deviation (0-255) of its small luma picture (inf: not measured)


class _Shots:
    """The scan's bookkeeping: samples waiting for the horizon, and each candidate boundary's frame."""

    def __init__(self) -> None:
        self.held: deque[Picked] = deque()  # converted samples not yet past the detector's horizon
        self.probes: dict[int, Picked] = {}  # candidate boundary frame -> frame converted when proposed
        self.start = 0  # first frame of the open shot
        self.has_frame = False  # a tagged frame of the open shot has been handed out

    def release(self, horizon: float) -> Iterator[Picked]:
        while self.held and self.held[0].index <= horizon:
            self.has_frame = True
            yield self.held.popleft()
        self.probes = {k: p for k, p in self.probes.items() if k > horizon or (k == self.start and not self.has_frame)}

    def close(self, b: Boundary) -> Iterator[Picked | Boundary]:
        """The open shot ends before ``b``: its last samples, its probe if it has no sample, then ``b``."""
        probe = self.probes.get(self.start)
        before = [p for p in self.held if p.index < b.frame]
        if not (self.has_frame or before) and (probe is None or probe.index >= b.frame):
            return  # this shot would have no frame to tag: it runs on to the next boundary
        for _ in before:
            yield self.held.popleft()
        if not (self.has_frame or before):
            yield probe
        yield b
        self.start, self.has_frame = b.frame, False
        self.probes = {k: p for k, p in self.probes.items() if k >= b.frame}

    def finish(self) -> Iterator[Picked]:
        had = self.has_frame or bool(self.held)
        yield from self.release(float("inf"))
        if not had and self.start in self.probes:
            yield self.probes[self.start]


def scan(frames: Iterable[DecodedFrame], detector: CutDetector, sampler: Sampler,
         convert: Callable[[DecodedFrame], Any]) -> Iterator[Picked | Boundary]:
    """Picked frames and boundaries in frame order (see the module docstring)."""
    shots = _Shots()
    last: DecodedFrame | None = None
    last_luma: np.ndarray | None = None
    for f in frames:
        last, last_luma = f, f.luma()
        update = detector.push(f.index, f.time, last_luma)
        picked = Picked(f.index, f.time, convert(f), True, _spread(last_luma)) \
            if sampler.wants(f.index, f.time) else None
        if picked is not None:
            shots.held.append(picked)
        yield from _handle(update, shots, f, last_luma, picked, convert)
    if last is not None:
        yield from _handle(detector.finish(), shots, last, last_luma, None, convert)
        yield from shots.finish()


def _spread(luma: np.ndarray) -> float:
    return float(np.std(luma, dtype=np.float64))


def _handle(update: Update, shots: _Shots, f: DecodedFrame, luma: np.ndarray, picked: Picked | None,
            convert: Callable[[DecodedFrame], Any]) -> Iterator[Picked | Boundary]:
    if update.proposed:
        probe = picked if picked is not None else Picked(f.index, f.time, convert(f), True, _spread(luma))
        probe = Picked(probe.index, probe.time, probe.array, False, probe.spread)
        shots.probes.update({frame: probe for frame in update.proposed})
    for b in update.final:
        yield from shots.close(b)
    yield from shots.release(update.horizon)


def scan_video(path: str, options: TagOptions, preprocessing: Preprocessing,
               max_seconds: float | None = None) -> Iterator[Picked | Boundary | Scanned]:
    """:func:`scan` over every frame of ``path``, sampled as ``options`` say, each picked frame
    converted to the encoder's input, then a :class:`Scanned`. Raises :class:`VideoError` when the
    file cannot be read, :class:`VideoTooLong` at the first frame past ``max_seconds``."""
    with VideoReader(path, threads=decoder_threads()) as reader:
        detector = CutDetector(options.cuts, fps=float(reader.info.rate))
        sampler = Sampler(fps=None if options.every_n_frames else options.fps, every_n=options.every_n_frames,
                          period=1 / float(reader.info.rate))
        side = preprocessing.size

        def convert(frame: DecodedFrame) -> np.ndarray:  # FFmpeg's scaler resizes as it converts (within
            return preprocessing.to_array(Image.fromarray(frame.rgb((side, side))))  # a grey level of PIL's)

        items, seconds = scan(_limited(reader, max_seconds), detector, sampler, convert), 0.0
        while True:
            t = time.perf_counter()
            item = next(items, None)
            seconds += time.perf_counter() - t
            if item is None:
                break
            yield item
        yield Scanned(reader.path, reader.info, reader.end_time, reader.frames_read, tuple(reader.errors), seconds)


def decoder_threads() -> int:
    """Half the cores decode, the encoder has the rest: with every core on each, frame threading's
    overhead buys nothing (measured on 2 cores: the same wall time as one decoding thread for
    ~1 s more CPU on the 3-minute 720p clip, taken from the encoder)."""
    return max(1, (os.cpu_count() or 1) // 2)


def _limited(reader: VideoReader, max_seconds: float | None) -> Iterator[DecodedFrame]:
    """The reader's frames; :class:`VideoTooLong` at the first one past ``max_seconds``."""
    for frame in reader.frames():
        if max_seconds is not None and frame.time > max_seconds:
            raise VideoTooLong(f"{reader.path}: longer than {max_seconds:g} s")
        yield frame


def scan_ahead(path: str | os.PathLike, options: TagOptions, preprocessing: Preprocessing) -> HeadStart:
    """:func:`~pipelines.video.scan.scan_video` of ``path`` started in a head start (a child process,
    :mod:`pipelines.headstart`), for :func:`~pipelines.video.tag_video`'s ``head``: ``tag-video`` decodes its first
    video while it imports torch and loads the model."""
    return HeadStart(lambda: scan_video(str(path), options, preprocessing),
                     ahead=max(SCAN_AHEAD, 4 * options.batch_size))
