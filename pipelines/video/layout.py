"""Where ``tag-video --out DIR`` writes each video's files: one folder per video.

A video's folder mirrors its path below the input that found it (see
:attr:`pipelines.inputs.Discovery.relative`), without the extension: ``tag-video clips -r --out
tags`` writes the files of ``clips/a/x.mp4`` in ``tags/a/x/`` and those of ``clips/b/x.mp4`` in
``tags/b/x/``; a video named on its own (``tag-video clips/a/x.mp4``) gets ``tags/x/``; a glob
pattern's matches mirror their path below its fixed leading folders (``'clips/*/x.mp4'``: ``a/x``,
``b/x``). Videos of one folder that share a name but for the extension (``x.mp4``, ``x.mkv``)
keep it (``tags/x.mp4/``, ``tags/x.mkv/``), as caption-images' sidecars do. Inside, each file is
named after the video (``x.json``, ``x.srt``, ``x_keyframes/``, ``x.run.json``). Two videos
that would still share a folder (``a/x.mp4`` and ``b/x.mp4`` named on their own) are refused
before any work: a run never mixes two videos' files.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePath


class LayoutError(ValueError):
    """Two videos of one run would write in the same folder; the message names both."""


@dataclass(frozen=True)
class Target:
    folder: Path  # the video's output folder
    stem: str  # the names of its files without their extension: the video's name without its own


def targets(paths: list[str], relative: list[str], out_dir: str | os.PathLike) -> list[Target]:
    """The output folder of each video (``paths``, with ``relative``: each one's name below the
    input that found it) under ``out_dir``; raises :class:`LayoutError` when two would share one."""
    names = [PurePath(r) for r in relative]
    shared = Counter((n.parent, n.stem) for n in set(names))  # stems of different names in one folder
    found: dict[Path, str] = {}
    result = []
    for path, name in zip(paths, names):
        folder = Path(out_dir, name.parent, name.stem if shared[name.parent, name.stem] == 1 else name.name)
        if folder in found:
            raise LayoutError(f"{found[folder]} and {path} would both write in {folder}: give the folder that holds "
                              "both (with -r when they are in subfolders), or tag them with different --out")
        found[folder] = path
        result.append(Target(folder, name.stem or "video"))
    return result
