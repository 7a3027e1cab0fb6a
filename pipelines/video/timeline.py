"""A tagged video as one picture on a time axis, for the web UI's video tab (drawn with PIL).

From top to bottom: a time ruler; each shot's keyframe, centred over its shot and as wide as
the shot allows (none where a shot is too short for one); a band per shot, tinted by scene
(alternating), numbered from 1, with a dot where its keyframe is; each shot's top tags, as
many as fit. Every shot boundary is a vertical line of :data:`BOUNDARY` red through the
ruler, keyframes and bands, a colour nothing else is drawn in, so one can count them (tests
do). ``selected`` outlines one shot (the one picked in the UI's table).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .results import Shot, VideoTags

BOUNDARY = (220, 38, 38)  # shot boundary lines; used for nothing else
SCENES = ((219, 231, 247), (226, 240, 222))  # shot band tints, alternating from scene to scene
INK, FAINT, PAPER, SELECTED = (40, 40, 48), (130, 130, 140), (255, 255, 255), (30, 64, 175)


@dataclass(frozen=True)
class Layout:
    """Where things go, in pixels (the picture's height follows from them)."""
    width: int = 1200  # the picture's width
    margin: int = 14  # left and right of the time axis
    ruler: int = 24  # the time ruler's height (tick labels above the ticks)
    thumbs: int = 96  # the keyframe row's height
    band: int = 26  # the shot band's height
    tag_lines: int = 3  # tags shown under each shot (as many as fit its width)
    line: int = 16  # height of a line of text
    font: int = 12  # text size

    @property
    def band_top(self) -> int:
        return self.ruler + self.thumbs + 6

    @property
    def height(self) -> int:
        return self.band_top + self.band + 6 + self.tag_lines * self.line + 6


def timeline(tags: VideoTags, keyframes: Mapping[int, Any] | None = None, *, selected: int | None = None,
             layout: Layout = Layout()) -> Image.Image:
    """The picture of ``tags`` (see the module docstring). ``keyframes``: shot index -> its keyframe
    (a PIL image, an HxWx3 array or a path); shots without one get none."""
    image = Image.new("RGB", (layout.width, layout.height), PAPER)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=layout.font)
    end = max(tags.video.duration, tags.shots[-1].end if tags.shots else 0.0, 1e-3)
    left, right = layout.margin, layout.width - layout.margin
    x = lambda t: int(round(left + min(max(t, 0.0), end) / end * (right - left)))  # noqa: E731
    _ruler(draw, font, layout, x, end)
    top, bottom = layout.band_top, layout.band_top + layout.band
    for s in tags.shots:
        x0, x1 = x(s.start), max(x(s.end), x(s.start) + 1)
        draw.rectangle((x0, top, x1, bottom), fill=SCENES[s.scene % 2])
        label = str(s.index + 1)
        if draw.textlength(label, font=font) + 6 < x1 - x0:
            draw.text(((x0 + x1) / 2, top + 4), label, fill=INK, font=font, anchor="mt")
        k = x(s.keyframe_time)
        draw.ellipse((k - 3, bottom - 9, k + 3, bottom - 3), fill=INK)
        if keyframes is not None and s.index in keyframes:
            _thumbnail(image, keyframes[s.index], x0, x1, layout)
        _tags(draw, font, s, x0, x1, bottom + 6, layout)
    if selected is not None and 0 <= selected < len(tags.shots):
        s = tags.shots[selected]
        draw.rectangle((x(s.start) + 1, layout.ruler, max(x(s.end) - 2, x(s.start) + 2), bottom + 2), outline=SELECTED,
                       width=3)
    for s in tags.shots[1:]:  # over everything else: always visible
        draw.rectangle((x(s.start) - 1, layout.ruler - 6, x(s.start), bottom), fill=BOUNDARY)
    return image


def _ruler(draw: ImageDraw.ImageDraw, font: Any, layout: Layout, x: Any, end: float) -> None:
    """The axis line with a tick and a label every ``step`` seconds (about 10 labels)."""
    step = next((s for s in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600) if end / s <= 10), 7200)
    y = layout.ruler - 2
    draw.line((x(0), y, x(end), y), fill=FAINT)
    for i in range(int(end / step) + 1):
        t = i * step
        m, s = divmod(t, 60)
        label = f"{int(m)}:{s:02.0f}" if step >= 1 else clock(t)
        draw.line((x(t), y - 5, x(t), y), fill=FAINT)
        anchor = "lb" if i == 0 else "rb" if x(t) > layout.width - layout.margin - 16 else "mb"
        draw.text((x(t), y - 6), label, fill=FAINT, font=font, anchor=anchor)


def _thumbnail(image: Image.Image, keyframe: Any, x0: int, x1: int, layout: Layout) -> None:
    """The keyframe scaled into the shot's slot of the keyframe row, centred; none when under 16 px wide."""
    picture = keyframe if isinstance(keyframe, Image.Image) else (
        Image.fromarray(np.asarray(keyframe)) if not isinstance(keyframe, str) else Image.open(keyframe))
    picture = picture.convert("RGB")
    room_w, room_h = x1 - x0 - 4, layout.thumbs - 4
    scale = min(room_w / picture.width, room_h / picture.height)
    w, h = int(picture.width * scale), int(picture.height * scale)
    if w < 16 or h < 9:
        return
    small = picture.resize((w, h), Image.Resampling.BILINEAR)
    image.paste(small, ((x0 + x1 - w) // 2, layout.ruler + (layout.thumbs - h) // 2))


def _tags(draw: ImageDraw.ImageDraw, font: Any, shot: Shot, x0: int, x1: int, y: int, layout: Layout) -> None:
    """The shot's top tags, a line each, shortened with "…" to its width (none shorter than 4 letters and "…")."""
    room = x1 - x0 - 6
    for n, tag in enumerate(shot.tags[:layout.tag_lines]):
        text = tag.label
        while len(text) > 4 and draw.textlength(text, font=font) > room:
            text = text[:-2].rstrip() + "…"
        if draw.textlength(text, font=font) <= room:
            draw.text((x0 + 3, y + n * layout.line), text, fill=INK, font=font)


def clock(seconds: float) -> str:
    """``m:ss.s``, as the UI's tables write times."""
    m, s = divmod(seconds, 60)
    return f"{int(m):d}:{s:04.1f}"
