"""Video decoding: the one module that reads video files (OpenCV ``VideoCapture``).

:class:`VideoReader` opens a file and :meth:`VideoReader.sample` yields frames at a chosen
rate (``fps``) or every N frames, each with its true presentation time:

- Skipped frames are ``grab()``-ed (demuxed and decoded by FFmpeg, but never converted to
  an image); only sampled frames are ``retrieve()``-d, and handed out as RGB (OpenCV decodes
  to BGR; this module converts, so no caller sees BGR).
- Times come from ``CAP_PROP_POS_MSEC`` of the grabbed frame, so variable frame rate
  videos are sampled by time, not by frame count. When the container has no timestamps
  (the property is 0 or does not increase) the time falls back to the previous time + one
  frame period (``1 / fps``, or 1/25 s when the container reports fps 0).
- The container's frame count is only a hint (it is often missing or wrong): reading goes
  on until the stream ends, and a stream that ends clearly before the container's
  announced duration is reported as possibly truncated.
- Unreadable frames mid-stream are skipped and recorded in ``reader.errors``; after
  ``max_failures`` consecutive failed grabs reading stops (no hang on a broken file).

Strategy: at 1 fps from 30 fps, grabbing decodes all 30 frames of each second. OpenCV's
seek (``CAP_PROP_POS_FRAMES``) jumps to the key frame before ``target - 16`` and decodes
forward: about 16 + GOP/2 frames per sample. Seeking pays on short GOPs (a key frame
every 12 frames, as cv2.VideoWriter's MPEG-4 writes); with the 1-10 s GOPs of camera and
phone H.264 files it would decode more than grabbing, and it relies on the container's
frame numbers being times. So ``strategy="auto"`` demuxes (without decoding) the first
:data:`PROBE_PACKETS` packets to measure the GOP and check that timestamps are regular
(cheap: no frame is decoded), and seeks only when that saves decoding (:func:`seek_pays`);
a seek that lands on the wrong frame or time switches to grabbing for the rest of the
video. ``benchmarks/bench_video.py`` measures both on this machine.
"""
from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Protocol

import numpy as np

from ..files import VIDEO_EXTENSIONS, walk

FALLBACK_FPS = 25.0  # assumed frame rate when the container reports none and has no timestamps
MAX_FAILURES = 50  # consecutive failed grabs/retrieves after which reading stops
SEEK_BACKTRACK = 16  # frames before the target from which OpenCV's seek decodes forward
SEEK_MARGIN = 4  # frames of decoding a seek must save before "auto" prefers it (flush, re-sync cost)
PROBE_PACKETS = 600  # packets demuxed (not decoded) to measure the key frame interval
Strategy = Literal["auto", "grab", "seek"]


class VideoError(ValueError):
    """A file that cannot be read as a video; the message names the file."""


class Capture(Protocol):  # the part of cv2.VideoCapture used here (tests pass fakes)
    def isOpened(self) -> bool: ...
    def grab(self) -> bool: ...
    def retrieve(self) -> tuple[bool, Any]: ...
    def get(self, prop: int) -> float: ...
    def set(self, prop: int, value: float) -> bool: ...
    def release(self) -> None: ...


@dataclass(frozen=True)
class VideoInfo:
    path: str  # the file as given
    fps: float  # frame rate reported by the container (0.0 when unknown)
    frame_count: int  # frame count reported by the container (0 when unknown; may be wrong)
    width: int  # frame width in pixels
    height: int  # frame height in pixels

    @property
    def duration(self) -> float:
        """Container estimate frame_count / fps in seconds (0.0 when unknown)."""
        return self.frame_count / self.fps if self.fps > 0 and self.frame_count > 0 else 0.0


@dataclass(frozen=True)
class Frame:
    index: int  # 0-based position of the frame in the decoded stream
    time: float  # presentation time in seconds from the start of the video
    image: np.ndarray  # (H, W, 3) uint8 RGB


def _cv2():
    """OpenCV, imported on first use: importing pipelines must not load it."""
    import cv2

    return cv2


def _number(value: float) -> float:
    return float(value) if math.isfinite(value) else 0.0


