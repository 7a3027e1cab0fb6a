"""Which files a batch job captions: files, folders, glob patterns and list files become
one ordered list of unique image paths.

Folders and glob matches keep only image extensions (case-insensitive) and skip hidden
files and folders (names starting with "."). A file named explicitly (on the command line
or in a list file) is taken as it is: the captioner reports it if it is not an image.
"""
from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


@dataclass(frozen=True)
class Discovery:
    paths: list[str] = field(default_factory=list)  # unique image paths, in the order found
    warnings: list[str] = field(default_factory=list)  # one line each: inputs that matched nothing, unlistable folders


def is_image_name(name: str) -> bool:
    """True for a supported image extension (any case)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def path_key(path: str | os.PathLike) -> str:
    """Identity of a path for de-duplication and resume ("./a.jpg" and "a.jpg" are the same)."""
    return os.path.normcase(os.path.abspath(path))


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _has_magic(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _folder(folder: str, recursive: bool, warnings: list[str]) -> Iterator[str]:
    """Image files of a folder (sorted by name; with ``recursive``, subfolders after the files)."""
    def onerror(e: OSError) -> None:
        warnings.append(f"{e.filename}: cannot list folder ({e.strerror})")

    for root, dirs, files in os.walk(folder, onerror=onerror):
        dirs[:] = sorted(d for d in dirs if not _hidden(d)) if recursive else []
        for name in sorted(files):
            if not _hidden(name) and is_image_name(name):
                yield os.path.join(root, name)


def _expand(source: str, recursive: bool, warnings: list[str]) -> Iterator[str]:
    if os.path.isdir(source):
        yield from _folder(source, recursive, warnings)
    elif _has_magic(source) and not os.path.exists(source):
        matches = sorted(glob.glob(source, recursive=True))
        if not matches:
            warnings.append(f"{source}: no file matches this pattern")
        for match in matches:
            if os.path.isdir(match):
                yield from _folder(match, recursive, warnings)
            elif not _hidden(os.path.basename(match)) and is_image_name(match):
                yield match
    elif os.path.lexists(source):
        yield source  # named explicitly: taken as it is
    else:
        warnings.append(f"{source}: no such file or folder")


def read_list(list_file: str) -> list[str]:
    """Paths listed one per line in a text file ("-" = stdin); blank lines and "#" comments
    are ignored; relative paths are relative to the current folder."""
    if list_file == "-":
        lines = sys.stdin.read().splitlines()
    else:
        lines = Path(list_file).read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    return [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]


def discover(sources: Iterable[str], *, listed: Iterable[str] = (), recursive: bool = False) -> Discovery:
    """Expand ``sources`` (files, folders, glob patterns) then append ``listed`` paths (from a
    list file, taken as they are, missing ones included so they are reported); duplicates
    are dropped, keeping the first occurrence."""
    warnings: list[str] = []
    seen: set[str] = set()
    paths: list[str] = []

    def add(path: str) -> None:
        key = path_key(path)
        if key not in seen:
            seen.add(key)
            paths.append(path)

    for source in sources:
        for path in _expand(str(source), recursive, warnings):
            add(path)
    for path in listed:
        add(path)
    return Discovery(paths, warnings)
