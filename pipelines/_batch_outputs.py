"""Where records go: a JSONL or CSV file (appended, flushed and fsync'ed per batch, resumable),
standard output, and/or sidecar caption files next to the images (written atomically).

Resume reads the paths already in the output file. A kill can only cut the file inside the
last line (records are appended whole, a batch at a time), so a last line that is not a
complete record is removed before appending; a bad line anywhere else is not ours to
guess about and stops the run with an error.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Protocol, TextIO

from ._batch_inputs import path_key
from ._batch_records import FIELDS

_LIST_FIELDS = ("n_best", "tags")  # JSON-encoded inside a CSV cell


class OutputError(RuntimeError):
    """An existing output file that cannot be resumed safely; the message names the file."""


class RecordOutput(Protocol):
    done: set[str]  # path keys of the images already in the output (see path_key)
    notes: list[str]  # one line each: repairs made when opening

    def write(self, records: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


def _sync(f: TextIO) -> None:
    f.flush()
    os.fsync(f.fileno())


class _AppendedFile:
    """An output file that is scanned for finished records (and repaired), then appended to."""

    _open_kwargs: dict[str, str] = {}

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if overwrite:
            self.path.write_bytes(b"")
        self.done, self.notes = self._scan()
        self._f = open(self.path, "a", **self._open_kwargs)

    def _scan(self) -> tuple[set[str], list[str]]:
        raise NotImplementedError

    def close(self) -> None:
        self._f.close()


class JsonlOutput(_AppendedFile):
    """One JSON object per line."""

    _open_kwargs = {"encoding": "ascii", "newline": "\n"}

    def _scan(self) -> tuple[set[str], list[str]]:
        done: set[str] = set()
        if not self.path.exists():
            return done, []
        with open(self.path, "rb+") as f:
            offset, bad = 0, None  # bad: (line number, offset) of a line that is not a complete record
            for number, line in enumerate(f, 1):
                if bad is not None:
                    raise OutputError(f"{self.path}: line {bad[0]} is not a JSON record; fix it or start over "
                                      "with --overwrite")
                path = _jsonl_path(line)
                if path is not None:
                    done.add(path_key(path))
                elif line.strip() or not line.endswith(b"\n"):
                    bad = (number, offset)
                offset += len(line)
            if bad is None:
                return done, []
            f.truncate(bad[1])
            os.fsync(f.fileno())
        return done, [f"{self.path}: removed an incomplete last line (line {bad[0]}, {offset - bad[1]} bytes, "
                      "cut off by an interrupted run)"]

    def write(self, records: list[dict[str, Any]]) -> None:
        self._f.write("".join(json.dumps(r) + "\n" for r in records))
        _sync(self._f)


def _jsonl_path(line: bytes) -> str | None:
    """The path of a complete JSONL record line, else None."""
    if not line.endswith(b"\n"):
        return None
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return None
    return record.get("path") if isinstance(record, dict) and isinstance(record.get("path"), str) else None


class CsvOutput(_AppendedFile):
    """A header row of FIELDS, then one row per image; n_best and tags are JSON in their cells."""

    _open_kwargs = {"encoding": "utf-8", "errors": "surrogateescape", "newline": ""}

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False):
        super().__init__(path, overwrite=overwrite)
        if self._f.tell() == 0:
            self._f.write(self._rows([list(FIELDS)]))
            _sync(self._f)

    def _scan(self) -> tuple[set[str], list[str]]:
        if not self.path.exists():
            return set(), []
        data, notes = self.path.read_bytes(), []
        if data and not data.endswith(b"\n"):  # a row cut off by a kill
            keep = data.rfind(b"\n") + 1
            with open(self.path, "rb+") as f:
                f.truncate(keep)
                os.fsync(f.fileno())
            notes.append(f"{self.path}: removed an incomplete last row ({len(data) - keep} bytes, cut off by an "
                         "interrupted run)")
            data = data[:keep]
        rows = list(csv.reader(io.StringIO(data.decode("utf-8", errors="surrogateescape"), newline="")))
        if rows and rows[0] != list(FIELDS):
            raise OutputError(f"{self.path}: not a caption-images CSV (header {rows[0][:4]}...); choose another "
                              "--out or start over with --overwrite")
        for number, row in enumerate(rows[1:], 2):
            if len(row) != len(FIELDS):
                raise OutputError(f"{self.path}: row {number} has {len(row)} columns, expected {len(FIELDS)}; "
                                  "fix it or start over with --overwrite")
        return {path_key(row[0]) for row in rows[1:]}, notes

    @staticmethod
    def _rows(rows: Iterable[list[Any]]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        return buf.getvalue()

    def write(self, records: list[dict[str, Any]]) -> None:
        def cell(key: str, value: Any) -> Any:
            if value is None:
                return ""
            return json.dumps(value) if key in _LIST_FIELDS else value

        self._f.write(self._rows([cell(k, r[k]) for k in FIELDS] for r in records))
        _sync(self._f)


class StdoutOutput:
    """JSONL on standard output (no resume)."""

    def __init__(self) -> None:
        self.done: set[str] = set()
        self.notes: list[str] = []

    def write(self, records: list[dict[str, Any]]) -> None:
        sys.stdout.write("".join(json.dumps(r) + "\n" for r in records))
        sys.stdout.flush()

    def close(self) -> None:
        pass


def open_output(out: str, *, overwrite: bool = False) -> RecordOutput:
    """"-" is stdout; a .csv name is CSV; anything else is JSONL."""
    if out == "-":
        return StdoutOutput()
    if out.lower().endswith(".csv"):
        return CsvOutput(out, overwrite=overwrite)
    return JsonlOutput(out, overwrite=overwrite)


class Sidecars:
    """``photo.jpg`` -> ``photo.txt`` holding prefix + caption + suffix (failed images get none)."""

    def __init__(self, extension: str, *, prefix: str = "", suffix: str = ""):
        self.extension = extension if extension.startswith(".") else "." + extension
        self.prefix, self.suffix = prefix, suffix

    def path_for(self, image: str) -> Path:
        return Path(image).with_suffix(self.extension)

    def write(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            if r["error"] is None:
                _atomic_write(self.path_for(r["path"]), f"{self.prefix}{r['caption']}{self.suffix}\n")


def _atomic_write(path: Path, text: str) -> None:
    """Write a temp file in the same folder, then rename it over ``path``: readers (and a
    resumed run) see the old file or the new one, never half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # hidden: never taken for an input
    try:
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
