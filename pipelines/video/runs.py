"""What tag-video keeps of each video it wrote, so that running the same command again resumes.

Beside a video's files (see :mod:`.layout`), ``<stem>.run.json`` records the video (as given
and its real path), the bundle (name and version), the options in effect (as the JSON's
``options``: the decoding resolved against the bundle's, so a default and the same value given
explicitly agree), the output options that shape the files (formats, thumbnails; ``cue_tags``
with SRT or VTT; ``strip`` with HTML), whether the results were partial, and the files written.
It is written last, atomically, like every output (:mod:`.writing`), so a folder without it
was never finished. A later run finds each video's folder in one of these states:

- ``new``: no record (nothing written yet, or a run stopped before the end): the video is tagged;
- ``done``: the same video, bundle and options, every file recorded still there, results not
  partial: skipped without being opened;
- ``again``: the same, but a recorded file is gone or the results were partial: tagged again
  (as caption-images tries failed images again);
- ``other``: made by another video, bundle or options: refused, naming the difference, unless
  ``--overwrite``.

When a video is written again, the files of the earlier run that this one does not write (a
format dropped, keyframes of shots that are gone) are deleted if tag-video wrote them and
nobody changed them since; any other file is left where it is.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from captioning.config import Decoding

from ..flags import setting_differences
from .export import OutputOptions
from .layout import Target
from .options import TagOptions, recorded_options
from .writing import replaceable, write_file

RUN_SUFFIX = ".run.json"  # the record's name: <stem>.run.json
RUN_FORMAT = 1  # the record's format_version
SETTINGS = ("real_path", "model", "options", "outputs", "precision")  # what must agree for a run to resume


def run_settings(name: str, version: str, decoding: Decoding, options: TagOptions,
                 output: OutputOptions, precision: str = "fp32") -> dict[str, Any]:
    """The settings a run records for each video, with the bundle ``name`` ``version`` whose
    recorded decoding is ``decoding``, the model running in ``precision``, as read back from JSON
    (lists, not tuples)."""
    outputs: dict[str, Any] = {"formats": list(output.formats), "thumbnails": output.thumbnails}
    if {"srt", "vtt"} & set(output.formats):
        outputs["cue_tags"] = output.cue_tags
    if "html" in output.formats:
        outputs["strip"] = output.strip
    settings = {"model": {"name": name, "version": version}, "options": recorded_options(options, decoding),
                "outputs": outputs, "precision": precision}
    return json.loads(json.dumps(settings))


def run_file(target: Target) -> Path:
    return target.folder / f"{target.stem}{RUN_SUFFIX}"


def _read(target: Target) -> dict[str, Any] | None:
    """The record of the earlier run in ``target`` (None: none, or not one tag-video could have written)."""
    path = run_file(target)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format_version") == RUN_FORMAT else None


@dataclass(frozen=True)
class Previous:
    state: str  # "new", "done", "again" or "other" (see the module docstring)
    difference: str = ""  # "other": what differs, "options.fps 1.0 (this run: 2.0), ..."


def previous_run(target: Target, video: str, settings: dict[str, Any]) -> Previous:
    """What an earlier run left in ``target`` for ``video``, compared with this run's ``settings``."""
    record = _read(target)
    if record is None:
        return Previous("new")
    current = {"real_path": os.path.realpath(video), **settings}
    # a record without a precision was made before --precision existed, in FP32
    recorded = {k: record.get(k) for k in SETTINGS} | {"precision": record.get("precision", "fp32")}
    differences = setting_differences(recorded, current)
    if differences:
        return Previous("other", ", ".join(differences))
    files = record.get("files") or []
    complete = not record.get("partial") and all(os.path.lexists(target.folder / f) for f in files)
    return Previous("done" if complete else "again")


def record_run(target: Target, video: str, settings: dict[str, Any], partial: bool, written: list[Path]) -> Path:
    """Write the record of a finished video (after its files), first deleting the files of an
    earlier run that this one did not write, where tag-video wrote them and they are unchanged."""
    files = sorted(p.relative_to(target.folder).as_posix() for p in written)
    earlier = _read(target)
    for name in sorted(set(earlier.get("files") or []) - set(files)) if earlier else ():
        path = target.folder / name
        if PurePath(name).is_absolute() or ".." in PurePath(name).parts or not path.is_file() or not replaceable(path):
            continue  # only a file of the folder that tag-video wrote and nobody changed
        path.unlink()
        if path.parent != target.folder and not any(path.parent.iterdir()):
            path.parent.rmdir()  # a keyframes folder left empty
    record = {"format_version": RUN_FORMAT, "path": str(video), "real_path": os.path.realpath(video), **settings,
              "partial": partial, "files": files}
    return write_file(run_file(target), json.dumps(record, indent=1, ensure_ascii=False) + "\n")
