"""What both wings know about files: the image and video extensions they take, a folder walk
that is safe on deep trees and symlink loops (no recursion, each real folder entered once),
how a list goes into a CSV cell, and the removal of temp files a killed run left."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Pattern, Sequence

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff",
                              ".heic", ".heif", ".avif"})  # HEIC/HEIF through pillow-heif, AVIF through Pillow
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")
MEDIA_EXTENSIONS = IMAGE_EXTENSIONS | frozenset(VIDEO_EXTENSIONS)  # a sidecar must never take one of these

OnError = Callable[[OSError], None]


def is_hidden(name: str) -> bool:
    return name.startswith(".")


def child(folder: str, name: str) -> str:
    """``folder/name``; ``""`` stands for the current folder and adds nothing."""
    return os.path.join(folder, name) if folder else name


def identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of what ``path`` reaches, symlinks followed; None when it cannot be stat'ed."""
    try:
        st = os.stat(path or ".")
    except OSError:
        return None
    return st.st_dev, st.st_ino


def walk(top: str, *, recursive: bool = True, follow_links: bool = False, skip_hidden: bool = True,
         onerror: OnError | None = None) -> Iterator[tuple[str, list[str]]]:
    """``(folder, names)`` for ``top`` and (with ``recursive``) the folders below it, depth
    first in name order like ``os.walk``; ``names`` are the sorted non-folder entries. Hidden
    folders are skipped unless ``skip_hidden`` is off; each real folder is entered once (loops
    cannot repeat or hang it); no recursion, so depth is unlimited."""
    seen: set[tuple[int, int]] = set()
    stack = [top]
    while stack:
        folder = stack.pop()
        found = identity(folder)
        if found is None or found in seen:
            continue
        seen.add(found)
        try:
            with os.scandir(folder or ".") as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            if onerror is not None:
                onerror(e)
            continue
        names, subfolders = [], []
        for entry in entries:
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if not is_dir:
                names.append(entry.name)
            elif recursive and not (skip_hidden and is_hidden(entry.name)) and (follow_links or not entry.is_symlink()):
                subfolders.append(child(folder, entry.name))
        yield folder, names
        stack.extend(reversed(subfolders))  # popped in name order


def csv_cell(value: Any) -> Any:
    """A value as both tools' CSV files hold it: lists and mappings as JSON (``tags`` as
    ``[{"label": ..., "probability": ...}]``, as in the JSON outputs), None as an empty cell, a
    boolean as JSON's ``true`` / ``false``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else value


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (someone else's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temps(folder: Path, patterns: Sequence[Pattern[str]]) -> list[str]:
    """Delete the files in ``folder`` whose name matches one of ``patterns`` (group 1: the pid of the
    process that writes it) and whose process is gone. Returns the names deleted."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    for name in names:
        m = next((m for m in (p.match(name) for p in patterns) if m), None)
        if m and not process_alive(int(m[1])):
            try:
                (folder / name).unlink()
                removed.append(name)
            except OSError:
                pass
    return removed
