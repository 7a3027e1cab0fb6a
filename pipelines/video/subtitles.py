"""Timed text for players: SRT and WebVTT cues (one per shot) and WebVTT chapters (one per scene).

- ``S.srt`` / ``S.vtt``: one cue per shot from its start to its end with the shot's caption
  (and, with ``cue_tags``, a second line ``tags: a, b, c``), for a player's subtitle track;
- ``S.chapters.vtt``: one cue per scene, its keyframe caption as the chapter title, for
  ``<track kind="chapters">`` and players' chapter menus.

Times are the shots' true start and end (presentation timestamps on the player's clock,
:mod:`pipelines.video.io`), to the millisecond; cues never overlap and zero-length ones are left out,
as are blank shots (black, grey: no caption), so a player shows nothing over them.
"""
from __future__ import annotations

from typing import Iterable

from .results import Shot, VideoTags

CUE_TAGS = 3  # ImageNet labels shown per cue with cue_tags


def timestamp(seconds: float, *, sep: str = ",") -> str:
    """``HH:MM:SS,mmm`` (SRT; ``sep="."`` gives WebVTT's ``HH:MM:SS.mmm``)."""
    ms = max(int(round(seconds * 1000)), 0)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def cue_text(text: str) -> str:
    """One line, no "-->" (it would end the timing)."""
    return " ".join(text.replace("-->", "->").split())


def _cue_lines(shot: Shot, *, cue_tags: bool) -> list[str]:
    lines = [cue_text(shot.caption or "") or "(no caption)"]
    labels = [t.label for t in shot.tags if t.source == "imagenet"][:CUE_TAGS]
    if cue_tags and labels:
        lines.append("tags: " + ", ".join(labels))
    return lines


def _timed(spans: Iterable[tuple[float, float, object]]) -> list[tuple[int, int, object]]:
    """(start ms, end ms, item) with positive length, in order and non-overlapping."""
    cues, previous_end = [], 0
    for start_s, end_s, item in spans:
        start = max(int(round(start_s * 1000)), previous_end)
        end = int(round(end_s * 1000))
        if end > start:
            cues.append((start, end, item))
            previous_end = end
    return cues


def _captioned(tags: VideoTags) -> Iterable[tuple[float, float, Shot]]:
    """(start, end, shot) of the shots that are not blank."""
    return ((s.start, s.end, s) for s in tags.shots if not s.blank)


def to_srt(tags: VideoTags, *, cue_tags: bool = False) -> str:
    blocks = []
    for n, (start, end, shot) in enumerate(_timed(_captioned(tags)), 1):
        text = "\n".join(_cue_lines(shot, cue_tags=cue_tags))
        blocks.append(f"{n}\n{timestamp(start / 1000)} --> {timestamp(end / 1000)}\n{text}\n")
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _vtt(cues: list[tuple[int, int, str, list[str]]]) -> str:
    blocks = ["WEBVTT\n"]
    for start, end, name, lines in cues:
        text = "\n".join(_vtt_escape(line) for line in lines)
        blocks.append(f"{name}\n{timestamp(start / 1000, sep='.')} --> {timestamp(end / 1000, sep='.')}\n{text}\n")
    return "\n".join(blocks)


def to_vtt(tags: VideoTags, *, cue_tags: bool = False) -> str:
    cues = _timed(_captioned(tags))
    return _vtt([(start, end, f"shot-{n}", _cue_lines(shot, cue_tags=cue_tags))
                 for n, (start, end, shot) in enumerate(cues, 1)])


def to_chapters(tags: VideoTags) -> str:
    """WebVTT chapters: one cue per scene, titled with its caption ("Scene N" when it has none, as
    when all its shots are blank: chapters cover the whole video)."""
    cues = _timed((s.start, s.end, s) for s in tags.scenes)
    return _vtt([(start, end, f"chapter-{scene.index + 1}",
                  [cue_text(scene.caption or "") or f"Scene {scene.index + 1}"])
                 for start, end, scene in cues])
