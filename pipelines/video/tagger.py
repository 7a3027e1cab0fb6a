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
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from captioning.api import Encoded

from ..flags import with_changes
from ..headstart import HeadStart
from .assemble import Stream, Tagged, assemble
from .cuts import Boundary
from .io import VideoError
from .options import CUT_OPTIONS, TagOptions, recorded_options  # noqa: F401 (re-exported)
from .results import VideoTags
from .scan import Picked, Scanned, VideoTooLong, decoder_threads, scan_ahead, scan_video  # noqa: F401 (re-exported)
from .shots import OpenShot, RawShot


def tag_video(path: str | os.PathLike, captioner: Any, options: TagOptions = TagOptions(), *,
              progress: Callable[[int, float], None] | None = None, max_seconds: float | None = None,
              head: HeadStart | None = None, **changes: Any) -> VideoTags:
    """Tag one video with a :class:`captioning.Captioner` (see :mod:`pipelines.video`).

    ``changes`` replace options by name, Decoding's and CutOptions' among them:
    ``tag_video(path, captioner, fps=2.0, beam_size=5, min_shot_frames=4)`` (``shot_threshold``,
    the old name of ``scene_threshold``, is still taken). ``progress(frames, seconds)`` is called
    after each batch with the number of frames just tagged and the video time they advanced.
    ``max_seconds`` caps the work on one video (None: no cap): decoding stops with
    :class:`VideoTooLong` at the first frame past it, whatever duration the container announces
    (it may announce none, or a wrong one). Raises :class:`VideoError` when the file cannot be
    read at all; a video that breaks off part-way gives results with ``partial=True``;
    ValueError for invalid options. ``head``: this video's :func:`~pipelines.video.scan.scan_video`
    with these options, already running in a head start (:func:`~pipelines.video.scan.scan_ahead`).
    """
    if "shot_threshold" in changes:
        changes["scene_threshold"] = changes.pop("shot_threshold")
    cuts = {k: changes.pop(k) for k in CUT_OPTIONS if k in changes}
    if cuts:
        changes["cuts"] = dataclasses.replace(changes.get("cuts", options.cuts), **cuts)
    options = with_changes(options, changes) if changes else options
    items = iter(head) if head is not None else \
        _prefetch(scan_video(str(path), options, captioner.preprocessing, max_seconds), 2 * options.batch_size)
    return Tagger(captioner, options).run(items, progress)


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

    def run(self, items: Iterator[Picked | Boundary | Scanned], progress: Callable[[int, float], None] | None
            ) -> VideoTags:
        start = time.perf_counter()
        received, batch, done = 0, [], [0.0]  # done: video time tagged so far
        scanned: Scanned | None = None
        for item in items:
            if isinstance(item, Scanned):
                scanned = item
                self.timings["decode"] = item.seconds
                continue
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
        assert scanned is not None, "scan_video ends with its Scanned"
        if not self.times:
            raise VideoError(f"{scanned.path}: no frame could be decoded ({'; '.join(scanned.errors) or 'no frames'})")
        self._close(None)
        self._caption_pending()
        return self._result(scanned, time.perf_counter() - start)

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

    def _result(self, scanned: Scanned, seconds: float) -> VideoTags:
        tagged = Tagged(np.asarray(self.indices), np.asarray(self.times), np.asarray(self.sampled), self.frame_tags,
                        np.concatenate(self.vectors), np.concatenate(self.probs),
                        self.frame_captions if self.opt.caption_every_frame else None, np.asarray(self.blank, bool))
        options = recorded_options(self.opt, self.cap.decoding)
        timings = {**{k: round(v, 3) for k, v in self.timings.items()}, "total": round(seconds, 3)}
        return assemble(Stream(scanned.info, scanned.end_time, scanned.frames_read, scanned.errors), tagged,
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
        finally:
            if hasattr(items, "close"):  # a generator's clean-up (the video file closed) in this thread
                items.close()

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
