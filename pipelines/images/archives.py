"""Images inside zip archives, unpacked without trusting the archive (the web UI's batch uploads).

The image entries are read from the central directory and checked against a size limit
before anything is unpacked; each member is then streamed with a counted cap at the size its
entry declares, so a member that holds more data than it declares is refused, whatever its
header says. Errors are :class:`ArchiveError`, one line naming the archive and the member by
their file names only (the UI shows them; no server path).
"""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import IO

from ..files import IMAGE_EXTENSIONS, is_hidden

COPY_CHUNK = 1 << 20  # bytes per read when unpacking a member


class ArchiveError(ValueError):
    """A zip that is refused or cannot be unpacked; the message starts with its file name."""


def is_zip(path: str) -> bool:
    return str(path).lower().endswith(".zip")


def image_entries(zip_path: str, *, max_member_bytes: int) -> list[zipfile.ZipInfo]:
    """The image entries of a zip, from its central directory (nothing is unpacked); each
    must declare at most ``max_member_bytes``."""
    name = Path(zip_path).name
    try:
        with zipfile.ZipFile(zip_path) as z:
            entries = [info for info in z.infolist() if _is_image_entry(info)]
    except zipfile.BadZipFile:
        raise ArchiveError(f"{name} is not a valid zip file.") from None
    for info in entries:
        if info.file_size > max_member_bytes:
            raise ArchiveError(f"{name}: {Path(info.filename).name} unpacks to {_mb(info.file_size)} MB; "
                               f"the limit is {_mb(max_member_bytes)} MB.")
    return entries


def unpack(zip_path: str, entries: list[zipfile.ZipInfo], dest: Path) -> list[str]:
    """Unpack ``entries`` into a new folder ``dest`` (flat, safe names: ``00000_photo.jpg``...),
    streaming each member and refusing one that holds more data than its entry declares."""
    archive = Path(zip_path).name
    dest.mkdir()
    paths = []
    try:
        with zipfile.ZipFile(zip_path) as z:
            for i, info in enumerate(entries):
                name = Path(info.filename).name
                target = dest / f"{i:05d}_{name}"
                with z.open(info) as src, open(target, "wb") as dst:
                    if _copy_at_most(src, dst, info.file_size) > info.file_size:
                        raise ArchiveError(f"{archive}: {name} holds more data than its entry declares.")
                paths.append(str(target))
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as e:
        # damaged data, a compression method zipfile lacks, an encrypted member
        why = str(e).removeprefix(f"{zip_path}: ").replace(str(zip_path), archive)
        raise ArchiveError(f"{archive}: cannot unpack ({why}).") from None
    return paths


def _is_image_entry(info: zipfile.ZipInfo) -> bool:
    name = Path(info.filename).name
    return not info.is_dir() and not is_hidden(name) and Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _copy_at_most(src: IO[bytes], dst: IO[bytes], limit: int) -> int:
    """Copy ``src`` into ``dst`` in chunks, stopping once more than ``limit`` bytes came;
    returns the bytes copied."""
    copied = 0
    while copied <= limit and (chunk := src.read(min(COPY_CHUNK, limit + 1 - copied))):
        dst.write(chunk)
        copied += len(chunk)
    return copied


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.0f}"
