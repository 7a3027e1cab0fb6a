"""Test videos made with cv2.VideoWriter from very different scikit-image photos, with
known cut times and a slow pan + zoom inside every shot (imported by the other video tests)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

SIZE = (320, 240)
# (scikit-image sample, seconds on screen): cuts at 4, 7 and 12 s, 16 s in all
SHOTS = (("chelsea", 4.0), ("coffee", 3.0), ("astronaut", 5.0), ("rocket", 4.0))
CUTS = (4.0, 7.0, 12.0)


def _photo(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2BGR)


def shot_frames(name: str, n: int, size: tuple[int, int] = SIZE):
    """n frames of one photo, panning left to right while zooming in by 15%."""
    img = _photo(name)
    h, w = img.shape[:2]
    for i in range(n):
        u = i / max(n - 1, 1)
        cw = int(min(w, h * size[0] / size[1]) * (0.95 - 0.15 * u))
        ch = int(cw * size[1] / size[0])
        x, y = int((w - cw) * u), (h - ch) // 2
        yield cv2.resize(img[y:y + ch, x:x + cw], size, interpolation=cv2.INTER_AREA)


def make_clip(path: Path, *, fps: float = 12.0, shots=SHOTS, fourcc: str = "MJPG", size=SIZE) -> Path:
    """Write ``shots`` to ``path`` ('MJPG' .avi or 'mp4v' .mp4, both available in opencv-python)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened(), f"cannot write {fourcc} to {path}"
    for name, seconds in shots:
        for frame in shot_frames(name, int(round(seconds * fps)), size):
            writer.write(frame)
    writer.release()
    return path


def truncate(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def red_clip(path, frames=10):
    """A clip of pure red frames (written BGR, as OpenCV takes them)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for _ in range(frames):
        writer.write(np.full((48, 64, 3), (0, 0, 255), np.uint8))
    writer.release()
    return path


@pytest.mark.parametrize("fourcc,suffix,fps", [("MJPG", ".avi", 12.0), ("mp4v", ".mp4", 25.0)])
def test_generated_clips_have_the_planned_frames(tmp_path, fourcc, suffix, fps):
    path = make_clip(tmp_path / f"clip{suffix}", fps=fps, fourcc=fourcc)
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(fps)
    n = 0
    while cap.grab():
        n += 1
    assert n == sum(round(s * fps) for _, s in SHOTS)



# -- clips written with PyAV: exact frame counts, timestamps, aspect and rotation metadata -------
def photo_rgb(name: str) -> np.ndarray:
    """A scikit-image sample as (H, W, 3) uint8 RGB."""
    return cv2.cvtColor(_photo(name), cv2.COLOR_BGR2RGB)


def crop(img: np.ndarray, x: float, y: float, scale: float, size=SIZE) -> np.ndarray:
    """The window of ``scale`` times the largest ``size``-shaped crop of ``img``, its top left corner
    at the fractions ``x``, ``y`` of the free room, resized to ``size`` (sub-pixel: no integer jumps)."""
    h, w = img.shape[:2]
    cw = min(w, h * size[0] / size[1]) * scale
    ch = cw * size[1] / size[0]
    x0, y0 = (w - cw) * x, (h - ch) * y
    m = np.array([[size[0] / cw, 0, -x0 * size[0] / cw], [0, size[1] / ch, -y0 * size[1] / ch]])
    return cv2.warpAffine(img, m, size, flags=cv2.INTER_AREA if cw > size[0] else cv2.INTER_LINEAR)


def still_shot(name: str, n: int, size=SIZE, drift: float = 0.1) -> list[np.ndarray]:
    """n frames of one photo, slowly panning by ``drift`` of the free room and zooming in by 5%."""
    img = photo_rgb(name)
    return [crop(img, 0.5 - drift / 2 + drift * i / max(n - 1, 1), 0.5, 0.9 - 0.05 * i / max(n - 1, 1), size)
            for i in range(n)]


def pan_shot(name: str, n: int, size=SIZE) -> list[np.ndarray]:
    """n frames of a fast pan across the whole photo (left to right and down), then back."""
    img = photo_rgb(name)
    u = np.abs(np.linspace(-1, 1, n))  # there and back
    return [crop(img, 1 - v, 1 - v, 0.6, size) for v in u]


def zoom_shot(name: str, n: int, size=SIZE) -> list[np.ndarray]:
    """n frames of a fast zoom into the photo (to a third of the picture) and out again."""
    img = photo_rgb(name)
    u = 1 - np.abs(np.linspace(-1, 1, n))
    return [crop(img, 0.4, 0.4, 1.0 - 0.66 * v, size) for v in u]


def blend(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    return np.clip(a.astype(np.float32) * (1 - t) + b.astype(np.float32) * t + 0.5, 0, 255).astype(np.uint8)


def fade(frames: list[np.ndarray], n: int, *, out: bool) -> list[np.ndarray]:
    """The last (out) or first (in) n of ``frames`` faded to or from black."""
    black = np.zeros_like(frames[0])
    k = len(frames) - n if out else 0
    ramp = [(i + 1) / (n + 1) for i in range(n)]
    faded = [blend(f, black, t if out else 1 - t) for f, t in zip(frames[k:k + n], ramp)]
    return frames[:k] + faded if out else faded + frames[n:]


def dissolve(a: list[np.ndarray], b: list[np.ndarray], n: int) -> list[np.ndarray]:
    """a then b, the last n frames of a cross-fading into the first n of b (n frames of mix)."""
    mixed = [blend(x, y, (i + 1) / (n + 1)) for i, (x, y) in enumerate(zip(a[-n:], b[:n]))]
    return a[:-n] + mixed + b[n:]


def flash(frames: list[np.ndarray], at: int, n: int) -> list[np.ndarray]:
    """frames with n of them, from ``at``, turned almost white (a photographer's flash)."""
    white = np.full_like(frames[0], 255)
    return frames[:at] + [blend(f, white, 0.85) for f in frames[at:at + n]] + frames[at + n:]


def write_av(path: Path, frames, *, fps: float = 25.0, times=None, start: float = 0.0, codec: str = "mpeg4",
             sar=None, rotation: int = 0, audio: bool = False, options=None) -> Path:
    """RGB ``frames`` encoded with PyAV: at ``fps``, or at ``times`` (seconds, variable frame rate),
    shifted by ``start`` seconds (the video then starts that late in the file); ``sar`` a Fraction
    sample aspect ratio, ``rotation`` display-matrix degrees, ``audio`` a silent track from 0 s."""
    import av
    from fractions import Fraction

    frames = list(frames)
    times = [i / fps for i in range(len(frames))] if times is None else list(times)
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
    stream.height, stream.width = frames[0].shape[:2]
    stream.pix_fmt = "yuv420p"
    stream.time_base = Fraction(1, 1000 if codec != "mpeg4" else 600)
    stream.codec_context.time_base = stream.time_base
    if options:
        stream.options = options
    if sar is not None:
        stream.codec_context.sample_aspect_ratio = sar
    if rotation:
        stream.set_display_rotation(rotation)
    sound = None
    if audio:
        sound = container.add_stream("aac", rate=48000)
        sound.layout = "mono"
    for image, t in zip(frames, times):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts, frame.time_base = round((t + start) / stream.time_base), stream.time_base
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    if sound is not None:
        end = start + times[-1] + 1 / fps
        for k in range(int(end * 48000 / 1024) + 1):
            chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 48000, k * 1024
            for packet in sound.encode(chunk):
                container.mux(packet)
        for packet in sound.encode():
            container.mux(packet)
    container.close()
    return path
