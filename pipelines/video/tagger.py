""":func:`tag_video` and the engine behind it: a decoding thread decodes every frame, finds the
cuts and converts the frames to tag (:mod:`pipelines.video.scan`); they stream into batched
encoder passes; each shot's keyframe is captioned in batches as its shot closes, so memory
stays bounded however long the video is."""
from __future__ import annotations

import dataclasses
import os
import queue
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import torch
from PIL import Image

from captioning.api import Encoded
from captioning.decoding import Decoding
from captioning.everyday import EverydayOptions

from ..flags import with_changes
from .assemble import Stream, Tagged, assemble
from .cuts import Boundary, CutDetector, CutOptions
from .io import DecodedFrame, Sampler, VideoError, VideoReader
from .results import VideoTags
from .scan import Picked, scan
from .shots import OpenShot, RawShot

CUT_OPTIONS = tuple(f.name for f in dataclasses.fields(CutOptions))  # tag_video(..., cut_ratio=2.5) goes to cuts


class VideoTooLong(VideoError):
    """A video that runs past the ``max_seconds`` given to :func:`tag_video`."""


@dataclass(frozen=True)
class TagOptions:
    """How a video is tagged: :func:`tag_video`'s options, ``tag-video``'s flags (made from these
    fields and their comments, and from :class:`CutOptions`' for ``cuts``) and the web UI's defaults."""
    fps: float | None = 1.0  # frames sampled per second (unused when sampling every N frames)
    every_n_frames: int | None = None  # sample frames 0, N, 2N... instead of by time (None: off)
    scene_threshold: float = 0.3  # cosine distance between shots' mean semantic vectors that keeps them one scene
    scene_span: int = 4  # a shot joins a scene when similar to one of this many shots before it
    tags: int = 5  # ImageNet labels (and as many everyday tags) kept per frame and per shot
    batch_size: int = 16  # frames per encoder pass (and keyframes per caption batch)
    decoding: Mapping[str, Any] = field(default_factory=dict)  # Decoding options over the bundle's recorded ones
    caption_every_frame: bool = False  # caption every sampled frame, not only one keyframe per shot
    blank_spread: float = 8.0  # a tagged frame whose small luma picture's standard deviation (0-255) is below this
    # is blank (black, grey, a flat colour, a fade's darkest frames): no tags, no caption, never a keyframe (0: off)
    cuts: CutOptions = CutOptions()  # the cut detector's parameters (pipelines.video.cuts)
    everyday: EverydayOptions = EverydayOptions()  # which everyday tags (as many as tags) shots and search get

    def __post_init__(self) -> None:
        problems = [why for bad, why in (
            (self.fps is None and self.every_n_frames is None, "fps or every_n_frames must be given"),
            (self.fps is not None and not self.fps > 0, "fps must be > 0"),
            (self.every_n_frames is not None and self.every_n_frames < 1, "every_n_frames must be >= 1"),
            (not 0 < self.scene_threshold <= 2, "scene_threshold must be in (0, 2]"),
            (self.scene_span < 1, "scene_span must be >= 1"),
            (self.tags < 1, "tags must be >= 1"),
            (self.batch_size < 1, "batch_size must be >= 1"),
            (not 0 <= self.blank_spread <= 255, "blank_spread must be in [0, 255]"),
            (not isinstance(self.cuts, CutOptions), "cuts must be a CutOptions"),
            (not isinstance(self.everyday, EverydayOptions), "everyday must be an EverydayOptions"),
        ) if bad] + Decoding.override_problems(self.decoding)
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def shot_threshold(self) -> float:
        """The old name of :attr:`scene_threshold` (shots were cut by semantic distance before
        issue #22), kept while the web UI still reads it."""
        return self.scene_threshold


def recorded_options(options: TagOptions, decoding: Decoding) -> dict[str, Any]:
    """The options a result records (its JSON's ``options``): all but the batch size, with the
    whole decoding in effect (``decoding``, the bundle's recorded one, under ``options.decoding``)."""
    recorded = {k: v for k, v in asdict(options).items() if k not in ("batch_size", "decoding")}
    return {**recorded, **decoding.replace(**options.decoding).asdict()}


def tag_video(path: str | os.PathLike, captioner: Any, options: TagOptions = TagOptions(), *,
              progress: Callable[[int, float], None] | None = None, max_seconds: float | None = None,
              **changes: Any) -> VideoTags:
    """Tag one video with a :class:`captioning.Captioner` (see :mod:`pipelines.video`).

    ``changes`` replace options by name, Decoding's and CutOptions' among them:
    ``tag_video(path, captioner, fps=2.0, beam_size=5, min_shot_frames=4)`` (``shot_threshold``,
    the old name of ``scene_threshold``, is still taken). ``progress(frames, seconds)`` is called
    after each batch with the number of frames just tagged and the video time they advanced.
    ``max_seconds`` caps the work on one video (None: no cap): decoding stops with
    :class:`VideoTooLong` at the first frame past it, whatever duration the container announces
    (it may announce none, or a wrong one). Raises :class:`VideoError` when the file cannot be
    read at all; a video that breaks off part-way gives results with ``partial=True``;
    ValueError for invalid options.
    """
    if "shot_threshold" in changes:
        changes["scene_threshold"] = changes.pop("shot_threshold")
    cuts = {k: changes.pop(k) for k in CUT_OPTIONS if k in changes}
    if cuts:
        changes["cuts"] = dataclasses.replace(changes.get("cuts", options.cuts), **cuts)
    options = with_changes(options, changes) if changes else options
    with VideoReader(path, threads=decoder_threads()) as reader:
        return Tagger(captioner, options).run(reader, progress, max_seconds)


