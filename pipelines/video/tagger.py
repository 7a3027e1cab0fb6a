""":func:`tag_video` and the engine behind it: sampled frames stream from a decoding thread
into batched encoder passes; shot keyframes are captioned in batches as their shots close,
so memory stays bounded however long the video is."""
from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, get_args

import numpy as np
import torch
from PIL import Image

from captioning.api import Encoded
from captioning.decoding import Decoding

from ..flags import with_changes
from .io import Strategy, VideoError, VideoReader
from .results import FrameTags, VideoMeta, VideoTags
from .shots import ShotTracker, build_index, build_shots, frame_spans, group_segments, summarize


class VideoTooLong(VideoError):
    """A video that runs past the ``max_seconds`` given to :func:`tag_video`."""


@dataclass(frozen=True)
class TagOptions:
    """How a video is tagged: :func:`tag_video`'s options, ``tag-video``'s flags (made from these
    fields and their comments) and the web UI's defaults."""
    fps: float | None = 1.0  # frames sampled per second (unused when sampling every N frames)
    every_n_frames: int | None = None  # sample frames 0, N, 2N... instead of by time (None: off)
    shot_threshold: float = 0.3  # cosine distance between consecutive samples that starts a new shot
    min_shot_seconds: float = 1.0  # shorter shots are merged into a neighbour
    tags: int = 5  # ImageNet labels kept per frame and per shot
    batch_size: int = 16  # frames per encoder pass (and keyframes per caption batch)
    decoding: Mapping[str, Any] = field(default_factory=dict)  # Decoding options over the bundle's recorded ones
    caption_every_frame: bool = False  # caption every sampled frame, not only one keyframe per shot
    strategy: Strategy = "auto"  # frame access: "grab" every frame, "seek" to samples, or "auto" (pipelines.video.io)

    def __post_init__(self) -> None:
        problems = [why for bad, why in (
            (self.fps is None and self.every_n_frames is None, "fps or every_n_frames must be given"),
            (self.fps is not None and not self.fps > 0, "fps must be > 0"),
            (self.every_n_frames is not None and self.every_n_frames < 1, "every_n_frames must be >= 1"),
            (not 0 < self.shot_threshold <= 2, "shot_threshold must be in (0, 2]"),
            (self.min_shot_seconds < 0, "min_shot_seconds must be >= 0"),
            (self.tags < 1, "tags must be >= 1"),
            (self.batch_size < 1, "batch_size must be >= 1"),
            (self.strategy not in get_args(Strategy), f"strategy must be one of {', '.join(get_args(Strategy))}"),
        ) if bad] + Decoding.override_problems(self.decoding)
        if problems:
            raise ValueError("; ".join(problems))


def tag_video(path: str | os.PathLike, captioner: Any, options: TagOptions = TagOptions(), *,
              progress: Callable[[int, float], None] | None = None, max_seconds: float | None = None,
              **changes: Any) -> VideoTags:
    """Tag one video with a :class:`captioning.Captioner` (see :mod:`pipelines.video`).

    ``changes`` replace options by name, Decoding's among them: ``tag_video(path, captioner, fps=2.0, beam_size=5)``.
    ``progress(frames, seconds)`` is called after each batch with the number of frames just
    tagged and the video time they advanced. ``max_seconds`` caps the work on one video
    (None: no cap): reading stops with :class:`VideoTooLong` at the first sampled frame past
    it, whatever duration the container announces (it may announce none, or a wrong one).
    Raises :class:`VideoError` when the file cannot be read at all; a video that breaks off
    part-way gives results with ``partial=True``; ValueError for invalid options.
    """
    options = with_changes(options, changes) if changes else options
    with VideoReader(path) as reader:
        return Tagger(captioner, options).run(reader, progress, max_seconds)