class VideoReader:
    """Sequential frame sampler over one video file; use as a context manager.

    >>> with VideoReader("clip.mp4") as reader:
    ...     for frame in reader.sample(fps=1.0):
    ...         print(frame.index, frame.time)
    >>> reader.errors, reader.end_time       # problems met (partial results), end of the stream
    """

    def __init__(self, path: str | os.PathLike, *, capture: Capture | None = None,
                 max_failures: int = MAX_FAILURES):
        self.path = str(path)
        self.strategy = "grab"  # how frames are reached: "grab" or "seek" (set by sample)
        self._probe = seek_pays if capture is None else None  # fakes have no file to probe
        self.max_failures = max_failures
        self.errors: list[str] = []  # problems met while reading; non-empty means partial results
        self.frames_read = 0  # frames grabbed so far
        self.end_time = 0.0  # time just after the last frame seen (last time + one frame period)
        if capture is None:
            capture = self._open(Path(path))
        self._cap = capture
        cv2 = _cv2()
        count = _number(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.info = VideoInfo(self.path, max(_number(capture.get(cv2.CAP_PROP_FPS)), 0.0),
                              int(count) if 0 < count < 1e12 else 0,
                              int(_number(capture.get(cv2.CAP_PROP_FRAME_WIDTH))),
                              int(_number(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))))
        self._period = 1.0 / self.info.fps if self.info.fps > 0 else 1.0 / FALLBACK_FPS
        self._index = -1  # index of the frame last grabbed
        self._time = -math.inf  # its time
        self._anchor = (0, 0.0)  # (index, time) of the last frame with a usable timestamp

    def _open(self, path: Path) -> Capture:
        if not path.exists():
            raise VideoError(f"{path}: file not found")
        if path.is_dir():
            raise VideoError(f"{path}: is a directory, not a video")
        if not path.is_file():  # a FIFO would block the decoder, a device never end
            raise VideoError(f"{path}: not a regular file")
        if path.stat().st_size == 0:
            raise VideoError(f"{path}: empty file (0 bytes)")
        if not os.access(path, os.R_OK):
            raise VideoError(f"{path}: permission denied")
        cv2 = _cv2()
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            cap.release()
            raise VideoError(f"{path}: cannot open as a video (not a video, unsupported codec, "
                             "or damaged/truncated container)")
        return cap

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- low level -----------------------------------------------------------------
    def _grab(self) -> bool:
        """Grab the next decodable frame, skipping up to ``max_failures`` failures."""
        cv2 = _cv2()
        for failures in range(self.max_failures + 1):
            if self._cap.grab():
                if failures and self.frames_read:
                    self.errors.append(f"{failures} unreadable frame(s) skipped after {self._time:.3f} s")
                self._index += 1
                self.frames_read += 1
                stamp = _number(self._cap.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0
                # the true timestamp when the container has one that moves forward, else
                # the last true one + one frame period per frame since
                if stamp > self._time or (self._index == 0 and stamp >= 0.0):
                    self._time, self._anchor = stamp, (self._index, stamp)
                else:
                    self._time = self._anchor[1] + (self._index - self._anchor[0]) * self._period
                self.end_time = self._time + self._period
                return True
            if self.frames_read == 0:
                break  # nothing decodable at the start: no point retrying
        return False

    def _retrieve(self) -> np.ndarray | None:
        """The grabbed frame as (H, W, 3) uint8 RGB; None (and an error noted) when it does not decode."""
        ok, image = self._cap.retrieve()
        if not ok or image is None or getattr(image, "ndim", 0) != 3 or image.size == 0:
            self.errors.append(f"frame {self._index} at {self._time:.3f} s could not be decoded")
            return None
        cv2 = _cv2()
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def _finish(self) -> None:
        if self.frames_read == 0:
            raise VideoError(f"{self.path}: no frames could be decoded (empty or unreadable video stream)")
        expected = self.info.duration
        if expected and self.end_time < expected - max(1.0, 0.05 * expected):
            self.errors.append(f"stream ended at {self.end_time:.3f} s but the container announces "
                               f"{expected:.3f} s ({self.info.frame_count} frames): file truncated?")

    # -- sampling --------------------------------------------------------------------
    def sample(self, *, fps: float | None = None, every_n: int | None = None,
               strategy: Strategy = "auto") -> Iterator[Frame]:
        """Frames at ``fps`` samples per second (the first frame at or after each multiple of
        1/fps) or, when ``every_n`` is given, frames 0, N, 2N...; always starts with the first frame.

        Raises :class:`VideoError` when not a single frame can be decoded.
        """
        if every_n is not None and every_n < 1:
            raise ValueError("every_n must be >= 1")
        if every_n is None and (fps is None or fps <= 0):
            raise ValueError("fps must be > 0 (or give every_n)")
        self.strategy = "grab"
        if self.info.fps > 0 and self.info.frame_count > 0 and strategy != "grab":
            step = every_n if every_n is not None else self.info.fps / fps
            if strategy == "seek" or (self._probe is not None and self._probe(self.path, self.info, step)):
                self.strategy = "seek"
        if self.strategy == "seek":
            yield from self._sample_seek(fps=fps, every_n=every_n)
        else:
            yield from self._sample_grab(fps=fps, every_n=every_n)

    def _wanted(self, fps: float | None, every_n: int | None, next_time: float) -> bool:
        if every_n is not None:
            return self._index % every_n == 0
        return self._time >= next_time - 0.25 * self._period

    def _sample_grab(self, *, fps: float | None, every_n: int | None, next_time: float = 0.0,
                     grabbed: bool = False) -> Iterator[Frame]:
        failed = 0  # sampled frames in a row that grabbed but did not decode
        while failed <= self.max_failures and (grabbed or self._grab()):
            grabbed = False
            if not self._wanted(fps, every_n, next_time):
                continue
            image = self._retrieve()
            if image is None:  # take the next frame for this sample instead
                failed += 1
                continue
            failed = 0
            if every_n is None:  # the next multiple of 1/fps after this frame
                next_time = (math.floor((self._time + 0.25 * self._period) * fps) + 1) / fps
            yield Frame(self._index, self._time, image)
        if failed > self.max_failures:
            self.errors.append(f"stopped after {failed} undecodable frames in a row at {self._time:.3f} s")
        self._finish()

    def _sample_seek(self, *, fps: float | None, every_n: int | None) -> Iterator[Frame]:
        """Seek to each sample by frame number; if the container's frame numbers and times
        disagree (variable frame rate), go on by grabbing from where it is."""
        cv2 = _cv2()
        for k in itertools.count():
            target = k * every_n if every_n is not None else math.ceil(k / fps * self.info.fps - 0.25)
            if target >= self.info.frame_count:  # the container's end: trust its duration
                self.end_time = max(self.end_time, self.info.duration)
                break
            if target > self._index + 1:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, target)
            if not self._grab():
                break  # _finish reports it when this is well before the announced end
            position = int(_number(self._cap.get(cv2.CAP_PROP_POS_FRAMES)))
            if position > 0:  # the frame number really reached
                self._index = position - 1
                self._anchor = (self._index, self._time)
            if self._index != target or abs(self._time - target * self._period) > 0.5 * self._period:
                self.strategy = "grab"  # continue by grabbing, starting with the frame in hand
                yield from self._sample_grab(fps=fps, every_n=every_n, next_time=k / fps if fps else 0.0,
                                             grabbed=True)
                return
            image = self._retrieve()
            if image is not None:
                yield Frame(self._index, self._time, image)
        self._finish()


