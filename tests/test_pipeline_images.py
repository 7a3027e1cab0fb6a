"""Batch captioning: input discovery, bad files, output formats, ordering, resume after a kill."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from pipelines.images import caption_images, write_records
from pipelines.images.cli import main
from pipelines.images.records import FIELDS, CaptionOptions, prepare_image
from pipelines.inputs import discover

GOOD = ["a.png", "b.JPG", "sub/c.webp", "sub/deeper/d.bmp", "sub/e.gif", "f.tiff"]
BAD = {"bad/empty.jpg": "empty", "bad/truncated.jpg": "truncated", "bad/text.jpg": "not an image",
       "bad/bomb.png": "too large"}
IGNORED = [".hidden.jpg", ".hiddendir/g.jpg", "notes.txt", "sub/readme.md"]
PROJECT = Path(__file__).resolve().parent.parent


def _save(path: Path, image: Image.Image, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kw)


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """Nested folders of good images (6 formats, an upper-case extension, a 2-frame GIF),
    broken files, a decompression bomb, and files that must be ignored."""
    root = tmp_path_factory.mktemp("library")
    sources = [skimage.data.chelsea(), skimage.data.astronaut()[::4, ::4], skimage.data.coffee()[::2, ::2],
               skimage.data.rocket()[::2, ::2], skimage.data.immunohistochemistry()[::4, ::4],
               np.dstack([skimage.data.camera()[::4, ::4]] * 3)]
    for name, arr in zip(GOOD, sources):
        image = Image.fromarray(arr)
        if name.endswith(".gif"):
            _save(root / name, image, save_all=True, append_images=[image.rotate(90)], duration=100)
        else:
            _save(root / name, image)
    jpeg = root / "b.JPG"
    (root / "bad").mkdir()
    (root / "bad/empty.jpg").write_bytes(b"")
    (root / "bad/truncated.jpg").write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    (root / "bad/text.jpg").write_text("this is not a picture\n")
    _save(root / "bad/bomb.png", Image.new("1", (12000, 12000)))  # 144 MP > the 120 MP limit, tiny on disk
    for name in IGNORED:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(jpeg.read_bytes())
    return root


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _cli(*args: str | Path, weights: Path) -> int:
    return main([str(a) for a in args] + ["--weights", str(weights)])


# -- inputs -----------------------------------------------------------------------------------
def test_discover_folders_globs_lists_hidden_and_duplicates(library, tmp_path):
    flat = discover([str(library)])
    assert [Path(p).name for p in flat.paths] == ["a.png", "b.JPG", "f.tiff"]
    deep = discover([str(library)], recursive=True)
    assert sorted(os.path.relpath(p, library) for p in deep.paths) == sorted(GOOD + list(BAD))
    assert not any("hidden" in p or p.endswith((".txt", ".md")) for p in deep.paths)
    globbed = discover([str(library / "sub" / "*"), str(library / "**" / "*.jpg")])
    assert [os.path.relpath(p, library) for p in globbed.paths] == [
        "sub/c.webp", "sub/deeper/d.bmp", "sub/e.gif", "bad/empty.jpg", "bad/text.jpg", "bad/truncated.jpg"]
    listed = discover([str(library / "a.png")], listed=[str(library / "f.tiff"), f"{library}/./a.png",
                                                        str(library / "missing.jpg")])
    assert listed.paths == [str(library / "a.png"), str(library / "f.tiff"), str(library / "missing.jpg")]
    nothing = discover([str(tmp_path / "nope"), str(tmp_path / "*.png")])
    assert nothing.paths == [] and len(nothing.warnings) == 2


# -- Python API -------------------------------------------------------------------------------
def test_caption_images_order_fields_and_errors(library, captioner):
    paths = [str(library / n) for n in ["bad/text.jpg", "f.tiff", "a.png", "nope.jpg", "sub/e.gif",
                                        "bad/bomb.png", "b.JPG", "bad/empty.jpg", "sub/c.webp",
                                        "bad/truncated.jpg", "sub/deeper/d.bmp"]]
    records = list(caption_images(paths, captioner, batch_size=3, workers=2, n_best=2, tags=3, beam_size=3))
    assert [r["path"] for r in records] == paths
    for r in records:
        assert tuple(r) == FIELDS
        assert r["model"] == "tiny_sat.test" and r["model_version"] == "0.0.1"
    good = {r["path"]: r for r in records if r["error"] is None}
    assert sorted(Path(p).name for p in good) == sorted(Path(n).name for n in GOOD)
    for path, r in good.items():
        with Image.open(path) as im:
            assert (r["width"], r["height"]) == im.size
        assert r["sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
        assert r["caption"] == captioner.caption(path, beam_size=3).text
        assert len(r["n_best"]) == 2 and r["n_best"][0]["text"] == r["caption"]
        assert [set(t) for t in r["tags"]] == [{"label", "probability"}] * 3
        assert r["tags"][0]["probability"] >= r["tags"][1]["probability"] > 0
    by_name = {Path(r["path"]).name: r for r in records}
    assert by_name["f.tiff"]["tags"][0]["label"] != by_name["a.png"]["tags"][0]["label"]  # real tags per image
    assert by_name["a.png"]["tags"][0]["label"] in {"tabby", "tiger cat", "Egyptian cat"}  # chelsea is a cat
    assert "file not found" in by_name["nope.jpg"]["error"] and by_name["nope.jpg"]["sha256"] is None
    for name, why in BAD.items():
        r = by_name[Path(name).name]
        assert r["caption"] is None and r["tags"] is None and r["n_best"] is None
        assert r["error"].startswith(str(library / name) + ": ") and why in r["error"], r["error"]
        assert "\n" not in r["error"]


def test_prepare_image_uses_the_first_gif_frame(library, captioner):
    path = library / "sub/e.gif"
    p = prepare_image(str(path), captioner.preprocessing)
    with Image.open(path) as gif:
        assert gif.n_frames == 2
        first = captioner.preprocessing.to_array(gif.convert("RGB"))
        gif.seek(1)
        second = captioner.preprocessing.to_array(gif.convert("RGB"))
    assert p.pixels.shape == (224, 224, 3) and p.pixels.dtype == np.uint8
    assert np.array_equal(p.pixels, first) and not np.array_equal(p.pixels, second)


def test_unreadable_file_is_an_error_record(library, monkeypatch, captioner):
    path = library / "a.png"
    real = os.open

    def deny(name, *args, **kwargs):  # tests run as root, so chmod would not deny anything
        if str(name) == str(path):
            raise PermissionError(13, "Permission denied", str(name))
        return real(name, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    p = prepare_image(str(path), captioner.preprocessing)
    assert p.error == f"{path}: permission denied" and p.pixels is None
    assert prepare_image(str(library / "f.tiff"), captioner.preprocessing).error is None


def test_write_records_jsonl_and_csv(library, tmp_path, captioner):
    records = list(caption_images([library / "a.png", library / "bad/text.jpg"], captioner, n_best=2))
    assert records == list(caption_images([library / "a.png", library / "bad/text.jpg"], captioner,
                                          CaptionOptions(n_best=2)))
    write_records(iter(records), tmp_path / "r.jsonl")
    write_records(records, tmp_path / "r.csv")
    assert _lines(tmp_path / "r.jsonl") == records
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == [r["path"] for r in records]
    assert json.loads(rows[0]["n_best"]) == records[0]["n_best"] and rows[1]["error"] == records[1]["error"]


# -- CLI outputs ------------------------------------------------------------------------------
def test_cli_jsonl_summary_and_strict(library, tmp_path, tiny_bundle_dir, capsys):
    out = tmp_path / "out" / "captions.jsonl"
    assert _cli(library, "-r", "--out", out, "--batch-size", "4", "--tags", "2", weights=tiny_bundle_dir) == 0
    records = _lines(out)
    assert [r["path"] for r in records] == discover([str(library)], recursive=True).paths
    assert sum(r["error"] is None for r in records) == len(GOOD)
    err = capsys.readouterr().err
    assert f"captioned {len(GOOD)}, skipped 0 (already done), failed {len(BAD)}" in err
    assert all(f"{library / name}: " in err for name in BAD)  # one line per bad file
    # re-run: the captioned images are done, the failed ones are tried again; their new
    # records replace the old ones (one record per image)
    assert _cli(library, "-r", "--out", out, "--tags", "2", weights=tiny_bundle_dir) == 0
    again = _lines(out)
    assert len(again) == len(records) and sorted(r["path"] for r in again) == sorted(r["path"] for r in records)
    assert again[:len(GOOD)] == [r for r in records if r["error"] is None]  # kept as they were, in front
    err = capsys.readouterr().err
    assert f"captioned 0, skipped {len(GOOD)} (already done), failed {len(BAD)}" in err
    # other options than the records': refused, naming the difference, the file untouched
    assert _cli(library, "-r", "--out", out, weights=tiny_bundle_dir) == 2
    assert "were made with other settings: options.tags 2 (this run: 5)" in capsys.readouterr().err
    assert _lines(out) == again
    # --overwrite starts over; --strict fails when something failed
    assert _cli(library, "-r", "--out", out, "--overwrite", "--strict", weights=tiny_bundle_dir) == 1
    assert len(_lines(out)) == len(records)
    assert _cli(library / "a.png", library / "f.tiff", "--out", tmp_path / "ok.jsonl", "--strict",
                weights=tiny_bundle_dir) == 0


def test_cli_csv_and_resume(library, tmp_path, tiny_bundle_dir, capsys):
    out = tmp_path / "captions.csv"
    assert _cli(library / "a.png", library / "bad/text.jpg", "--out", out, "--n-best", "2",
                weights=tiny_bundle_dir) == 0
    assert _cli(library, "-r", "--out", out, "--n-best", "2", weights=tiny_bundle_dir) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == FIELDS
    assert len(rows) == len(GOOD) + len(BAD) and len({r["path"] for r in rows}) == len(rows)
    first = rows[0]
    assert first["path"] == str(library / "a.png") and len(json.loads(first["n_best"])) == 2
    assert len(json.loads(first["tags"])) == 5 and int(first["width"]) == 451
    assert first["format_version"] == "4" and first["real_path"] == os.path.realpath(library / "a.png")
    assert json.loads(first["options"]) == {"beam_size": 3, "max_length": 12, "min_length": 0, "length_penalty": 0.0,
                                            "no_repeat_ngram_size": 0, "no_repeat_words": False,
                                            "no_dangling_end": False, "n_best": 2, "tags": 5,
                                            "min_tag_probability": 0.0, "exclude_tags": [],
                                            "min_confidence": 0.0, "precision": "fp32"}  # all in effect
    text = next(r for r in rows if r["path"].endswith("text.jpg"))  # failed before: tried again, one row
    assert text["caption"] == "" and "not an image" in text["error"]
    assert "skipped 1 (already done)" in capsys.readouterr().err
    with open(out, "a") as f:  # a row cut off by a kill
        f.write(f"2,{library / 'f.tiff'},a half writ")
    assert _cli(library, "-r", "--out", out, "--n-best", "2", weights=tiny_bundle_dir) == 0
    with open(out, newline="") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    assert "removed an incomplete last record" in capsys.readouterr().err


def test_cli_sidecars_with_prefix_suffix(library, tmp_path, tiny_bundle_dir, capsys):
    folder = tmp_path / "photos"
    for name in ["a.png", "sub/c.webp", "bad/text.jpg"]:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes((library / name).read_bytes())
    out = tmp_path / "log.jsonl"
    assert _cli(folder, "-r", "--sidecar", ".txt", "--prefix", "photo of ", "--suffix", ", best quality",
                "--out", out, weights=tiny_bundle_dir) == 0
    for r in _lines(out):
        sidecar = Path(r["path"]).with_suffix(".txt")
        if r["error"] is None:
            assert sidecar.read_text() == f"photo of {r['caption']}, best quality\n"
        else:
            assert not sidecar.exists()
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == [
        "a.png", "a.txt", "c.txt", "c.webp", "text.jpg"]  # no temp files left behind
    capsys.readouterr()
    # sidecars only: an image with a sidecar is done; the failed one is tried again
    (folder / "a.txt").unlink()
    assert _cli(folder, "-r", "--sidecar", "txt", weights=tiny_bundle_dir) == 0
    assert "captioned 1, skipped 1 (already done), failed 1" in capsys.readouterr().err
    assert (folder / "a.txt").read_text().strip() == _lines(out)[0]["caption"]


def test_cli_stdout_and_usage_errors(library, tmp_path, tiny_bundle_dir, capsys):
    assert _cli(library / "a.png", "--tags", "0", weights=tiny_bundle_dir) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["path"] == str(library / "a.png") and record["tags"] == [] and record["caption"] is not None
    assert _cli(tmp_path / "empty-folder-*", weights=tiny_bundle_dir) == 2
    assert "no images found" in capsys.readouterr().err
    assert main([str(library / "a.png"), "--weights", str(tmp_path / "no-bundle")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("caption-images: ") and "no-bundle" in err[0]
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main([str(library / "a.png"), "--n-best", "-1", "--beam-size", "0"])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().endswith("error: --beam-size must be >= 1; --n-best must be >= 0")
    bad = tmp_path / "foreign.jsonl"
    bad.write_text('{"path": "x.jpg"}\nnot json\n{"path": "y.jpg"}\n')
    assert _cli(library / "a.png", "--out", bad, weights=tiny_bundle_dir) == 2
    assert "line 2 is not a JSON record" in capsys.readouterr().err


# -- resume -----------------------------------------------------------------------------------
def test_resume_repairs_a_cut_off_jsonl_line(library, tmp_path, tiny_bundle_dir, capsys):
    out = tmp_path / "captions.jsonl"
    assert _cli(library / "a.png", library / "f.tiff", "--out", out, weights=tiny_bundle_dir) == 0
    whole = out.read_text()
    out.write_text(whole + whole.splitlines()[0][:-30].replace("a.png", "b.JPG"))  # no newline: cut by a kill
    assert _cli(library, "--out", out, weights=tiny_bundle_dir) == 0
    records = _lines(out)  # every line is valid JSON again
    assert [Path(r["path"]).name for r in records] == ["a.png", "f.tiff", "b.JPG"]
    err = capsys.readouterr().err
    assert "removed an incomplete last record (line 3" in err and "skipped 2 (already done)" in err


def _make_photos(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    base = skimage.data.coffee()[::2, ::2]
    paths = []
    for i in range(n):
        path = folder / f"sub{i % 3}" / f"img{i:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        noisy = np.clip(base.astype(np.int16) + rng.integers(-40, 40, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(path, quality=90)
        paths.append(path)
    return paths


def test_resume_after_sigkill_captions_every_image_exactly_once(tmp_path, tiny_bundle_dir):
    photos = _make_photos(tmp_path / "photos", 60)
    out = tmp_path / "captions.jsonl"
    cmd = [sys.executable, "-m", "pipelines.images", str(tmp_path / "photos"), "--recursive", "--out", str(out),
           "--batch-size", "4", "--workers", "1", "--weights", str(tiny_bundle_dir)]
    proc = subprocess.Popen(cmd, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if out.exists() and out.read_bytes().count(b"\n") >= 8:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = out.read_bytes().count(b"\n")
    assert 8 <= done < len(photos)
    with open(out, "a") as f:
        f.write('{"path": "' + str(photos[-1])[:-5])  # a line cut off mid-record
    assert main(cmd[3:] + ["--batch-size", "16"]) == 0  # resuming does not depend on the batch size
    records = _lines(out)
    assert sorted(r["path"] for r in records) == sorted(map(str, photos))  # each exactly once
    assert all(r["error"] is None and r["caption"] is not None for r in records)


def test_cli_takes_the_decoding_flags_every_tool_shares(library, tmp_path, tiny_bundle_dir, captioner, capsys):
    out, path = tmp_path / "c.jsonl", library / "a.png"
    assert _cli(path, "--out", out, "--max-length", "4", "--length-penalty", "1.0", "--no-repeat-words", "1",
                weights=tiny_bundle_dir) == 0
    (record,) = _lines(out)
    expected = captioner.caption(str(path), max_length=4, length_penalty=1.0, no_repeat_words=True).text
    assert record["caption"] == expected and len(expected.split()) <= 4
    assert {k: record["options"][k] for k in ("max_length", "length_penalty", "no_repeat_words")} == {
        "max_length": 4, "length_penalty": 1.0, "no_repeat_words": True}
    capsys.readouterr()
    assert _cli(path, "--out", out, "--max-length", "4", "--length-penalty", "0.5", "--no-repeat-words", "1",
                weights=tiny_bundle_dir) == 2
    assert "options.length_penalty 1.0 (this run: 0.5)" in capsys.readouterr().err
