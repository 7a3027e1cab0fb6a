"""The HTML report (``S.html``): one self-contained page, no network (no CDN, no script).

A header with the video's facts and top tags, then scene by scene each shot as a row: its
number, timecodes and frame numbers, how it begins (cut, fade, dissolve), its caption and
tags, and a keyframe strip: the shot's first frame, then up to ``strip - 1`` of its tagged
frames evenly spaced, the keyframe (outlined) among them. Thumbnails are JPEGs embedded as
``data:`` URLs, :data:`THUMB_HEIGHT` pixels high at the display aspect ratio.
"""
from __future__ import annotations

import base64
import html
import io
from typing import Iterable

import numpy as np
from PIL import Image

from .results import BLANK, FrameTags, Shot, VideoTags

THUMB_HEIGHT = 90  # pixels
THUMB_QUALITY = 80  # JPEG quality of the embedded thumbnails
TOP_TAGS = 5  # labels shown per shot
STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px} .facts{color:#555;margin-bottom:16px}
h2{font-size:16px;margin:28px 0 8px;padding-top:8px;border-top:2px solid #ccc}
.shot{display:flex;gap:16px;align-items:flex-start;background:#fff;border:1px solid #ddd;border-radius:6px;
 padding:10px;margin:8px 0} .meta{flex:0 0 260px} .meta b{font-size:15px} .time{font-family:monospace;color:#444}
.caption{font-style:italic;margin:4px 0} .tags{color:#555;font-size:13px}
.strip{display:flex;gap:4px;flex-wrap:wrap} figure{margin:0;text-align:center;font:11px monospace;color:#666}
img{display:block;border:2px solid transparent;border-radius:3px} img.key{border-color:#d33}
"""


def strip_frames(shot: Shot, frames: list[FrameTags], strip: int) -> list[tuple[int, float]]:
    """(index, time) of a shot's strip: its first frame, then up to ``strip - 1`` tagged frames
    evenly spaced with the keyframe among them."""
    own = [(f.index, f.time) for f in frames if f.shot == shot.index and f.index != shot.start_frame]
    picks = [own[i] for i in np.linspace(0, len(own) - 1, min(strip - 1, len(own))).round().astype(int)] if own else []
    key = (shot.keyframe_index, shot.keyframe_time)
    if key != (shot.start_frame, shot.start) and key not in picks and picks:
        picks[min(range(len(picks)), key=lambda i: abs(picks[i][0] - key[0]))] = key
    return sorted(set([(shot.start_frame, shot.start)] + picks))


def thumbnail(image: np.ndarray) -> bytes:
    """A JPEG THUMB_HEIGHT pixels high of an (H, W, 3) RGB image (already at the display aspect)."""
    h, w = image.shape[:2]
    small = Image.fromarray(image).resize((max(1, round(w * THUMB_HEIGHT / h)), THUMB_HEIGHT),
                                          Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=THUMB_QUALITY)
    return buffer.getvalue()


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _labels(shot: Shot) -> str:
    labels = [f"{t.label} {t.probability:.2f}" for t in shot.tags if t.source == "imagenet"][:TOP_TAGS]
    words = [t.label for t in shot.tags if t.source == "caption"]
    return _e(", ".join(labels)) + (f"<br>words: {_e(', '.join(words))}" if words else "")


def _caption(shot: Shot) -> str:
    if shot.blank:
        return BLANK
    return _e(shot.caption) or "(no caption)"


def _shot_html(shot: Shot, strip: Iterable[tuple[int, float]], thumbs: dict[int, bytes], timecode: dict[int, str]) -> str:
    figures = []
    for index, when in strip:
        if index not in thumbs:
            continue
        data = base64.b64encode(thumbs[index]).decode("ascii")
        cls = ' class="key"' if index == shot.keyframe_index else ""
        label = timecode.get(index, f"{when:.2f}s")
        figures.append(f'<figure><img{cls} src="data:image/jpeg;base64,{data}" alt="frame {index}" '
                       f'title="frame {index}, {when:.3f} s"><figcaption>{_e(label)}</figcaption></figure>')
    how = f" &middot; {_e(shot.transition)}" if shot.transition else ""
    return (f'<div class="shot" id="shot-{shot.index + 1}"><div class="meta"><b>Shot {shot.index + 1}</b>{how}<br>'
            f'<span class="time">{_e(shot.start_timecode)} &ndash; {_e(shot.end_timecode)}</span><br>'
            f'frames {shot.start_frame}&ndash;{shot.end_frame - 1} &middot; {shot.end - shot.start:.2f} s'
            f'<div class="caption">{_caption(shot)}</div><div class="tags">{_labels(shot)}</div>'
            f'</div><div class="strip">{"".join(figures)}</div></div>')


def to_html(tags: VideoTags, thumbs: dict[int, bytes], *, strip: int, title: str) -> str:
    """The report; ``thumbs``: frame index -> JPEG bytes of the strips' frames (see :func:`strip_frames`)."""
    v, frames = tags.video, list(tags.frames)
    timecode = {f.index: f.timecode for f in frames} | {s.start_frame: s.start_timecode for s in tags.shots}
    top = ", ".join(t.label for t in tags.summary.tags if t.source == "imagenet")
    stored = f" (stored {v.stored_width}&times;{v.stored_height})" if (v.width, v.height) != (
        v.stored_width, v.stored_height) else ""
    facts = (f"{_e(v.path)} &middot; {v.duration:.2f} s &middot; {v.width}&times;{v.height}{stored}"
             f" &middot; {v.fps:g} fps (timecodes at {_e(v.timecode_rate)}{', drop-frame' if v.drop_frame else ''})"
             f" &middot; {v.frames_decoded} frames &middot; {len(tags.shots)} shots in {len(tags.scenes)} scenes"
             f"<br>top tags: {_e(top)}" + (f"<br><b>partial:</b> {_e('; '.join(tags.errors))}" if tags.partial else ""))
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{_e(title)}</h1><div class=\"facts\">{facts}</div>"]
    for scene in tags.scenes:
        parts.append(f'<h2 id="scene-{scene.index + 1}">Scene {scene.index + 1} &middot; <span class="time">'
                     f'{_e(scene.start_timecode)} &ndash; {_e(scene.end_timecode)}</span>'
                     + (f' &middot; {_e(scene.caption)}' if scene.caption else "") + '</h2>')
        for shot in tags.shots[scene.first_shot:scene.first_shot + scene.shot_count]:
            parts.append(_shot_html(shot, strip_frames(shot, frames, strip), thumbs, timecode))
    parts.append(f"<p class=\"facts\">made by tag-video with {_e(tags.model.get('name', '?'))} "
                 f"{_e(tags.model.get('version', ''))}</p></body></html>\n")
    return "\n".join(parts)