def seek_pays(path: str, info: VideoInfo, step: float) -> bool:
    """Whether seeking to every ``step``-th frame costs less decoding than grabbing them all.

    OpenCV seeks to the key frame before ``target - 16`` and decodes forward, i.e. about
    16 + GOP/2 frames per sample against ``step`` frames when grabbing. The GOP (key frame
    interval) is read from the first packets without decoding (raw demuxing), which also
    checks that the timestamps are regular (constant frame rate: frame numbers are times).
    """
    if step < SEEK_BACKTRACK:
        return False
    cv2 = _cv2()
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_FORMAT, -1])
    try:
        if not cap.isOpened():
            return False
        keys, n, period = [], 0, 1000.0 / info.fps
        while n < PROBE_PACKETS and cap.grab():
            if cap.get(cv2.CAP_PROP_LRF_HAS_KEY_FRAME):
                keys.append(n)
            if abs(_number(cap.get(cv2.CAP_PROP_POS_MSEC)) - n * period) > 0.5 * period:
                return False  # irregular or reordered timestamps: frame numbers are not times
            n += 1
    finally:
        cap.release()
    gop = float(np.median(np.diff(keys))) if len(keys) >= 2 else float(max(n, PROBE_PACKETS))
    return step >= SEEK_BACKTRACK + gop / 2 + SEEK_MARGIN


def read_frames(path: str | os.PathLike, indices: list[int]) -> dict[int, np.ndarray]:
    """RGB images of the frames at ``indices`` (one sequential pass; for keyframe thumbnails).
    Frames that cannot be read are missing from the result."""
    wanted = set(indices)
    found: dict[int, np.ndarray] = {}
    with VideoReader(path) as reader:
        while wanted - found.keys() and reader._index < max(wanted) and reader._grab():
            if reader._index in wanted:
                image = reader._retrieve()
                if image is not None:
                    found[reader._index] = image
    return found


def find_videos(inputs: list[str | os.PathLike]) -> list[Path]:
    """Video files among ``inputs``: files as given (any extension), folders scanned
    recursively for :data:`VIDEO_EXTENSIONS` (case-insensitive), sorted; deep trees and
    symlink loops are safe (:func:`pipelines.files.walk`)."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for root, names in walk(str(path), skip_hidden=False) for p in (Path(root, n) for n in names)
                            if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
        else:
            found.append(path)
    return found
