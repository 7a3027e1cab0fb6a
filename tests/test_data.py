"""Dataset readers: every supported format gives the same (image, captions) records; bad input is a clear error."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from captioning.training.data import CaptionedImage, DatasetError, read_dataset

TRICKY = 'A dog, "Rex", runs on the grass .'  # comma and quotes: must survive CSV quoting


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (2, 2), (200, 30, 30)).save(path)


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *rows])
    return path


def _lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _pairs(items: list[CaptionedImage], root: Path) -> list[tuple[str, tuple[str, ...]]]:
    return [(item.image.relative_to(root).as_posix(), item.captions) for item in items]


# Interleaved rows: b first, then a, then b again, then c -> order b, a, c; b's captions in file order.
ROWS = [["b.png", TRICKY], ["a.png", "a cat sits"], ["b.png", "  a dog again  "], ["c.png", "two birds"]]
EXPECTED = [("b.png", (TRICKY, "a dog again")), ("a.png", ("a cat sits",)), ("c.png", ("two birds",))]


@pytest.fixture
def flickr(tmp_path: Path) -> Path:
    """Flickr layout: captions.csv + Flickr8k.token.txt + images/ + split files."""
    for name in "abc":
        _png(tmp_path / "images" / f"{name}.png")
    _csv(tmp_path / "captions.csv", ["image", "caption"], ROWS)
    _lines(tmp_path / "Flickr8k.token.txt", [f"{img}#{i}\t{cap}" for i, (img, cap) in enumerate(ROWS)])
    _lines(tmp_path / "train.txt", ["b.png", "c.png", ""])
    _lines(tmp_path / "dev.txt", ["a.png"])
    return tmp_path


@pytest.fixture
def coco(tmp_path: Path) -> Path:
    for name in ("1.png", "2.png"):
        _png(tmp_path / "val2017" / name)
    data = {"info": {}, "images": [{"id": 7, "file_name": "1.png"}, {"id": 3, "file_name": "2.png"}],
            "annotations": [{"id": 1, "image_id": 3, "caption": "second image"},
                            {"id": 2, "image_id": 7, "caption": TRICKY},
                            {"id": 3, "image_id": 3, "caption": "second image again\n"}]}
    path = tmp_path / "annotations" / "captions_val2017.json"
    path.parent.mkdir()
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def karpathy(tmp_path: Path) -> Path:
    images = []
    for i, split in enumerate(["train", "restval", "val", "test", "train"]):
        _png(tmp_path / "coco" / f"dir{i % 2}" / f"{i}.png")
        images.append({"filepath": f"dir{i % 2}", "filename": f"{i}.png", "split": split,
                       "sentences": [{"raw": f"image {i} one", "tokens": []}, {"raw": f"image {i} two "}]})
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps({"images": images, "dataset": "coco"}))
    return path


# ----------------------------------------------------------------------------- readers

@pytest.mark.parametrize("name", ["captions.csv", "Flickr8k.token.txt"])
def test_flickr_reads_in_order(flickr, name):
    items = read_dataset(flickr / name)
    assert _pairs(items, flickr / "images") == EXPECTED
    assert all(item.image.is_absolute() for item in items)


@pytest.mark.parametrize("name", ["captions.csv", "Flickr8k.token.txt"])
def test_flickr_splits(flickr, name):
    assert [i.image.name for i in read_dataset(flickr / name, split="train")] == ["b.png", "c.png"]
    assert [i.image.name for i in read_dataset(flickr / name, split="dev")] == ["a.png"]
    assert [i.image.name for i in read_dataset(flickr / name, split="val")] == ["a.png"]


def test_flickr_official_split_file_names(flickr):
    (flickr / "train.txt").rename(flickr / "Flickr_8k.trainImages.txt")
    _lines(flickr / "Flickr_8k.testImages.txt", ["c.png"])
    assert [i.image.name for i in read_dataset(flickr / "captions.csv", split="train")] == ["b.png", "c.png"]
    assert [i.image.name for i in read_dataset(flickr / "captions.csv", split="test")] == ["c.png"]


def test_flickr_images_dir_default_fallback_and_override(flickr, tmp_path):
    for name in "abc":  # images beside the csv, no images/ folder
        (flickr / "images" / f"{name}.png").rename(flickr / f"{name}.png")
    (flickr / "images").rmdir()
    assert _pairs(read_dataset(flickr / "captions.csv"), flickr) == EXPECTED
    other = tmp_path / "elsewhere"
    for name in "abc":
        _png(other / f"{name}.png")
    assert _pairs(read_dataset(flickr / "captions.csv", images_dir=other), other) == EXPECTED


def test_flickr_token_default_images_dir(flickr):
    (flickr / "images").rename(flickr / "Flicker8k_Dataset")
    assert _pairs(read_dataset(flickr / "Flickr8k.token.txt"), flickr / "Flicker8k_Dataset") == EXPECTED


def test_coco(coco):
    items = read_dataset(coco)  # images dir defaults to <root>/val2017
    assert _pairs(items, coco.parent.parent / "val2017") == [
        ("1.png", (TRICKY,)), ("2.png", ("second image", "second image again"))]
    assert read_dataset(coco, split="val") == read_dataset(coco, split="dev") == items


def test_coco_images_dir_override(coco, tmp_path):
    (tmp_path / "val2017").rename(tmp_path / "pics")
    assert len(read_dataset(coco, images_dir=tmp_path / "pics")) == 2


def test_karpathy_splits(karpathy):
    root = karpathy.parent / "coco"
    items = read_dataset(karpathy, images_dir=root)
    assert _pairs(items, root)[:2] == [("dir0/0.png", ("image 0 one", "image 0 two")),
                                       ("dir1/1.png", ("image 1 one", "image 1 two"))]
    assert len(items) == 5
    names = lambda split: [i.image.name for i in read_dataset(karpathy, images_dir=root, split=split)]  # noqa: E731
    assert names("train") == ["0.png", "1.png", "4.png"]  # restval counts as train
    assert names("val") == names("dev") == ["2.png"]
    assert names("test") == ["3.png"]
    assert names("restval") == ["1.png"]


def test_generic_csv_aliases_grouping_and_split(tmp_path):
    _png(tmp_path / "pics" / "x.png")
    _png(tmp_path / "y.png")
    path = _csv(tmp_path / "mine.csv", ["ID", "Path", "Text", "Split"],
                [["1", "pics/x.png", "first", "train"], ["2", str(tmp_path / "y.png"), TRICKY, "test"],
                 ["3", "pics/x.png", "second", "train"]])
    assert _pairs(read_dataset(path), tmp_path) == [("pics/x.png", ("first", "second")), ("y.png", (TRICKY,))]
    assert _pairs(read_dataset(path, split="test"), tmp_path) == [("y.png", (TRICKY,))]


def test_jsonl_aliases_and_split(tmp_path):
    _png(tmp_path / "x.png")
    _png(tmp_path / "y.png")
    path = _lines(tmp_path / "data.jsonl", [
        json.dumps({"image": "y.png", "caption": TRICKY, "split": "val"}), "",
        json.dumps({"file": "x.png", "text": "an x", "split": "train"}),
        json.dumps({"Image": "y.png", "Caption": "a y", "split": "val"})])
    assert _pairs(read_dataset(path), tmp_path) == [("y.png", (TRICKY, "a y")), ("x.png", ("an x",))]
    assert _pairs(read_dataset(path, split="dev"), tmp_path) == [("y.png", (TRICKY, "a y"))]


# ----------------------------------------------------------------------------- detection

def test_auto_detection_matches_forced_format(flickr, coco, karpathy):
    cases = [(flickr / "captions.csv", "flickr-csv"), (flickr / "Flickr8k.token.txt", "flickr-token"),
             (coco, "coco"), (karpathy, "karpathy")]
    for path, fmt in cases:
        kw = {"images_dir": karpathy.parent / "coco"} if fmt == "karpathy" else {}
        assert read_dataset(path, **kw) == read_dataset(path, format=fmt, **kw)


def test_detection_by_content(flickr, coco, karpathy, tmp_path):
    token = (flickr / "Flickr8k.token.txt").rename(flickr / "captions.txt")  # no telling name
    assert _pairs(read_dataset(token), flickr / "images") == EXPECTED
    for src, name in ((coco, "coco_caps.json"), (karpathy, "splits.json")):
        moved = src.rename(src.parent / name)
        assert read_dataset(moved, check_images=False)
    (flickr / "captions.csv").rename(flickr / "generic.csv")  # image,caption header in any .csv
    assert _pairs(read_dataset(flickr / "generic.csv"), flickr / "images") == EXPECTED


# ----------------------------------------------------------------------------- errors

def _raises(match: str, source: Path, **kw) -> str:
    with pytest.raises(DatasetError) as info:
        read_dataset(source, **kw)
    message = str(info.value)
    assert "\n" not in message and match in message, message
    return message


def test_empty_caption_names_file_and_line(flickr):
    _csv(flickr / "captions.csv", ["image", "caption"], [["a.png", "ok"], ["b.png", "   "]])
    _raises("captions.csv: line 3: empty caption", flickr / "captions.csv")
    _lines(flickr / "Flickr8k.token.txt", ["a.png#0\tok", "b.png#0\t "])
    _raises("Flickr8k.token.txt: line 2: empty caption", flickr / "Flickr8k.token.txt")


def test_csv_row_missing_column(tmp_path):
    _lines(tmp_path / "captions.csv", ["image,caption", "a.png,fine", "b.png"])
    _raises("captions.csv: line 3: expected 2 fields", tmp_path / "captions.csv")


def test_csv_header_without_caption_column(tmp_path):
    _lines(tmp_path / "mine.csv", ["image,label", "a.png,dog"])
    _raises("mine.csv: line 1: no caption column", tmp_path / "mine.csv")


def test_token_line_without_tab(flickr):
    _lines(flickr / "Flickr8k.token.txt", ["a.png#0\tok", "b.png#0 no tab here"])
    _raises("Flickr8k.token.txt: line 2", flickr / "Flickr8k.token.txt")


def test_jsonl_bad_line_and_missing_key(tmp_path):
    path = _lines(tmp_path / "data.jsonl", ['{"image": "a.png", "caption": "ok"}', '{"image": "b.png",'])
    _raises("data.jsonl: line 2: invalid JSON", path)
    _lines(path, ['{"image": "a.png", "caption": "ok"}', '{"image": "b.png"}'])
    _raises("data.jsonl: line 2: missing caption", path)


def test_coco_unknown_image_id(coco):
    data = json.loads(coco.read_text())
    data["annotations"].append({"id": 9, "image_id": 42, "caption": "orphan"})
    coco.write_text(json.dumps(data))
    _raises("captions_val2017.json: annotations[3]: unknown image_id 42", coco)


def test_coco_split_must_match_file(coco):
    _raises("captions_val2017.json: split 'train' does not match", coco, split="train")


def test_karpathy_empty_raw(karpathy):
    data = json.loads(karpathy.read_text())
    data["images"][2]["sentences"][1]["raw"] = " "
    karpathy.write_text(json.dumps(data))
    _raises("dataset_coco.json: images[2].sentences[1]: empty caption", karpathy, check_images=False)


def test_missing_images_counted_with_first_three(flickr):
    for name in "abc":
        (flickr / "images" / f"{name}.png").unlink()
    message = _raises("captions.csv: 3 of 3 images not found", flickr / "captions.csv")
    assert all(str(flickr / "images" / f"{n}.png") in message for n in "bac")
    assert len(read_dataset(flickr / "captions.csv", check_images=False)) == 3


def test_split_file_image_without_captions(flickr):
    _lines(flickr / "dev.txt", ["a.png", "zzz.png"])
    _raises("dev.txt: line 2: image 'zzz.png' has no captions", flickr / "captions.csv", split="dev")


def test_unknown_split_lists_available(flickr, karpathy):
    message = _raises("captions.csv: unknown split 'test'", flickr / "captions.csv", split="test")
    assert "available: train, dev" in message
    message = _raises("dataset_coco.json: unknown split 'holdout'", karpathy, split="holdout")
    assert "available: restval, test, train, val" in message


def test_split_needs_split_column(tmp_path):
    _png(tmp_path / "x.png")
    _csv(tmp_path / "mine.csv", ["path", "text"], [["x.png", "an x"]])
    _raises("mine.csv: rows have no split column", tmp_path / "mine.csv", split="train")


def test_bad_source_and_format(tmp_path, flickr):
    _raises("nope.csv: no such file", tmp_path / "nope.csv")
    _raises("unknown format 'tsv'", flickr / "captions.csv", format="tsv")
    _raises("captions.csv: line 1: invalid JSON", flickr / "captions.csv", format="coco")
    _raises("notes.txt: cannot detect", _lines(tmp_path / "notes.txt", ["hello"]))
