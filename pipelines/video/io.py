"""Video decoding: the one module that reads video files (PyAV, i.e. FFmpeg's demuxers and decoders).

:class:`VideoReader` opens a file; :meth:`VideoReader.frames` decodes every frame (FFmpeg's frame
and slice threads, on every core unless told ``threads``) and hands each out as a :class:`DecodedFrame`, cheap
until asked for pixels: :meth:`DecodedFrame.luma` is the luma plane subsampled to about
:data:`SMALL_WIDTH` pixels wide, read in place (what the cut detector needs, nearly free);
:meth:`DecodedFrame.rgb` converts to RGB as a player shows the picture: stretched to the
display aspect ratio (non-square pixels: a 704x576 frame with a 16:9 display aspect comes out
1024x576) and turned by the stream's rotation (its display matrix; PyAV does not rotate).
Only sampled frames and shot first frames are converted: the conversion costs several decodes.

Times are presentation timestamps (``frame.pts * time_base``) on the player's clock: **time 0
is the start of the file**, the earliest start of its video and audio streams (after edit lists,
as FFmpeg applies them), which is where a player's position bar starts. A video stream that
starts later than the file (1.075 s after its audio, say) keeps that offset, so subtitles and
cues written from these times show at the right moment; a file whose timestamps all start
late (an MPEG-TS cut out of a broadcast) starts at 0. Variable frame rates and dropped frames
show as they are (frame numbers count decoded frames, times come from the timestamps); a frame
without a timestamp, or with one that does not move forward, gets the previous time + one
frame period (``1 / fps``, or 1/25 s when the container reports no rate).

Robustness: a file that cannot be opened, or without a decodable video stream, raises
:class:`VideoError` (one line naming the file); folders, FIFOs and devices are refused before
opening (no hang on a pipe). Packets that do not decode are skipped and recorded in
``reader.errors``; after ``max_failures`` in a row reading stops; a stream that ends clearly
before the container's announced duration is reported as possibly truncated.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np


FALLBACK_FPS = 25.0  # assumed frame rate when the container reports none and has no timestamps
MAX_FAILURES = 50  # consecutive undecodable packets after which reading stops
SMALL_WIDTH = 160  # the luma pictures handed to the cut detector are about this many pixels wide
SEEK_AHEAD = 2.0  # read_frames seeks (instead of decoding on) to a frame more than this many seconds ahead


class VideoError(ValueError):
    """A file that cannot be read as a video; the message names the file."""


def _av():
    """PyAV, imported on first use: importing pipelines must not load FFmpeg."""
    import av

    return av


@dataclass(frozen=True)
class VideoInfo:
    path: str  # the file as given
    fps: float  # average frame rate the container reports (0.0 when unknown)
    frame_count: int  # frame count the container reports (0 when unknown; may be wrong)
    width: int  # stored picture width in pixels
    height: int  # stored picture height in pixels
    duration: float = 0.0  # seconds the container announces for the video, its duration or its frame count (0.0: none)
    sample_aspect: Fraction = Fraction(1)  # width / height of a stored pixel (1: square; PAL 16:9 704x576: 16/11)
    rotation: int = 0  # degrees the picture is turned counter-clockwise for display: 0, 90, 180, 270 (read
    # from the first frame's display matrix: 0 until VideoReader.frames() decoded it)
    start: float = 0.0  # time of the first frame on the player's clock (see the module docstring)
    rate: Fraction = Fraction(25)  # nominal frame rate (the container's, else FALLBACK_FPS), for timecodes

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) of the picture as shown: :meth:`DecodedFrame.rgb`'s size."""
        w, h = _aspect_size(self.width, self.height, self.sample_aspect)
        return (h, w) if self.rotation in (90, 270) else (w, h)


@dataclass(frozen=True)
class Frame:
    index: int  # 0-based position of the frame in the decoded stream
    time: float  # presentation time in seconds on the player's clock
    image: np.ndarray  # (H, W, 3) uint8 RGB, as displayed (aspect ratio and rotation applied)


