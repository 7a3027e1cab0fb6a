"""Which files a batch tool reads (caption-images' images, tag-video's videos): files, folders,
glob patterns and list files become one ordered list of unique paths.

Folders and glob matches keep only the tool's extensions (case-insensitive: image ones by
default, :data:`~pipelines.files.VIDEO_EXTENSIONS` for tag-video) and skip hidden files and
folders (names starting with "."). A folder is searched at its top level only, unless
``recursive``. A file named explicitly (on the command line or in a list file) is taken as it
is: the tool reports it if it cannot read it. Each path found also gets its name relative to
the input that found it (:attr:`Discovery.relative`), which tag-video mirrors under ``--out``.

Folders are walked iteratively (no recursion limit on deep trees) and each real folder is
entered once, so symlink loops (``ln -s . loop``) neither hang discovery nor repeat photos.
A folder walk does not follow symlinked folders (as ``os.walk``); ``**`` in a glob pattern
does (as ``glob.glob``), once per real folder. Paths reaching the same file are one input.
"""
from __future__ import annotations

import fnmatch
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Iterable, Iterator

from .files import IMAGE_EXTENSIONS, OnError, child, identity, is_hidden, walk


@dataclass(frozen=True)
class Discovery:
    paths: list[str] = field(default_factory=list)  # unique paths of the wanted kind, in the order found
    warnings: list[str] = field(default_factory=list)  # one line each: inputs that matched nothing, unlistable folders
    relative: list[str] = field(default_factory=list)  # each path relative to the input that found it: below a
    # folder given, below the fixed leading folders of a glob pattern; a file named explicitly: its name


def has_extension(name: str, extensions: Collection[str]) -> bool:
    """True when ``name`` ends with one of ``extensions`` (lower-case, with the dot; any case in ``name``)."""
    return os.path.splitext(name)[1].lower() in extensions


def path_key(path: str | os.PathLike) -> str:
    """Identity of a file for de-duplication and resume: its real path, so "./a.jpg", "a.jpg",
    an absolute path, a path through a symlinked folder and a symlink to it are one file."""
    return os.path.normcase(os.path.realpath(path))


def _has_magic(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _folder(folder: str, recursive: bool, onerror: OnError, extensions: Collection[str]) -> Iterator[str]:
    """Wanted files of a folder (by name; with ``recursive``, each subfolder after the files)."""
    for root, names in walk(folder, recursive=recursive, onerror=onerror):
        yield from (child(root, n) for n in names if not is_hidden(n) and has_extension(n, extensions))


def glob_base(pattern: str) -> tuple[str, list[str]]:
    """The fixed leading folders of a glob pattern (``""``: the current folder) and its parts after them."""
    parts = pattern.split(os.sep)
    head = 0
    while head < len(parts) - 1 and not _has_magic(parts[head]):
        head += 1
    return os.sep.join(parts[:head]) or (os.sep if head else ""), parts[head:]


def relative_name(path: str, base: str) -> str:
    """``path`` below the folder ``base`` (``""``: the current folder), lexically, never climbing
    out of it ("." and ".." parts dropped); its file name when nothing is left."""
    parts = [p for p in os.path.relpath(path, base or os.curdir).split(os.sep) if p not in ("", ".", "..")]
    return os.sep.join(parts) or os.path.basename(os.path.normpath(path))


def glob_paths(pattern: str, onerror: OnError | None = None) -> list[str]:
    """Paths matching a glob pattern, sorted, as ``glob.glob(pattern, recursive=True)`` gives
    them (``**`` = any depth, ``*`` does not match hidden names) but walked iteratively with
    each real folder entered once per pattern part, so symlink loops and deep trees are safe."""
    base, parts = glob_base(pattern)
    if base and not os.path.isdir(base):
        return []
    folders, matches = [base], []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        found: list[str] = []
        for folder in folders:
            if part == "**":
                for root, names in walk(folder, follow_links=True, onerror=onerror):
                    found.append(root)
                    if last:
                        found += [child(root, n) for n in names if not is_hidden(n)]
            elif _has_magic(part):
                try:
                    with os.scandir(folder or ".") as it:
                        names = sorted(e.name for e in it if (last or e.is_dir())
                                       and (part.startswith(".") or not is_hidden(e.name)))
                except OSError:
                    continue
                found += [child(folder, n) for n in names if fnmatch.fnmatchcase(n, part)]
            elif os.path.lexists(path := child(folder, part)) and (last or os.path.isdir(path)):
                found.append(path)
        if last:
            matches = [p for p in found if p]  # "**" yields the base folder itself as ""
        else:
            folders = _unique_folders(found)
    return sorted(dict.fromkeys(matches))


def _unique_folders(folders: list[str]) -> list[str]:
    """One path per real folder (symlinks and ``**`` reach folders several ways)."""
    seen: set[tuple[int, int]] = set()
    unique = []
    for folder in folders:
        found = identity(folder)
        if found is not None and found not in seen:
            seen.add(found)
            unique.append(folder)
    return unique


def _expand(source: str, recursive: bool, warnings: list[str],
            extensions: Collection[str]) -> Iterator[tuple[str, str]]:
    """(path, its name relative to ``source``) of the wanted files ``source`` stands for."""
    def onerror(e: OSError) -> None:
        warnings.append(f"{e.filename}: cannot list folder ({e.strerror})")

    if os.path.isdir(source):
        yield from ((p, relative_name(p, source)) for p in _folder(source, recursive, onerror, extensions))
    elif _has_magic(source) and not os.path.exists(source):
        base = glob_base(source)[0]
        matches = glob_paths(source, onerror)
        if not matches:
            warnings.append(f"{source}: no file matches this pattern")
        for match in matches:
            if os.path.isdir(match):
                yield from ((p, relative_name(p, base)) for p in _folder(match, recursive, onerror, extensions))
            elif not is_hidden(os.path.basename(match)) and has_extension(match, extensions):
                yield match, relative_name(match, base)
    elif os.path.lexists(source):
        yield source, relative_name(source, os.path.dirname(source))  # named explicitly: taken as it is
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


def discover(sources: Iterable[str], *, listed: Iterable[str] = (), recursive: bool = False,
             extensions: Collection[str] = IMAGE_EXTENSIONS) -> Discovery:
    """Expand ``sources`` (files, folders, glob patterns; folders and patterns keep the files
    with one of ``extensions``) then append ``listed`` paths (from a list file, taken as they
    are, missing ones included so they are reported); paths of a file already found (see
    :func:`path_key`) are dropped, keeping the first occurrence."""
    found = Discovery()
    seen: set[str] = set()

    def add(path: str, relative: str) -> None:
        key = path_key(path)
        if key not in seen:
            seen.add(key)
            found.paths.append(path)
            found.relative.append(relative)

    for source in sources:
        for path, relative in _expand(str(source), recursive, found.warnings, extensions):
            add(path, relative)
    for path in listed:
        add(path, relative_name(path, os.path.dirname(path)))
    return found
