"""Where records go: a JSONL or CSV file (appended, flushed and fsync'ed per batch, resumable)
or standard output. Sidecar caption files are :mod:`pipelines.images.sidecars`.

An output file is locked (``fcntl.flock``, exclusive, not waiting) while a run writes it: a
second run into the same file stops at once with a clear message instead of writing every
record twice. Resume reads the records already in the file: a kill can only cut the file
inside the last record (records are appended whole, a batch at a time), so a last record
that is not complete is removed before appending; a bad record anywhere else is not ours to
guess about and stops the run with an error. Records of images that failed are dropped
(the file is rewritten atomically) when the same images are tried again.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Protocol

from ..files import csv_cell, remove_stale_temps
from ..flags import setting_differences
from ..inputs import path_key
from .records import FIELDS, SETTINGS, recorded_settings

_FORMAT1_FIELDS = ("path", "caption", "score", "n_best", "tags", "width", "height", "sha256", "model",
                   "model_version", "error")  # the CSV header before format_version existed
_FORMAT3_FIELDS = tuple(f for f in FIELDS if f not in ("confidence", "unfamiliar", "note"))  # before confidence
_FORMAT2_FIELDS = tuple(f for f in _FORMAT3_FIELDS if f != "everyday_tags")  # the CSV header before everyday_tags
TEMP_TAG = "caption-images"  # in the names of this tool's temp files: ".<name>.caption-images-<pid>.tmp"


class OutputError(RuntimeError):
    """An existing output file that cannot be resumed safely; the message names the file."""


class RecordOutput(Protocol):
    done: set[str]  # path keys (see path_key) of the images captioned in the output
    failed: set[str]  # path keys of the images whose records are errors
    notes: list[str]  # one line each: repairs made when opening

    def check(self, settings: dict[str, Any], keys: set[str]) -> None: ...

    def forget(self, keys: set[str]) -> None: ...

    def write(self, records: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class _Row:
    key: str  # path_key of the image
    start: int  # byte range of the record in the file
    end: int
    line: int  # line number where it starts
    ok: bool  # captioned (no error)
    settings: dict[str, Any]  # the SETTINGS fields as recorded (missing ones: None)


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{TEMP_TAG}-{os.getpid()}.tmp")  # hidden: never taken for an input


def clean_stale_temps(folder: Path, *, legacy_ending: str | None = None) -> list[str]:
    """Delete this tool's temp files in ``folder`` that a killed run left (their process is
    gone); ``legacy_ending`` also matches the older names ``.<name><legacy_ending>.<pid>.tmp``
    of sidecar temp files. Returns the names deleted."""
    patterns = [re.compile(rf"^\..+\.{TEMP_TAG}-(\d+)\.tmp$")]
    if legacy_ending:
        patterns.append(re.compile(rf"^\..+{re.escape(legacy_ending)}\.(\d+)\.tmp$"))
    return remove_stale_temps(folder, patterns)


def _lock(f: BinaryIO, path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OutputError(f"{path}: another caption-images run is writing to this file; wait for it to finish "
                          "or choose another --out") from None


def _sync(f: BinaryIO) -> None:
    f.flush()
    os.fsync(f.fileno())


def _describe_difference(recorded: dict[str, Any], current: dict[str, Any]) -> str:
    if recorded.get("options") is None:
        return "no options recorded (written by an older caption-images)"
    return ", ".join(setting_differences(recorded, {key: current[key] for key in SETTINGS}))


class _AppendedFile:
    """An output file that is locked, scanned for finished records (and repaired), then appended to."""

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(self.path.parent)
        self._f: BinaryIO = open(self.path, "ab")
        try:
            _lock(self._f, self.path)
            if overwrite:
                self._truncate(0)
            self.notes: list[str] = []
            self._rows = self._scan(self.path.read_bytes())
        except BaseException:
            self._f.close()
            raise
        self._tally()

    def _tally(self) -> None:
        self.done = {r.key for r in self._rows if r.ok}
        self.failed = {r.key for r in self._rows if not r.ok} - self.done

    # -- what subclasses define -------------------------------------------------------
    def _parse(self, data: bytes) -> tuple[list[_Row], int]:
        """Complete records and the offset where an incomplete last record starts (len(data)
        when there is none); raises OutputError on anything else."""
        raise NotImplementedError

    def _encode(self, records: list[dict[str, Any]]) -> bytes:
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------
    def _truncate(self, size: int) -> None:
        self._f.truncate(size)
        self._f.seek(size)  # truncate() leaves the position where it was
        _sync(self._f)

    def _scan(self, data: bytes) -> list[_Row]:
        rows, cut = self._parse(data)
        if cut < len(data):
            self._truncate(cut)
            line = data.count(b"\n", 0, cut) + 1
            self.notes.append(f"{self.path}: removed an incomplete last record (line {line}, {len(data) - cut} bytes, "
                              "cut off by an interrupted run)")
        return rows

    def check(self, settings: dict[str, Any], keys: set[str]) -> None:
        """Raise OutputError when the captioned records of ``keys`` were made with other
        SETTINGS than ``settings``."""
        other = [r for r in self._rows if r.ok and r.key in keys and r.settings != settings]
        if other:
            raise OutputError(f"{self.path}: {len(other)} records (the first on line {other[0].line}) were made "
                              f"with other settings: {_describe_difference(other[0].settings, settings)}; resume "
                              "with the same ones, start over with --overwrite, or choose another --out")

    def forget(self, keys: set[str]) -> None:
        """Drop the records of ``keys`` (images tried again): the file is rewritten to a temp
        file, locked before it replaces the original, so the lock never lapses."""
        drop = [r for r in self._rows if r.key in keys]
        if not drop:
            return
        data = self.path.read_bytes()
        keep, start = [], 0
        for r in drop:  # rows are in file order
            keep.append(data[start:r.start])
            start = r.end
        keep.append(data[start:])
        tmp = temp_path(self.path)
        f: BinaryIO = open(tmp, "xb")
        try:
            _lock(f, tmp)
            f.write(b"".join(keep))
            _sync(f)
            os.replace(tmp, self.path)
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise
        self._f.close()
        self._f = f
        self._rows = self._parse(self.path.read_bytes())[0]
        self._tally()

    def write(self, records: list[dict[str, Any]]) -> None:
        self._f.write(self._encode(records))
        _sync(self._f)

    def close(self) -> None:
        self._f.close()


class JsonlOutput(_AppendedFile):
    """One JSON object per line."""

    def _parse(self, data: bytes) -> tuple[list[_Row], int]:
        rows, offset, bad = [], 0, None  # bad: (line number, offset) of a line that is not a complete record
        not_a_record = lambda number: OutputError(  # noqa: E731
            f"{self.path}: line {number} is not a JSON record; fix it or start over with --overwrite")
        for number, line in enumerate(data.splitlines(keepends=True), 1):
            if bad is not None:  # only the last line may be cut
                raise not_a_record(bad[0])
            record = _jsonl_record(line)
            if record is not None:
                key = path_key(record.get("real_path") or record["path"])
                rows.append(_Row(key, offset, offset + len(line), number, record.get("error") is None,
                                 recorded_settings(record)))
            elif line.strip() or not line.endswith(b"\n"):
                bad = (number, offset)
            offset += len(line)
        if bad is not None and not data[bad[1]:].startswith(b"{"):  # not the start of a record of ours
            raise not_a_record(bad[0])
        return rows, len(data) if bad is None else bad[1]

    def _encode(self, records: list[dict[str, Any]]) -> bytes:
        return "".join(json.dumps(r) + "\n" for r in records).encode("ascii")


def _jsonl_record(line: bytes) -> dict[str, Any] | None:
    """A complete JSONL record line, else None."""
    if not line.endswith(b"\n"):
        return None
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return None
    return record if isinstance(record, dict) and isinstance(record.get("path"), str) else None


class CsvOutput(_AppendedFile):
    """A header row of FIELDS, then one row per image; n_best, tags and options are JSON in
    their cells. A path may hold a newline (quoted, as the csv module writes it)."""

    _HEADER = ",".join(FIELDS).encode() + b"\n"

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False):
        super().__init__(path, overwrite=overwrite)
        if self._f.tell() == 0:
            self._f.write(self._HEADER)
            _sync(self._f)

    def _parse(self, data: bytes) -> tuple[list[_Row], int]:
        if not data or (self._HEADER.startswith(data) and data != self._HEADER):  # empty or cut inside the header
            return [], 0
        lines = data.splitlines(keepends=True)
        ends = [0]  # ends[n]: byte offset after physical line n
        for line in lines:
            ends.append(ends[-1] + len(line))
        reader = csv.reader((line.decode("utf-8", errors="surrogateescape") for line in lines), strict=True)
        header = next(reader, None)
        for version, fields in ((1, _FORMAT1_FIELDS), (2, _FORMAT2_FIELDS), (3, _FORMAT3_FIELDS)):
            if header == list(fields):
                raise OutputError(f"{self.path}: written by an older caption-images (record format {version}); "
                                  "start over with --overwrite or choose another --out")
        if header != list(FIELDS):
            raise OutputError(f"{self.path}: not a caption-images CSV (header {(header or [])[:4]}...); choose "
                              "another --out or start over with --overwrite")
        rows, done_lines = [], reader.line_num

        def bad(why: str) -> OutputError:
            return OutputError(f"{self.path}: the record on line {done_lines + 1} {why}; fix it or start over "
                               "with --overwrite")

        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:  # at the end of the file: a record cut inside a quoted field (an open quote)
                if reader.line_num < len(lines):
                    raise bad(f"is not valid CSV ({e})") from None
                return rows, ends[done_lines]
            if len(row) != len(FIELDS) or data[ends[reader.line_num] - 1:ends[reader.line_num]] != b"\n":
                if reader.line_num < len(lines):
                    raise bad(f"has {len(row)} columns, expected {len(FIELDS)}")
                return rows, ends[done_lines]  # the last record, cut by a kill
            record = dict(zip(FIELDS, row))
            settings = {k: record[k] or None for k in SETTINGS}
            try:
                settings["options"] = json.loads(record["options"]) if record["options"] else None
            except ValueError:  # kept as text: it matches no run's options
                pass
            settings = recorded_settings({**settings, "format_version": record["format_version"]})
            rows.append(_Row(path_key(record["real_path"] or record["path"]), ends[done_lines],
                             ends[reader.line_num], done_lines + 1, record["error"] == "", settings))
            done_lines = reader.line_num
        return rows, len(data)

    def _encode(self, records: list[dict[str, Any]]) -> bytes:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([csv_cell(r[k]) for k in FIELDS] for r in records)
        return buf.getvalue().encode("utf-8", errors="surrogateescape")


class StdoutOutput:
    """JSONL on standard output (no resume)."""

    def __init__(self) -> None:
        self.done: set[str] = set()
        self.failed: set[str] = set()
        self.notes: list[str] = []

    def check(self, settings: dict[str, Any], keys: set[str]) -> None:
        pass

    def forget(self, keys: set[str]) -> None:
        pass

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


def write_records(records: Iterable[dict[str, Any]], path: str | os.PathLike) -> None:
    """Write records to a fresh JSONL or CSV file (chosen by extension), as the CLI does."""
    output = open_output(str(path), overwrite=True)
    try:
        output.write(list(records))
    finally:
        output.close()
