"""Captioned-image datasets read into one form: a list of (image path, captions).

Formats: Flickr8k/30k ``captions.csv`` and ``Flickr8k.token.txt`` (with split files),
COCO caption JSON, Karpathy split JSON, and generic CSV / JSONL. Bad input is never
silently skipped: it raises :class:`DatasetError` naming the file and line (or JSON entry).
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMATS = ("flickr-csv", "flickr-token", "coco", "karpathy", "csv", "jsonl")
_IMAGE_KEYS = ("image", "image_path", "path", "file", "filename", "file_name")
_CAPTION_KEYS = ("caption", "text")
_OFFICIAL_SPLITS = {"train": "Flickr_8k.trainImages.txt", "dev": "Flickr_8k.devImages.txt",
                    "test": "Flickr_8k.testImages.txt"}
_FLICKR_IMAGE_DIRS = ("Flicker8k_Dataset", "Flickr8k_Dataset", "flickr30k-images", "images")


@dataclass(frozen=True)
class CaptionedImage:
    image: Path  # absolute path of the image file
    captions: tuple[str, ...]  # the human captions, raw text (stripped), at least one


class DatasetError(ValueError):
    """A dataset that cannot be read; the message names the file (and line/entry) and the problem."""


@dataclass(frozen=True)
class _Row:
    image: str  # image name or relative path as written in the file
    caption: str
    where: str  # "line 7", "annotations[3]", ... for error messages
    split: str | None = None


def read_dataset(source: str | os.PathLike, *, split: str | None = None,
                 images_dir: str | os.PathLike | None = None, format: str = "auto",
                 check_images: bool = True) -> list[CaptionedImage]:
    """Read a captioned-image dataset; images in order of first appearance, captions in file order."""
    path = Path(source)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    if format != "auto" and format not in FORMATS:
        raise DatasetError(f"{path}: unknown format {format!r}; choose one of auto, {', '.join(FORMATS)}")
    root = Path(images_dir) if images_dir is not None else None
    fmt = _detect_format(path) if format == "auto" else format
    if fmt in ("json", "coco", "karpathy"):
        data = _load_json(path)
        fmt = _json_kind(path, data) if fmt == "json" else fmt
        rows, root = (_read_coco if fmt == "coco" else _read_karpathy)(path, data, split, root)
    else:
        rows, root = _TEXT_READERS[fmt](path, split, root)
    items = _group(rows, root)
    if not items:
        raise DatasetError(f"{path}: no captioned images" + (f" in split {split!r}" if split else ""))
    if check_images:
        missing = [str(item.image) for item in items if not item.image.is_file()]
        if missing:
            raise DatasetError(f"{path}: {len(missing)} of {len(items)} images not found, e.g. "
                               f"{', '.join(missing[:3])} (pass images_dir= or check_images=False)")
    return items


def _detect_format(path: Path) -> str:
    """Format from the file name and first line; "json" means COCO or Karpathy, decided after loading."""
    name = path.name.lower()
    if name.endswith((".json", ".jsonl")):
        return "jsonl" if name.endswith(".jsonl") else "json"
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        first = f.readline()
    if name.endswith(".csv"):
        header = [h.strip().lower() for h in next(csv.reader([first]), [])]
        return "flickr-csv" if header == ["image", "caption"] else "csv"
    if name.endswith((".token", ".token.txt")) or ("\t" in first and "#" in first.partition("\t")[0]):
        return "flickr-token"
    raise DatasetError(f"{path}: cannot detect the dataset format; pass format= one of {', '.join(FORMATS)}")


def _json_kind(path: Path, data: Any) -> str:
    images = data.get("images") if isinstance(data, dict) else None
    if isinstance(data, dict) and "annotations" in data:
        return "coco"
    if isinstance(images, list) and images and isinstance(images[0], dict) and "sentences" in images[0]:
        return "karpathy"
    raise DatasetError(f"{path}: neither a COCO caption file nor a Karpathy split file")


# ----------------------------------------------------------------------------- readers
# Each returns the rows (already filtered by split) and the directory image names are relative to.

def _read_flickr_csv(path: Path, split: str | None, root: Path | None) -> tuple[list[_Row], Path]:
    rows = _table_rows(path, _csv_records(path))
    return _flickr_split(path, rows, split), root or _first_dir(path.parent, ("images",))


def _read_flickr_token(path: Path, split: str | None, root: Path | None) -> tuple[list[_Row], Path]:
    rows = []
    for n, line in enumerate(_read_text(path).splitlines(), 1):
        if line.strip():
            key, tab, caption = line.partition("\t")
            if not tab:
                raise _error(path, f"line {n}", "expected 'name.jpg#n<TAB>caption'")
            rows.append(_row(path, f"line {n}", key.rsplit("#", 1)[0], caption))
    return _flickr_split(path, rows, split), root or _first_dir(path.parent, _FLICKR_IMAGE_DIRS)


def _read_csv(path: Path, split: str | None, root: Path | None) -> tuple[list[_Row], Path]:
    return _column_split(path, _table_rows(path, _csv_records(path)), split), root or path.parent


def _read_jsonl(path: Path, split: str | None, root: Path | None) -> tuple[list[_Row], Path]:
    records = []
    for n, line in enumerate(_read_text(path).splitlines(), 1):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise _error(path, f"line {n}", f"invalid JSON: {e.msg}") from None
            if not isinstance(record, dict):
                raise _error(path, f"line {n}", "expected a JSON object")
            records.append((f"line {n}", {str(k).lower(): v for k, v in record.items()}))
    return _column_split(path, _table_rows(path, records), split), root or path.parent


def _read_coco(path: Path, data: Any, split: str | None, root: Path | None) -> tuple[list[_Row], Path]:
    subset = path.stem[len("captions_"):] if path.stem.startswith("captions_") else None  # "train2017"
    if split is not None:
        name = subset.rstrip("0123456789") if subset else None
        if subset is None or _canon(split) not in (subset, _canon(name)):
            raise DatasetError(f"{path}: split {split!r} does not match this file's split {name!r} "
                               f"(a COCO caption file is one split; pass split=None)")
    files: dict[Any, str] = {}
    for i, image in enumerate(_get(path, "top level", data, "images", list)):
        image_id = _get(path, f"images[{i}]", image, "id", (int, str))
        files[image_id] = _get(path, f"images[{i}]", image, "file_name")
    captions: dict[Any, list[_Row]] = {image_id: [] for image_id in files}
    for i, ann in enumerate(_get(path, "top level", data, "annotations", list)):
        where = f"annotations[{i}]"
        image_id = _get(path, where, ann, "image_id", (int, str))
        if image_id not in files:
            raise _error(path, where, f"unknown image_id {image_id!r}")
        captions[image_id].append(_row(path, where, files[image_id], ann.get("caption")))
    for i, (image_id, rows) in enumerate(captions.items()):
        if not rows:
            raise _error(path, f"images[{i}]", f"image id {image_id!r} ({files[image_id]}) has no captions")
    rows = [row for rows in captions.values() for row in rows]
    return rows, root or (path.parent.parent / subset if subset else path.parent)


def _read_karpathy(path: Path, data: Any, split: str | None, root: Path | None) -> tuple[list[_Row], Path]:
    rows = []
    for i, image in enumerate(_get(path, "top level", data, "images", list)):
        where = f"images[{i}]"
        name = _get(path, where, image, "filename")
        folder = image.get("filepath") or ""
        sentences = _get(path, where, image, "sentences", list)
        if not sentences:
            raise _error(path, where, f"image {name!r} has no sentences")
        for j, sentence in enumerate(sentences):
            at = f"{where}.sentences[{j}]"
            rows.append(_row(path, at, f"{folder}/{name}" if folder else name,
                             _get(path, at, sentence, "raw"), image.get("split")))
    return _column_split(path, rows, split), root or path.parent


_TEXT_READERS = {"flickr-csv": _read_flickr_csv, "flickr-token": _read_flickr_token,
                 "csv": _read_csv, "jsonl": _read_jsonl}


# ----------------------------------------------------------------------------- helpers

def _error(path: Path, where: str, message: str) -> DatasetError:
    return DatasetError(f"{path}: {where}: {message}")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read: {e.strerror}") from None


def _load_json(path: Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise _error(path, f"line {e.lineno}", f"invalid JSON: {e.msg}") from None


def _get(path: Path, where: str, obj: Any, key: str, kind: type | tuple[type, ...] = str) -> Any:
    """``obj[key]`` checked to be a non-empty value of ``kind``."""
    value = obj.get(key) if isinstance(obj, dict) else None
    if value in (None, "") or isinstance(value, bool) or not isinstance(value, kind):
        raise _error(path, where, f"missing or invalid {key!r}")
    return value


def _row(path: Path, where: str, image: Any, caption: Any, split: Any = None) -> _Row:
    """A validated row: image name and caption must be non-empty text (not silently dropped)."""
    if not isinstance(image, str) or not image.strip():
        raise _error(path, where, f"missing image name: {image!r}")
    if not isinstance(caption, str):
        raise _error(path, where, f"caption is not text: {caption!r}")
    if not caption.strip():
        raise _error(path, where, "empty caption")
    split = split.strip() if isinstance(split, str) and split.strip() else None
    return _Row(image.strip(), caption.strip(), where, split)


def _csv_records(path: Path) -> list[tuple[str, dict[str, str]]]:
    """(``line n``, lower-cased header -> field) per row; the field count must match the header."""
    reader = csv.reader(io.StringIO(_read_text(path)))
    try:
        header = [h.strip().lower() for h in next(reader, [])]
        for keys, what in ((_IMAGE_KEYS, "image"), (_CAPTION_KEYS, "caption")):
            if not set(keys) & set(header):
                raise _error(path, "line 1", f"no {what} column ({'/'.join(keys)}) in header {header}")
        records, end = [], reader.line_num
        for fields in reader:
            start, end = end + 1, reader.line_num  # a quoted field may span lines
            if not any(x.strip() for x in fields):
                continue
            if len(fields) != len(header):
                raise _error(path, f"line {start}", f"expected {len(header)} fields ({','.join(header)}), "
                                                    f"got {len(fields)} (missing column or unquoted comma?)")
            records.append((f"line {start}", dict(zip(header, fields))))
        return records
    except csv.Error as e:
        raise _error(path, f"line {reader.line_num}", f"bad CSV: {e}") from None


def _table_rows(path: Path, records: list[tuple[str, dict[str, Any]]]) -> list[_Row]:
    """Rows from key -> value records (CSV rows, JSONL objects), using the column aliases."""
    rows = []
    for where, record in records:
        image_key = next((k for k in _IMAGE_KEYS if k in record), None)
        caption_key = next((k for k in _CAPTION_KEYS if k in record), None)
        if image_key is None or caption_key is None:
            raise _error(path, where, f"missing {'image' if image_key is None else 'caption'} field")
        rows.append(_row(path, where, record[image_key], record[caption_key], record.get("split")))
    return rows


def _canon(split: str | None) -> str | None:
    return "val" if split == "dev" else split


def _column_split(path: Path, rows: list[_Row], split: str | None) -> list[_Row]:
    """Select rows by their own split label; "train" includes "restval", "dev" means "val"."""
    if split is None:
        return rows
    labels = {row.split for row in rows if row.split}
    if not labels:
        raise DatasetError(f"{path}: rows have no split column/key, cannot select split {split!r}")
    wanted = {"train", "restval"} if split == "train" else {"val", "dev"} if _canon(split) == "val" else {split}
    if not wanted & labels:
        raise DatasetError(f"{path}: unknown split {split!r}; available: {', '.join(sorted(labels))}")
    return [row for row in rows if row.split in wanted]


def _split_files(split: str) -> list[str]:
    names = [split] + [s for s in ("dev", "val") if split in ("dev", "val") and s != split]
    return [f"{n}.txt" for n in names] + [_OFFICIAL_SPLITS[n] for n in names if n in _OFFICIAL_SPLITS]


def _flickr_split(path: Path, rows: list[_Row], split: str | None) -> list[_Row]:
    """Keep the rows of the images listed in the split file beside ``path`` (train.txt, ...)."""
    if split is None:
        return rows
    split_file = next((path.parent / f for f in _split_files(split) if (path.parent / f).is_file()), None)
    if split_file is None:
        available = [s for s in ("train", "dev", "val", "test")  # by own name only, no aliases
                     if any((path.parent / f).is_file() for f in (f"{s}.txt", _OFFICIAL_SPLITS.get(s, "")))]
        raise DatasetError(f"{path}: unknown split {split!r} (no {' or '.join(_split_files(split))} beside it); "
                           f"available: {', '.join(available) or 'none'}")
    names, keep = {row.image for row in rows}, set()
    for n, line in enumerate(_read_text(split_file).splitlines(), 1):
        if line.strip() and line.strip() not in names:
            raise _error(split_file, f"line {n}", f"image {line.strip()!r} has no captions in {path.name}")
        keep.add(line.strip())
    return [row for row in rows if row.image in keep]


def _first_dir(folder: Path, names: tuple[str, ...]) -> Path:
    return next((folder / n for n in names if (folder / n).is_dir()), folder)


def _group(rows: list[_Row], root: Path) -> list[CaptionedImage]:
    groups: dict[Path, list[str]] = {}
    for row in rows:
        groups.setdefault(Path(os.path.abspath(root / row.image)), []).append(row.caption)
    return [CaptionedImage(image, tuple(captions)) for image, captions in groups.items()]