def decoder_threads() -> int:
    """Half the cores decode, the encoder has the rest: with every core on each, frame threading's
    overhead buys nothing (measured on 2 cores: the same wall time as one decoding thread for
    ~1 s more CPU on the 3-minute 720p clip, taken from the encoder)."""
    return max(1, (os.cpu_count() or 1) // 2)


class Tagger:
    """Streams one video through the encoder; see :func:`tag_video`."""

    def __init__(self, captioner: Any, options: TagOptions):
        self.cap, self.opt = captioner, options
        self.decoding = dict(options.decoding)  # over the bundle's recorded decoding
        self.timings = {"decode": 0.0, "encode": 0.0, "caption": 0.0}
        self.indices: list[int] = []
        self.times: list[float] = []
        self.sampled: list[bool] = []
        self.blank: list[bool] = []  # near-uniform frames (TagOptions.blank_spread)
        self.vectors: list[np.ndarray] = []  # (B, D) unit semantic vectors per batch
        self.probs: list[np.ndarray] = []  # (B, 1000) ImageNet probabilities per batch
        self.frame_tags: list[Any] = []
        self.frame_captions: list[Any] = []
        self.bounds: deque[tuple[Boundary, int]] = deque()  # boundaries not reached, with the position they come at
        self.shot = OpenShot(0)  # the shot being read
        self.shot_start: Boundary | None = None  # the boundary it starts at (None: the first shot)
        self.shots: list[tuple[Boundary | None, RawShot]] = []  # closed shots
        self.captions: dict[int, Any] = {}  # shot number -> its keyframe's CaptionResult
        self.pending: list[int] = []  # shots waiting for a keyframe caption

    def run(self, reader: VideoReader, progress: Callable[[int, float], None] | None,
            max_seconds: float | None) -> VideoTags:
        start = time.perf_counter()
        received, batch, done = 0, [], [0.0]  # done: video time tagged so far
        for item in _prefetch(self._scan(reader, max_seconds), 2 * self.opt.batch_size):
            if isinstance(item, Boundary):
                self.bounds.append((item, received))
                continue
            batch.append(item)
            received += 1
            if len(batch) == self.opt.batch_size:
                self._encode(batch, progress, done)
                batch = []
        if batch:
            self._encode(batch, progress, done)
        if not self.times:
            raise VideoError(f"{reader.path}: no frame could be decoded ({'; '.join(reader.errors) or 'no frames'})")
        self._close(None)
        self._caption_pending()
        return self._result(reader, time.perf_counter() - start)

    def _scan(self, reader: VideoReader, max_seconds: float | None) -> Iterator[Picked | Boundary]:
        """scan() over the reader's frames, timed (it runs in the prefetch thread)."""
        detector = CutDetector(self.opt.cuts, fps=float(reader.info.rate))
        sampler = Sampler(fps=None if self.opt.every_n_frames else self.opt.fps, every_n=self.opt.every_n_frames,
                          period=1 / float(reader.info.rate))
        items = scan(_limited(reader, max_seconds), detector, sampler, self._convert)
        while True:
            t = time.perf_counter()
            item = next(items, None)
            self.timings["decode"] += time.perf_counter() - t
            if item is None:
                return
            yield item

    def _convert(self, frame: DecodedFrame) -> np.ndarray:
        """The encoder's input: the frame resized to the bundle's square input by FFmpeg's scaler
        as it is converted (within about one grey level of converting, then resizing with PIL)."""
        side = self.cap.preprocessing.size
        return self.cap.preprocessing.to_array(Image.fromarray(frame.rgb((side, side))))

    def _encode(self, batch: list[Picked], progress: Callable[[int, float], None] | None, done: list[float]) -> None:
        t = time.perf_counter()
        blank = [p.spread < self.opt.blank_spread for p in batch]
        enc = self.cap.encode([p.array for p in batch])  # blank frames too: one batch shape, and they are rare
        self.frame_tags += [() if b else tags for b, tags in zip(blank, self.cap.top_tags(enc, k=self.opt.tags))]
        vectors = torch.nn.functional.normalize(enc.pooled.float(), dim=1).cpu().numpy()
        self.vectors.append(vectors)
        self.probs.append(enc.logits.float().softmax(-1).cpu().numpy())
        self.timings["encode"] += time.perf_counter() - t
        if self.opt.caption_every_frame:
            self.frame_captions += self._caption_rows(enc, [i for i, b in enumerate(blank) if not b], len(batch))
        for i, p in enumerate(batch):
            while self.bounds and self.bounds[0][1] <= len(self.indices):
                self._close(self.bounds.popleft()[0])
            self.indices.append(p.index)
            self.times.append(p.time)
            self.sampled.append(p.sampled)
            self.blank.append(blank[i])
            payload = (lambda: None) if self.opt.caption_every_frame else \
                (lambda i=i: (_copy(enc.grid[i]), _copy(enc.pooled[i]), _copy(enc.logits[i])))
            self.shot.add(vectors[i], payload, blank=blank[i])
        if len(self.pending) >= self.opt.batch_size:
            self._caption_pending()
        if progress:
            progress(len(batch), batch[-1].time - done[0])
            done[0] = batch[-1].time

    def _close(self, boundary: Boundary | None) -> None:
        """The open shot ends (at ``boundary``; None: at the end of the video)."""
        if len(self.shot) == 0:  # no frame since the last boundary (scan gives every shot one): the earlier
            if self.shots and boundary is not None:  # shot runs on to this boundary; the first one starts at 0
                self.shot_start = boundary
            return
        raw = self.shot.close()
        self.shots.append((self.shot_start, raw))
        if self.opt.caption_every_frame or raw.blank:  # a blank shot: no caption
            self.captions[len(self.shots) - 1] = None if raw.blank else self.frame_captions[raw.keyframe]
        else:
            self.pending.append(len(self.shots) - 1)
        self.shot, self.shot_start = OpenShot(len(self.indices)), boundary

    def _caption(self, enc: Any) -> list[Any]:
        t = time.perf_counter()
        results = self.cap.decode(enc, **self.decoding)
        self.timings["caption"] += time.perf_counter() - t
        return results

    def _caption_rows(self, enc: Encoded, rows: list[int], size: int) -> list[Any]:
        """Captions of ``enc``'s ``rows`` (the batch's frames that are not blank), None for the others."""
        if len(rows) == size:
            return self._caption(enc)
        if not rows:
            return [None] * size
        keep = torch.tensor(rows, device=enc.grid.device)
        results = iter(self._caption(Encoded(enc.grid[keep], enc.pooled[keep], enc.logits[keep])))
        chosen = set(rows)
        return [next(results) if i in chosen else None for i in range(size)]

    def _caption_pending(self) -> None:
        for i in range(0, len(self.pending), self.opt.batch_size):
            chunk = self.pending[i:i + self.opt.batch_size]
            rows = [self.shots[n][1].payload for n in chunk]
            enc = Encoded(*(torch.stack([row[j] for row in rows]) for j in range(3)))
            for n, result in zip(chunk, self._caption(enc)):
                self.captions[n] = result
                start, raw = self.shots[n]
                self.shots[n] = (start, dataclasses.replace(raw, payload=None))  # the rows are not needed any more
        self.pending = []

    def _result(self, reader: VideoReader, seconds: float) -> VideoTags:
        tagged = Tagged(np.asarray(self.indices), np.asarray(self.times), np.asarray(self.sampled), self.frame_tags,
                        np.concatenate(self.vectors), np.concatenate(self.probs),
                        self.frame_captions if self.opt.caption_every_frame else None, np.asarray(self.blank, bool))
        options = recorded_options(self.opt, self.cap.decoding)
        timings = {**{k: round(v, 3) for k, v in self.timings.items()}, "total": round(seconds, 3)}
        return assemble(Stream(reader.info, reader.end_time, reader.frames_read, tuple(reader.errors)), tagged,
                        self.shots, [self.captions[n] for n in range(len(self.shots))], k=self.opt.tags,
                        everyday=self.opt.everyday,
                        scene_threshold=self.opt.scene_threshold, scene_span=self.opt.scene_span,
                        sampled_fps=None if self.opt.every_n_frames else self.opt.fps,
                        extra={"model": {"name": self.cap.name, "version": self.cap.version}, "options": options,
                               "timings": timings})


def _copy(row: torch.Tensor) -> torch.Tensor:
    """A keyframe candidate's encoder row, copied out of its batch. On the CPU through numpy: torch
    copies a 9x9x1280 grid with its intra-op threads, 8 ms a row here when the cores are busy (1.4 s
    of a 3-minute clip) against 0.03 ms."""
    return torch.from_numpy(row.numpy().copy()) if row.device.type == "cpu" else row.clone()


def _limited(reader: VideoReader, max_seconds: float | None) -> Iterator[DecodedFrame]:
    """The reader's frames; :class:`VideoTooLong` at the first one past ``max_seconds``."""
    for frame in reader.frames():
        if max_seconds is not None and frame.time > max_seconds:
            raise VideoTooLong(f"{reader.path}: longer than {max_seconds:g} s")
        yield frame


_END = object()


def _prefetch(items: Iterator[Any], size: int) -> Iterator[Any]:
    """Run ``items`` in a background thread (video decoding overlaps encoding: FFmpeg and
    torch release the GIL); errors are re-raised here; stops the thread when abandoned."""
    q: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(item: Any) -> None:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def work() -> None:
        try:
            for item in items:
                put(item)
                if stop.is_set():
                    return
            put(_END)
        except BaseException as e:  # handed to the consumer
            put(e)

    thread = threading.Thread(target=work, name="video-decode", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _batched(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch
