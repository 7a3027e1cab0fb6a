"""Files next to each image: ``photo.jpg`` -> ``photo.txt`` caption files (:class:`Sidecars`) and the
shared machinery of every sidecar kind (:class:`SidecarFiles`; XMP sidecars are :mod:`.xmp`).

Sidecars never replace a file this tool did not write: a sidecar it writes carries the
sha256 of its content in an extended attribute (``user.caption-images.sha256``), and an
existing file is replaced only when that attribute matches its content (or it already holds
the new text). Where the filesystem has no extended attributes, existing files are kept.
Every write goes to a temp file in the same folder, renamed over the sidecar: a reader (or a
resumed run) sees the old file or the new one, never half of it.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal, Mapping

from ..files import MEDIA_EXTENSIONS, walk
from .outputs import clean_stale_temps, temp_path

SIDECAR_XATTR = "user.caption-images.sha256"  # on each sidecar written: sha256 of its content
TEXT_LIMIT = 1 << 20  # a longer file at a text sidecar's name is not one of ours


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


class SidecarFiles:
    """One file next to each captioned image: where it goes, whether it is done, and the write
    loop (stale temp files of killed runs removed once per folder). Subclasses say what a
    record's sidecar holds in :meth:`_write_one`."""

    legacy_temp_ending: str | None = None  # also clean the temp files of older versions with this ending

    def __init__(self, extension: str, *, full_names: bool = False):
        self.extension = check_sidecar_extension(extension)
        self.full_names = full_names  # always name + extension (photo.jpg.xmp), not stem + extension (photo.txt)
        self._names: dict[str, dict[str, str]] = {}  # folder -> image name -> sidecar name
        self._cleaned: set[str] = set()  # folders whose stale temp files were removed

    def path_for(self, image: str | os.PathLike) -> Path:
        folder, name = os.path.split(os.fspath(image))
        if self.full_names:
            return Path(folder, name + self.extension)
        names = self._names.get(folder)
        if names is None:
            names = self._names[folder] = _sidecar_names(folder, self.extension)
        return Path(folder, names.get(name) or os.path.splitext(name)[0] + self.extension)

    def done(self, image: str | os.PathLike) -> bool:
        """Whether ``image`` needs no captioning for this sidecar (resume without --out)."""
        return os.path.lexists(self.path_for(image))

    def write(self, records: list[dict[str, Any]]) -> list[str]:
        """Write the sidecars of the captioned records (a caption withheld by --min-confidence is
        :meth:`_write_one`'s to skip); returns one line per file left alone."""
        notes = []
        for r in records:
            if r["error"] is not None:
                continue
            target = self.path_for(r["path"])
            if str(target.parent) not in self._cleaned:
                self._cleaned.add(str(target.parent))
                clean_stale_temps(target.parent, legacy_ending=self.legacy_temp_ending)
            note = self._write_one(target, r)
            if note:
                notes.append(note)
        return notes

    def _write_one(self, target: Path, record: dict[str, Any]) -> str | None:
        """Write ``record``'s sidecar at ``target``; a line saying why not, or None."""
        raise NotImplementedError


class Sidecars(SidecarFiles):
    """``photo.jpg`` -> ``photo.txt`` holding prefix + caption + suffix (failed images and withheld
    captions get none).

    Where several photos or videos in one folder share a stem (``image.bmp``, ``image.webp``),
    each gets its full name + extension instead (``image.bmp.txt``, ``image.webp.txt``), so no
    two images ever write one sidecar. An existing file that this tool did not write is never
    replaced (see the module docstring)."""

    def __init__(self, extension: str, *, prefix: str = "", suffix: str = ""):
        super().__init__(extension)
        self.legacy_temp_ending = self.extension
        self.prefix, self.suffix = prefix, suffix

    def _write_one(self, target: Path, record: dict[str, Any]) -> str | None:
        if record["caption"] is None:  # withheld (--min-confidence): no sidecar, an existing one left as it is
            return None
        data = f"{self.prefix}{record['caption']}{self.suffix}\n".encode("utf-8", errors="surrogateescape")
        state = _existing(target, data) if os.path.lexists(target) else "ours"
        if state == "foreign":
            return f"{target}: exists and was not written by caption-images; left as it is"
        if state == "ours":
            atomic_write(target, data)
        return None


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


def read_regular(path: Path, limit: int) -> bytes | None:
    """The content of ``path`` when it is a regular file (not a symlink) of at most ``limit``
    bytes that can be read; else None."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > limit:
            return None
        return path.read_bytes()
    except OSError:
        return None


def written_by_us(path: Path, content: bytes) -> bool:
    """Whether ``path``, holding ``content``, is a sidecar this tool wrote that nobody changed
    since: its extended attribute holds the sha256 of its content."""
    try:
        tag = os.getxattr(path, SIDECAR_XATTR, follow_symlinks=False)
    except (OSError, AttributeError):  # no such attribute, no xattr support, or not Linux
        return False
    return tag == hashlib.sha256(content).hexdigest().encode()


def _existing(path: Path, data: bytes) -> Literal["same", "ours", "foreign"]:
    """An existing sidecar path: already holding ``data``; a sidecar this tool wrote that
    nobody changed since; or anything else (a symlink, a folder, a file of the user's)."""
    content = read_regular(path, TEXT_LIMIT)
    if content is None:
        return "foreign"
    if content == data:
        return "same"
    return "ours" if written_by_us(path, content) else "foreign"


def atomic_write(path: Path, data: bytes, *, xattrs: Mapping[str, bytes] = {}, mode: int | None = None) -> None:
    """Write a temp file in the same folder, tag it as ours (the sha256 of ``data``, and
    ``xattrs``), give it ``mode`` if set, then rename it over ``path``: readers (and a resumed
    run) see the old file or the new one, never half of it."""
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        try:
            for name, value in {SIDECAR_XATTR: hashlib.sha256(data).hexdigest().encode(), **xattrs}.items():
                os.setxattr(tmp, name, value)
        except (OSError, AttributeError):  # no xattr here: such a sidecar is kept, never replaced, later
            pass
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