def _aspect_size(width: int, height: int, sar: Fraction) -> tuple[int, int]:
    """The stored size stretched (never shrunk) to square pixels."""
    if sar > 1:
        return int(round(width * sar)), height
    if 0 < sar < 1:
        return width, int(round(height / sar))
    return width, height


class DecodedFrame:
    """One decoded frame: its number and time, pixels on demand (valid while it is the current frame)."""

    __slots__ = ("index", "time", "_frame", "_reader")

    def __init__(self, index: int, time: float, frame: Any, reader: "VideoReader"):
        self.index = index  # 0-based position in the decoded stream
        self.time = time  # presentation time in seconds on the player's clock
        self._frame, self._reader = frame, reader

    def luma(self) -> np.ndarray:
        """(~H / s, ~W / s) uint8: the stored luma plane (no rotation, no aspect) every s-th pixel,
        s chosen so the picture is about SMALL_WIDTH wide; read in place for 8-bit YUV and gray."""
        f, s = self._frame, self._reader._step
        plane = f.planes[0]
        name, bits = f.format.name, f.format.components[0].bits
        if name.startswith(("yuv", "nv12", "nv21", "gray")) and bits <= 16:
            if bits <= 8:
                rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)  # (H, line bytes)
                return rows[::s, :plane.width:s]
            rows = np.frombuffer(plane, np.uint16).reshape(plane.height, plane.line_size // 2)  # (H, line samples)
            return (rows[::s, :plane.width:s] >> (bits - 8)).astype(np.uint8)
        small = f.reformat(width=max(f.width // s, 1), height=max(f.height // s, 1), format="gray")
        return small.to_ndarray()  # RGB, palette and other formats: converted (slow, rare)

    def rgb(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB as a player shows it: display aspect ratio and rotation applied.
        With ``size`` (width, height of the displayed picture) it is resized to that by FFmpeg's
        scaler (bilinear) in the same pass, several times cheaper than converting, then resizing."""
        f = self._frame
        turns = _quarter_turns(f.rotation)
        if size is None:
            width, height = _aspect_size(f.width, f.height, self._reader.info.sample_aspect)
        else:
            width, height = size[::-1] if turns % 2 else size
        image = f.to_ndarray(format="rgb24", width=width, height=height, interpolation="BILINEAR")
        return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def _quarter_turns(degrees: float | None) -> int:
    """Counter-clockwise quarter turns for a display-matrix rotation (rounded to a multiple of 90)."""
    return int(round((degrees or 0) / 90)) % 4


def _number(value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return 0.0
    return value if math.isfinite(value) and value > 0 else 0.0


def _check_file(path: Path) -> None:
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


class VideoReader:
    """Every frame of one video file, in presentation order; use as a context manager.

    >>> with VideoReader("clip.mp4") as reader:
    ...     for frame in reader.frames():          # DecodedFrame: index, time, luma(), rgb()
    ...         ...
    >>> reader.errors, reader.end_time             # problems met (partial results), end of the stream
    """

    def __init__(self, path: str | os.PathLike, *, max_failures: int = MAX_FAILURES, threads: int = 0):
        self.path = str(path)
        self.max_failures = max_failures
        self.errors: list[str] = []  # problems met while reading; non-empty means partial results
        self.frames_read = 0  # frames decoded so far
        self.end_time = 0.0  # time just after the last frame decoded (its time + its duration)
        _check_file(Path(path))
        av = _av()
        try:
            self._container = av.open(self.path, metadata_errors="ignore")
        except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
            raise VideoError(f"{self.path}: cannot open as a video (not a video, unsupported codec, "
                             f"or damaged/truncated container: {' '.join(str(e).split())})") from None
        try:
            self._stream = self._container.streams.video[0]
        except IndexError:
            self._container.close()
            raise VideoError(f"{self.path}: cannot open as a video (no video stream)") from None
        self._stream.thread_type = "AUTO"  # frame and slice threads
        self._stream.codec_context.thread_count = threads  # 0: FFmpeg's choice, every core
        self._origin = _origin(self._container)
        self._tick = float(self._stream.time_base or 0)  # seconds per timestamp unit (frames carry the stream's)
        self._time = -math.inf  # time of the frame last decoded
        self._anchor = (0, 0.0)  # (index, time) of the last frame with a usable timestamp
        self._corrupt = 0  # frames the decoder flagged as damaged (concealed errors)
        self.info = self._info()  # its rotation is known once the first frame is decoded (frames())
        self._period = 1.0 / float(self.info.rate)
        self._step = max(1, int(round(self.info.width / SMALL_WIDTH)))

    def _info(self) -> VideoInfo:
        s, c = self._stream, self._container
        fps = _number(s.average_rate) or _number(s.guessed_rate)
        rate = Fraction(s.average_rate or s.guessed_rate) if fps else Fraction(FALLBACK_FPS)
        count = int(s.frames) if 0 < (s.frames or 0) < 1e12 else 0
        stated = _number(s.duration * s.time_base) if s.duration and s.time_base else _number((c.duration or 0) / 1e6)
        duration = max(stated, count / fps if fps else 0.0)  # the longest the container announces (its index may be cut)
        sar = s.sample_aspect_ratio or s.codec_context.sample_aspect_ratio
        sar = Fraction(sar) if sar and sar > 0 else Fraction(1)
        start = _number(s.start_time * s.time_base - self._origin) if s.start_time is not None and s.time_base else 0.0
        return VideoInfo(self.path, fps, count, s.codec_context.width, s.codec_context.height, duration, sar,
                         0, start, rate)

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- decoding --------------------------------------------------------------------
    def _decode(self, packet: Any) -> list[Any]:
        """The frames one packet decodes to (the one place packets are decoded; tests count them)."""
        return packet.decode()

    def _packets(self) -> Iterator[Any]:
        """Decoded av frames; undecodable packets skipped (and reported), at most max_failures in a row."""
        av = _av()
        failures = 0
        demuxed = self._container.demux(self._stream)
        while True:
            try:
                packet = next(demuxed)
            except StopIteration:
                return
            except av.FFmpegError as e:  # the container itself is damaged from here on
                self.errors.append(f"reading stopped after {max(self._time, 0.0):.3f} s: {' '.join(str(e).split())}")
                return
            try:
                frames = self._decode(packet)
            except av.FFmpegError:
                failures += 1
                if failures > self.max_failures:
                    self.errors.append(f"stopped after {failures} undecodable packets in a row at "
                                       f"{max(self._time, 0.0):.3f} s")
                    return
                continue
            if failures and frames and self.frames_read:
                self.errors.append(f"{failures} undecodable packet(s) skipped after {self._time:.3f} s")
            failures = 0 if frames else failures
            yield from frames

    def frames(self) -> Iterator[DecodedFrame]:
        """Every decodable frame, in presentation order. Raises :class:`VideoError` when not a
        single frame can be decoded."""
        for frame in self._packets():
            index = self.frames_read
            if index == 0:  # the display matrix travels in the frames' side data
                self.info = dataclasses.replace(self.info, rotation=_quarter_turns(frame.rotation) * 90)
            self.frames_read += 1
            self._corrupt += bool(frame.is_corrupt)
            self._time = self._frame_time(frame, index)
            duration = frame.duration * self._tick if frame.duration else 0.0
            self.end_time = self._time + (duration if duration > 0 else self._period)
            yield DecodedFrame(index, self._time, frame, self)
        self._finish()

    def _frame_time(self, frame: Any, index: int) -> float:
        """The frame's true timestamp when it has one that moves forward, else the last true
        one + one frame period per frame since."""
        if frame.pts is not None and self._tick:
            stamp = frame.pts * self._tick - self._origin
            if stamp > self._time:
                self._anchor = (index, stamp)
                return stamp
        return self._anchor[1] + (index - self._anchor[0]) * self._period

    def _finish(self) -> None:
        if self.frames_read == 0:
            raise VideoError(f"{self.path}: no frames could be decoded (empty or unreadable video stream)")
        if self._corrupt:
            self.errors.append(f"{self._corrupt} frame(s) decoded with errors (damaged data, concealed)")
        expected = self.info.start + self.info.duration if self.info.duration else 0.0
        if expected and self.end_time < expected - max(1.0, 0.05 * self.info.duration):
            self.errors.append(f"stream ended at {self.end_time:.3f} s but the container announces "
                               f"{expected:.3f} s: file truncated?")

    def sample(self, *, fps: float | None = None, every_n: int | None = None) -> Iterator[Frame]:
        """RGB frames at ``fps`` samples per second or every ``every_n`` frames (see :class:`Sampler`)."""
        wants = Sampler(fps=fps, every_n=every_n, period=self._period).wants
        for frame in self.frames():
            if wants(frame.index, frame.time):
                yield Frame(frame.index, frame.time, frame.rgb())


class Sampler:
    """Which decoded frames are sampled: with ``fps``, the first frame at or after each multiple
    of 1/fps on the player's clock (a quarter frame period of slack for rounded timestamps); with
    ``every_n``, frames 0, N, 2N...; the first frame always."""

    def __init__(self, *, fps: float | None = None, every_n: int | None = None, period: float = 1 / FALLBACK_FPS):
        if every_n is not None and every_n < 1:
            raise ValueError("every_n must be >= 1")
        if every_n is None and (fps is None or not fps > 0):
            raise ValueError("fps must be > 0 (or give every_n)")
        self.fps, self.every_n, self.slack = fps, every_n, 0.25 * period
        self._next = -math.inf  # time from which the next sample is taken

    def wants(self, index: int, time: float) -> bool:
        if self.every_n is not None:
            return index % self.every_n == 0
        if time < self._next - self.slack:
            return False
        self._next = (math.floor((time + self.slack) * self.fps) + 1) / self.fps
        return True


def _origin(container: Any) -> float:
    """Seconds of the file's time 0: the earliest start of its video and audio streams (else the
    container's start, else 0)."""
    starts = [float(s.start_time * s.time_base) for s in container.streams
              if s.type in ("video", "audio") and s.start_time is not None and s.time_base]
    if starts:
        return min(starts)
    return container.start_time / 1e6 if container.start_time is not None else 0.0


def read_frames(path: str | os.PathLike, frames: Iterable[tuple[int, float]]) -> Iterator[tuple[int, np.ndarray]]:
    """(index, RGB image as :meth:`DecodedFrame.rgb`) of the frames given as (index, time), in time
    order, for keyframes and thumbnails. A frame more than SEEK_AHEAD s ahead is reached by seeking
    to the key frame before it and found by its time (within half a frame period); files without
    timestamps are decoded from the start and their frames counted. Frames that cannot be read
    are left out."""
    wanted = sorted(set(frames), key=lambda f: f[1])
    if not wanted:
        return
    with VideoReader(path) as reader:
        if reader.info.fps and reader._tick and _seekable(reader):
            yield from _read_by_time(reader, wanted)
            return
        by_index = dict(wanted)
        for frame in reader.frames():
            if frame.index in by_index:
                yield frame.index, frame.rgb()
            if frame.index >= max(by_index):
                return


def _seekable(reader: VideoReader) -> bool:
    try:
        reader._container.seek(0, stream=reader._stream)
        return True
    except _av().FFmpegError:
        return False


def _read_by_time(reader: VideoReader, wanted: list[tuple[int, float]]) -> Iterator[tuple[int, np.ndarray]]:
    """Seek-and-decode reading of frames known by time (see read_frames)."""
    av, stream = _av(), reader._stream
    tolerance = 0.5 * reader._period
    decoded: Iterator[Any] = iter(())
    current = -math.inf  # time of the frame last decoded since the last seek
    for index, when in wanted:
        if when > current + SEEK_AHEAD or when < current - tolerance:
            target = max(int(math.floor((when + reader._origin - tolerance) / reader._tick)), stream.start_time or 0)
            try:
                reader._container.seek(target, stream=stream, backward=True)
            except av.FFmpegError:
                continue
            reader._time, reader._anchor, reader.frames_read = -math.inf, (0, 0.0), 0
            decoded, current = reader._packets(), -math.inf
        for frame in decoded:
            current = reader._frame_time(frame, reader.frames_read)
            reader.frames_read += 1
            if current >= when - tolerance:
                if current <= when + tolerance:
                    yield index, DecodedFrame(index, current, frame, reader).rgb()
                break
