"""Sidecar caption files: ``photo.jpg`` -> ``photo.txt`` next to each image, written atomically.

Sidecars never replace a file this tool did not write: a sidecar it writes carries the
sha256 of its text in an extended attribute (``user.caption-images.sha256``), and an
existing file is replaced only when that attribute matches its content (or it already holds
the new text). Where the filesystem has no extended attributes, existing files are kept.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

from ..files import MEDIA_EXTENSIONS, walk
from .outputs import clean_stale_temps, temp_path

SIDECAR_XATTR = "user.caption-images.sha256"  # on each sidecar written: sha256 of its text


def check_sidecar_extension(extension: str) -> str:
    """``extension`` with its leading dot; raises ValueError when a sidecar with it could be
    taken for (or replace) a photo or video."""
    ext = extension if extension.startswith(".") else "." + extension
    if ext.strip(".") == "" or os.sep in ext or (os.altsep and os.altsep in ext):
        raise ValueError(f"--sidecar needs an extension such as .txt (got {extension!r})")
    if ext.lower() in MEDIA_EXTENSIONS:
        raise ValueError(f"--sidecar {extension}: that is an image or video extension, so sidecars would replace "
                         "photos; use a text extension such as .txt")
    return ext


class Sidecars:
    """``photo.jpg`` -> ``photo.txt`` holding prefix + caption + suffix (failed images get none).

    Where several photos or videos in one folder share a stem (``image.bmp``, ``image.webp``),
    each gets its full name + extension instead (``image.bmp.txt``, ``image.webp.txt``), so no
    two images ever write one sidecar. An existing file that this tool did not write is never
    replaced (see the module docstring)."""

    def __init__(self, extension: str, *, prefix: str = "", suffix: str = ""):
        self.extension = check_sidecar_extension(extension)
        self.prefix, self.suffix = prefix, suffix
        self._names: dict[str, dict[str, str]] = {}  # folder -> image name -> sidecar name
        self._cleaned: set[str] = set()  # folders whose stale temp files were removed

    def path_for(self, image: str | os.PathLike) -> Path:
        folder, name = os.path.split(os.fspath(image))
        names = self._names.get(folder)
        if names is None:
            names = self._names[folder] = _sidecar_names(folder, self.extension)
        return Path(folder, names.get(name) or os.path.splitext(name)[0] + self.extension)

    def write(self, records: list[dict[str, Any]]) -> list[str]:
        """Write the sidecars of the captioned records; returns one line per file left alone."""
        kept = []
        for r in records:
            if r["error"] is not None:
                continue
            target = self.path_for(r["path"])
            if str(target.parent) not in self._cleaned:
                self._cleaned.add(str(target.parent))
                clean_stale_temps(target.parent, legacy_ending=self.extension)
            text = f"{self.prefix}{r['caption']}{self.suffix}\n"
            state = _existing(target, text) if os.path.lexists(target) else "ours"
            if state == "foreign":
                kept.append(f"{target}: exists and was not written by caption-images; left as it is")
            elif state == "ours":
                _atomic_write(target, text)
        return kept


def _sidecar_names(folder: str, extension: str) -> dict[str, str]:
    """Sidecar name of each photo/video in ``folder``: stem + extension, or the full name +
    extension for those whose stem-named sidecar another one would also claim."""
    try:
        media = [n for n in next(walk(folder, recursive=False))[1] if os.path.splitext(n)[1].lower() in MEDIA_EXTENSIONS]
    except StopIteration:
        media = []
    names = {n: os.path.splitext(n)[0] + extension for n in media}
    while True:
        claims: dict[str, list[str]] = {}
        for n, s in names.items():
            claims.setdefault(os.path.normcase(s).lower(), []).append(n)  # case-insensitive filesystems too
        clashing = [n for group in claims.values() if len(group) > 1 for n in group]
        if not clashing:
            return names
        for n in clashing:
            names[n] = n + extension


def _text_sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", errors="surrogateescape")).hexdigest().encode()


def _existing(path: Path, text: str) -> Literal["same", "ours", "foreign"]:
    """An existing sidecar path: already holding ``text``; a sidecar this tool wrote that
    nobody changed since (its extended attribute holds the sha256 of its content); or
    anything else (a symlink, a folder, a file of the user's)."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 1 << 20:
            return "foreign"
        content = path.read_bytes()
    except OSError:
        return "foreign"
    if content == text.encode("utf-8", errors="surrogateescape"):
        return "same"
    try:
        tag = os.getxattr(path, SIDECAR_XATTR, follow_symlinks=False)
    except (OSError, AttributeError):  # no such attribute, no xattr support, or not Linux
        return "foreign"
    return "ours" if tag == hashlib.sha256(content).hexdigest().encode() else "foreign"


def _atomic_write(path: Path, text: str) -> None:
    """Write a temp file in the same folder, tag it as ours, then rename it over ``path``:
    readers (and a resumed run) see the old file or the new one, never half of it."""
    tmp = temp_path(path)
    try:
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
        try:
            os.setxattr(tmp, SIDECAR_XATTR, _text_sha256(text))
        except (OSError, AttributeError):  # no xattr here: such a sidecar is kept, never replaced, later
            pass
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
