"""Writers for video tagging results: JSON, per-frame CSV, SRT and WebVTT subtitles, keyframe JPEGs.

For a video written under stem ``S`` in ``--out DIR``:

- ``S.json``: :meth:`VideoTags.to_json` (schema in :mod:`pipelines.video.results`);
- ``S.csv``: one row per sampled frame: ``frame,time,shot,caption,tags``, the tags as JSON
  ``[{"label": ..., "probability": ...}]`` like caption-images' CSV (:func:`pipelines.files.csv_cell`);
- ``S.srt`` / ``S.vtt``: one cue per shot from its start to its end with the shot caption
  (and, with ``cue_tags``, a second line ``tags: a, b, c``), e.g. for a player's subtitle track;
- ``S_keyframes/shot_000.jpg``...: the keyframe of each shot at full resolution.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from ..files import csv_cell
from .io import read_frames
from .results import Shot, VideoTags

FORMATS = ("json", "csv", "srt", "vtt")
CUE_TAGS = 3  # ImageNet labels shown per cue with cue_tags


@dataclass(frozen=True)
class OutputOptions:
    out_dir: str | None = None  # folder for the files (None: write nothing)
    formats: tuple[str, ...] = ("json",)  # any of FORMATS
    thumbnails: bool = False  # also write keyframe JPEGs
    cue_tags: bool = False  # add a "tags: ..." line to each subtitle cue


def timestamp(seconds: float, *, sep: str = ",") -> str:
    """``HH:MM:SS,mmm`` (SRT; ``sep="."`` gives WebVTT's ``HH:MM:SS.mmm``)."""
    ms = max(int(round(seconds * 1000)), 0)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _cue_lines(shot: Shot, *, cue_tags: bool) -> list[str]:
    lines = [" ".join(shot.caption.replace("-->", "->").split()) or "(no caption)"]  # "-->" would end the timing
    labels = [t.label for t in shot.tags if t.source == "imagenet"][:CUE_TAGS]
    if cue_tags and labels:
        lines.append("tags: " + ", ".join(labels))
    return lines


def _cues(tags: VideoTags) -> list[tuple[int, int, Shot]]:
    """(start ms, end ms, shot) with positive length, in order and non-overlapping."""
    cues, previous_end = [], 0
    for shot in tags.shots:
        start = max(int(round(shot.start * 1000)), previous_end)
        end = int(round(shot.end * 1000))
        if end > start:
            cues.append((start, end, shot))
            previous_end = end
    return cues


def to_srt(tags: VideoTags, *, cue_tags: bool = False) -> str:
    blocks = []
    for n, (start, end, shot) in enumerate(_cues(tags), 1):
        text = "\n".join(_cue_lines(shot, cue_tags=cue_tags))
        blocks.append(f"{n}\n{timestamp(start / 1000)} --> {timestamp(end / 1000)}\n{text}\n")
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(tags: VideoTags, *, cue_tags: bool = False) -> str:
    blocks = ["WEBVTT\n"]
    for n, (start, end, shot) in enumerate(_cues(tags), 1):
        text = "\n".join(_vtt_escape(line) for line in _cue_lines(shot, cue_tags=cue_tags))
        blocks.append(f"shot-{n}\n{timestamp(start / 1000, sep='.')} --> {timestamp(end / 1000, sep='.')}\n{text}\n")
    return "\n".join(blocks)


def write_csv(tags: VideoTags, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["frame", "time", "shot", "caption", "tags"])
        for fr in tags.frames:
            frame_tags = [{"label": t.label, "probability": round(t.probability, 4)} for t in fr.tags]
            writer.writerow([fr.index, f"{fr.time:.3f}", fr.shot, csv_cell(fr.caption), csv_cell(frame_tags)])


def write_thumbnails(tags: VideoTags, directory: Path) -> list[Path]:
    """Keyframe JPEGs ``shot_NNN.jpg``, re-read from the video (one sequential pass)."""
    import cv2  # on first use: importing pipelines must not load OpenCV

    directory.mkdir(parents=True, exist_ok=True)
    images = read_frames(tags.video.path, [s.keyframe_index for s in tags.shots])
    written = []
    for shot in tags.shots:
        if shot.keyframe_index in images:
            path = directory / f"shot_{shot.index:03d}.jpg"
            bgr = cv2.cvtColor(images[shot.keyframe_index], cv2.COLOR_RGB2BGR)  # the channel order imwrite takes
            if not cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, 90]):
                raise OSError(f"{path}: could not write the keyframe image")
            written.append(path)
    return written


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_outputs(tags: VideoTags, out_dir: str | os.PathLike, stem: str, *, formats: tuple[str, ...] = ("json",),
                  thumbnails: bool = False, cue_tags: bool = False) -> list[Path]:
    """Write the chosen ``formats`` (json, csv, srt, vtt) and optional thumbnails; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = out / f"{stem}.{fmt}"
        if fmt == "json":
            _write_text(path, tags.to_json() + "\n")
        elif fmt == "csv":
            write_csv(tags, path)
        elif fmt == "srt":
            _write_text(path, to_srt(tags, cue_tags=cue_tags))
        elif fmt == "vtt":
            _write_text(path, to_vtt(tags, cue_tags=cue_tags))
        else:
            raise ValueError(f"unknown format {fmt!r} ({', '.join(FORMATS)})")
        written.append(path)
    if thumbnails:
        written += write_thumbnails(tags, out / f"{stem}_keyframes")
    return written
