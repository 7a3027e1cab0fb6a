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

