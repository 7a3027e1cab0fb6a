"""How tag-video writes its files: atomically, and never over a file it did not write.

Each file is written to a hidden temp file beside it (``.<name>.tag-video-<pid>.tmp``), tagged
with the sha256 of its bytes in the extended attribute ``user.tag-video.sha256``, then renamed
over the target, so a reader (or a later run) sees the old file or the new one, never half of
one. An existing target is replaced only when that attribute matches its content (tag-video
wrote it and nobody changed it since) or it already holds the new bytes; anything else (a file
of the user's, a symlink, a folder, a file on a filesystem without extended attributes) stops
the video's writing before any of its files is written, naming the file. The same rule as
caption-images' sidecars (:mod:`pipelines.images.sidecars`), with tag-video's own attribute.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Iterable

from ..files import remove_stale_temps

OWNER_XATTR = "user.tag-video.sha256"  # on each file written: sha256 of its bytes
TEMP_TAG = "tag-video"  # in the names of temp files: ".<name>.tag-video-<pid>.tmp"
_TEMP = re.compile(rf"^\..+\.{TEMP_TAG}-(\d+)\.tmp$")


class OutputError(RuntimeError):
    """An output file that must not be replaced; the message names it."""


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).hexdigest().encode()


def replaceable(path: Path, data: bytes | None = None) -> bool:
    """Whether ``path`` may be written: absent, holding ``data`` already, or written by tag-video
    and unchanged since."""
    if not os.path.lexists(path):
        return True
    try:
        if path.is_symlink() or not path.is_file():
            return False
        content = path.read_bytes()
    except OSError:
        return False
    if data is not None and content == data:
        return True
    try:
        return os.getxattr(path, OWNER_XATTR, follow_symlinks=False) == _sha256(content)
    except (OSError, AttributeError):  # no such attribute, no xattr support, or not Linux
        return False


def check_replaceable(paths: Iterable[Path]) -> None:
    """Raise :class:`OutputError` for the first of ``paths`` that exists and is not tag-video's."""
    for path in paths:
        if not replaceable(path):
            raise OutputError(f"{path}: exists and was not written by tag-video; left as it is (remove it or "
                              "choose another --out)")


def write_file(path: Path, data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically and tag it as tag-video's (see the module docstring)."""
    data = data.encode("utf-8") if isinstance(data, str) else data
    if not replaceable(path, data):
        check_replaceable([path])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{TEMP_TAG}-{os.getpid()}.tmp")  # hidden: never taken for an input
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        try:
            os.setxattr(tmp, OWNER_XATTR, _sha256(data))
        except (OSError, AttributeError):  # no xattr here: the file is kept, never replaced, later
            pass
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def clean_stale_temps(folder: Path) -> list[str]:
    """Delete tag-video temp files in ``folder`` that a killed run left (their process is gone)."""
    return remove_stale_temps(folder, [_TEMP])
