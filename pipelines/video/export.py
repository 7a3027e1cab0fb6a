"""Writers for video tagging results: which files, from one :class:`OutputOptions`.

For a video written under stem ``S`` in a folder (``tag-video --out`` gives each video its own,
see :mod:`.layout`), in the ``formats`` chosen (any of :data:`FORMATS`):

- ``S.json``: :meth:`VideoTags.to_json` (schema in :mod:`pipelines.video.results`);
- ``S.csv``: one row per tagged frame: ``frame,time,timecode,shot,caption,tags``, the tags as
  JSON ``[{"label": ..., "probability": ...}]`` like caption-images' CSV (:func:`pipelines.files.csv_cell`);
- ``S.srt`` / ``S.vtt``: a cue per shot; ``S.chapters.vtt``: a chapter per scene (:mod:`.subtitles`);
- ``S.edl`` (CMX 3600) and ``S.otio`` (OpenTimelineIO): the cuts for an editor (:mod:`.editors`);
- ``S.html``: a self-contained report with a keyframe strip per shot (:mod:`.report`);
- with ``thumbnails``: ``S_keyframes/shot_000.jpg``...: each shot's keyframe at full display size.

Every file is written atomically and never over a file tag-video did not write (:mod:`.writing`):
all targets are checked before the first is written. Frames for thumbnails and the report are
read again from the video, in one pass that seeks between them (:func:`pipelines.video.io.read_frames`).
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..files import csv_cell
from .editors import to_edl, to_otio
from .io import read_frames
from .report import strip_frames, thumbnail, to_html
from .results import VideoTags
from .subtitles import timestamp, to_chapters, to_srt, to_vtt
from .writing import check_replaceable, clean_stale_temps, write_file

__all__ = ["FORMATS", "OutputOptions", "timestamp", "to_srt", "to_vtt", "write_outputs"]
FORMATS = ("json", "csv", "srt", "vtt", "chapters", "edl", "otio", "html")
SUFFIXES = {"json": ".json", "csv": ".csv", "srt": ".srt", "vtt": ".vtt", "chapters": ".chapters.vtt", "edl": ".edl",
            "otio": ".otio", "html": ".html"}
KEYFRAME_QUALITY = 90  # JPEG quality of the keyframe thumbnails


@dataclass(frozen=True)
class OutputOptions:
    """Which files ``tag-video`` writes (its output flags are made from these fields)."""
    out_dir: str | None = None  # folder for the output files: in it a folder per video, its path below the input
    # that found it without the extension (clips/a/x.mp4 in clips: OUT/a/x/x.json...) (None: none, a summary is printed)
    formats: tuple[str, ...] = ("json",)  # output formats, comma-separated or repeated:
    # json, csv, srt, vtt, chapters, edl, otio, html
    thumbnails: bool = False  # also write each shot's keyframe as a JPEG (STEM_keyframes/shot_NNN.jpg)
    cue_tags: bool = False  # add a "tags: ..." line to each SRT/VTT cue
    strip: int = 5  # thumbnails per shot in the HTML report (its first frame, then tagged frames)

    def __post_init__(self) -> None:
        formats = tuple(f.strip().lower() for item in self.formats for f in item.split(",") if f.strip())
        object.__setattr__(self, "formats", tuple(dict.fromkeys(formats)))  # "json,srt" as given on the command line
        unknown = [f for f in self.formats if f not in FORMATS]
        problems = [why for bad, why in (
            (bool(unknown), f"formats: unknown {', '.join(map(repr, unknown))} (choose from {', '.join(FORMATS)})"),
            (not self.formats, f"formats: none given (choose from {', '.join(FORMATS)})"),
            (self.strip < 1, "strip must be >= 1"),
        ) if bad]
        if problems:
            raise ValueError("; ".join(problems))


def to_csv(tags: VideoTags) -> str:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["frame", "time", "timecode", "shot", "caption", "tags"])
    for fr in tags.frames:
        frame_tags = [{"label": t.label, "probability": round(t.probability, 4)} for t in fr.tags]
        writer.writerow([fr.index, f"{fr.time:.3f}", fr.timecode, fr.shot, csv_cell(fr.caption), csv_cell(frame_tags)])
    return buffer.getvalue()


def _jpeg(image, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _text(tags: VideoTags, fmt: str, stem: str, cue_tags: bool) -> str:
    if fmt == "json":
        return tags.to_json() + "\n"
    if fmt == "csv":
        return to_csv(tags)
    if fmt in ("srt", "vtt"):
        return (to_srt if fmt == "srt" else to_vtt)(tags, cue_tags=cue_tags)
    if fmt == "chapters":
        return to_chapters(tags)
    return (to_edl if fmt == "edl" else to_otio)(tags, title=stem)


def write_outputs(tags: VideoTags, out_dir: str | os.PathLike, stem: str, *, formats: tuple[str, ...] = ("json",),
                  thumbnails: bool = False, cue_tags: bool = False, strip: int = 5) -> list[Path]:
    """Write the chosen ``formats`` and optional keyframe thumbnails; returns the paths written.
    Raises :class:`pipelines.video.writing.OutputError` (nothing written) when a target exists
    and is not tag-video's, ValueError for an unknown format."""
    formats = OutputOptions(str(out_dir), formats, thumbnails, cue_tags, strip).formats
    out = Path(out_dir)
    targets = {fmt: out / f"{stem}{SUFFIXES[fmt]}" for fmt in formats}
    keyframes = {s.keyframe_index: out / f"{stem}_keyframes" / f"shot_{s.index:03d}.jpg"
                 for s in tags.shots} if thumbnails else {}
    check_replaceable([*targets.values(), *keyframes.values()])
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(out)
    written = [write_file(path, _text(tags, fmt, stem, cue_tags)) for fmt, path in targets.items() if fmt != "html"]
    strips = {s.index: strip_frames(s, list(tags.frames), strip) for s in tags.shots} if "html" in formats else {}
    wanted = {(s.keyframe_index, s.keyframe_time) for s in tags.shots} if thumbnails else set()
    wanted |= {frame for frames in strips.values() for frame in frames}
    small: dict[int, bytes] = {}
    for index, image in read_frames(tags.video.path, wanted) if wanted else ():
        if index in keyframes:
            written.append(write_file(keyframes[index], _jpeg(image, KEYFRAME_QUALITY)))
        if strips:
            small[index] = thumbnail(image)
    if "html" in formats:
        written.append(write_file(targets["html"], to_html(tags, small, strip=strip, title=stem)))
    return sorted(written, key=lambda p: (p.parent != out, str(p)))