class Tagger:
    """Streams one video through the encoder; see :func:`tag_video`."""

    def __init__(self, captioner: Any, options: TagOptions):
        self.cap, self.opt = captioner, options
        self.decoding = dict(options.decoding)  # over the bundle's recorded decoding
        self.timings = {"decode": 0.0, "encode": 0.0, "caption": 0.0}
        self.times: list[float] = []
        self.indices: list[int] = []
        self.vectors: list[np.ndarray] = []  # (B, 1280) unit semantic vectors per batch
        self.probs: list[np.ndarray] = []  # (B, 1000) ImageNet probabilities per batch
        self.frame_tags: list[list[Any]] = []
        self.frame_captions: list[Any] = []
        self.raw: list[Any] = []  # closed raw segments
        self.raw_captions: dict[int, Any] = {}  # raw segment number -> CaptionResult
        self.pending: list[int] = []  # raw segments waiting for a keyframe caption

    def run(self, reader: VideoReader, progress: Callable[[int, float], None] | None,
            max_seconds: float | None) -> VideoTags:
        start = time.perf_counter()
        tracker = ShotTracker(threshold=self.opt.shot_threshold)
        last_time = 0.0
        frames = _prefetch(self._frames(reader, max_seconds), 2 * self.opt.batch_size)
        for batch in _batched(frames, self.opt.batch_size):
            t = time.perf_counter()
            enc = self.cap.encode([array for _, _, array in batch])
            self.frame_tags += self.cap.top_tags(enc, k=self.opt.tags)
            vectors = torch.nn.functional.normalize(enc.pooled.float(), dim=1).cpu().numpy()
            self.vectors.append(vectors)
            self.probs.append(enc.logits.float().softmax(-1).cpu().numpy())
            self.timings["encode"] += time.perf_counter() - t
            if self.opt.caption_every_frame:
                self.frame_captions += self._caption(enc)
            for i, (index, when, _) in enumerate(batch):
                self.indices.append(index)
                self.times.append(when)
                payload = (lambda i=i: None) if self.opt.caption_every_frame else \
                    (lambda i=i: (enc.grid[i].clone(), enc.pooled[i].clone(), enc.logits[i].clone()))
                self._closed(tracker.add(vectors[i], payload))
            if len(self.pending) >= self.opt.batch_size:
                self._caption_pending()
            if progress:
                progress(len(batch), batch[-1][1] - last_time)
                last_time = batch[-1][1]
        if not self.times:
            raise VideoError(f"{reader.path}: no frame could be decoded ({'; '.join(reader.errors) or 'no frames'})")
        self._closed(tracker.finish())
        self._caption_pending()
        return self._result(reader, time.perf_counter() - start)

    def _frames(self, reader: VideoReader, max_seconds: float | None) -> Iterator[tuple[int, float, np.ndarray]]:
        """Sampled frames with their encoder-ready RGB arrays (runs in the prefetch thread); raises
        :class:`VideoTooLong` at the first sample past ``max_seconds``, so decoding stops there."""
        frames = reader.sample(fps=self.opt.fps, every_n=self.opt.every_n_frames, strategy=self.opt.strategy)
        while True:
            t = time.perf_counter()
            frame = next(frames, None)
            if frame is None:
                self.timings["decode"] += time.perf_counter() - t
                return
            if max_seconds is not None and frame.time > max_seconds:
                raise VideoTooLong(f"{reader.path}: longer than {max_seconds:g} s")
            array = self.cap.preprocessing.to_array(Image.fromarray(frame.image))
            self.timings["decode"] += time.perf_counter() - t
            yield frame.index, frame.time, array

    def _caption(self, enc: Any) -> list[Any]:
        t = time.perf_counter()
        results = self.cap.decode(enc, **self.decoding)
        self.timings["caption"] += time.perf_counter() - t
        return results

    def _closed(self, segment: Any) -> None:
        if segment is None:
            return
        self.raw.append(segment)
        if self.opt.caption_every_frame:
            self.raw_captions[len(self.raw) - 1] = self.frame_captions[segment.keyframe]
        else:
            self.pending.append(len(self.raw) - 1)

    def _caption_pending(self) -> None:
        for i in range(0, len(self.pending), self.opt.batch_size):
            chunk = self.pending[i:i + self.opt.batch_size]
            rows = [self.raw[r].payload for r in chunk]
            enc = Encoded(*(torch.stack([row[j] for row in rows]) for j in range(3)))
            for r, result in zip(chunk, self._caption(enc)):
                self.raw_captions[r] = result
                self.raw[r] = type(self.raw[r])(self.raw[r].first, self.raw[r].stop, self.raw[r].keyframe, None)
        self.pending = []

    def _result(self, reader: VideoReader, seconds: float) -> VideoTags:
        info, times = reader.info, np.asarray(self.times)
        duration = max(reader.end_time, float(times[-1]))
        vectors, probs = np.concatenate(self.vectors), np.concatenate(self.probs)
        starts, ends = frame_spans(times, duration)
        groups = group_segments(self.raw, vectors, starts, ends, threshold=self.opt.shot_threshold,
                                min_seconds=self.opt.min_shot_seconds)
        captions = [self.raw_captions[r] for r in range(len(self.raw))]
        every = self.frame_captions if self.opt.caption_every_frame else None
        frames = [FrameTags(i, t, tuple(tg), 0, every[pos].text if every else None)
                  for pos, (i, t, tg) in enumerate(zip(self.indices, self.times, self.frame_tags))]
        shots = build_shots(self.raw, groups, vectors=vectors, probs=probs, starts=starts, ends=ends,
                            frames=frames, raw_captions=captions, frame_captions=every, k=self.opt.tags)
        for n, g in enumerate(groups):
            for pos in range(self.raw[g[0]].first, self.raw[g[-1]].stop):
                frames[pos] = FrameTags(frames[pos].index, frames[pos].time, frames[pos].tags, n, frames[pos].caption)
        meta = VideoMeta(info.path, duration, info.fps, info.frame_count, info.width, info.height,
                         None if self.opt.every_n_frames else self.opt.fps, len(frames))
        options = {k: v for k, v in asdict(self.opt).items() if k not in ("batch_size", "strategy", "decoding")}
        options.update(self.cap.decoding.replace(**self.decoding).asdict())  # the whole decoding in effect
        return VideoTags(meta, tuple(frames), tuple(shots), summarize(frames, shots, probs, starts, ends, duration),
                         build_index(frames, shots, starts, ends, every), bool(reader.errors), tuple(reader.errors),
                         {"name": self.cap.name, "version": self.cap.version}, options,
                         {**{k: round(v, 3) for k, v in self.timings.items()}, "total": round(seconds, 3)})


_END = object()


def _prefetch(items: Iterator[Any], size: int) -> Iterator[Any]:
    """Run ``items`` in a background thread (video decoding overlaps encoding: OpenCV and
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
