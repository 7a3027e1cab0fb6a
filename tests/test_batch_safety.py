"""caption-images on awkward inputs: nothing it is fed may destroy data, hang it or crash it.

Each test builds its awkward files (symlink loops, FIFOs, deep trees, colliding names, a
locked output, a killed run's leftovers) in tmp_path. Anything that could hang on a broken
implementation runs in a subprocess with a timeout.
"""
from __future__ import annotations

import csv
import errno
import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import skimage.data
from PIL import Image

from pipelines.files import VIDEO_EXTENSIONS
from pipelines.images.cli import main
from pipelines.images.outputs import JsonlOutput
from pipelines.inputs import discover

PROJECT = Path(__file__).resolve().parent.parent
PHOTOS = {"cat": skimage.data.chelsea()[::3, ::3], "coffee": skimage.data.coffee()[::3, ::3],
          "rocket": skimage.data.rocket()[::3, ::3], "astronaut": skimage.data.astronaut()[::4, ::4]}


def _photo(path: Path, which: str = "cat") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(PHOTOS[which]).save(path)
    return path


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _cli(*args: str | Path, weights: Path) -> int:
    return main([str(a) for a in args] + ["--weights", str(weights)])


def _subprocess(args: list[str | Path], weights: Path, *, timeout: float = 120, cwd: Path = PROJECT):
    cmd = [sys.executable, "-m", "pipelines.images", *map(str, args), "--weights", str(weights)]
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- 1, 2: sidecars never destroy photos or each other ------------------------------------------
@pytest.mark.parametrize("extension", [".jpg", "png", ".JPEG", ".mp4", ".webp"])
def test_sidecar_with_an_image_or_video_extension_is_refused(tmp_path, tiny_bundle_dir, capsys, extension):
    photos = [_photo(tmp_path / "d" / "a.jpg"), _photo(tmp_path / "d" / "a.png", "coffee")]
    before = [p.read_bytes() for p in photos]
    with pytest.raises(SystemExit) as e:
        _cli(tmp_path / "d", "--sidecar", extension, "--out", tmp_path / "o.jsonl", weights=tiny_bundle_dir)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "image or video extension" in err and "sidecars would replace photos" in err
    assert [p.read_bytes() for p in photos] == before and not (tmp_path / "o.jsonl").exists()


def test_sidecar_that_would_be_the_input_itself_is_refused(tmp_path, tiny_bundle_dir, capsys):
    odd = tmp_path / "scan.dat"
    odd.write_bytes((_photo(tmp_path / "x.png")).read_bytes())  # an image under another extension
    before = odd.read_bytes()
    assert _cli(odd, "--sidecar", ".dat", weights=tiny_bundle_dir) == 2
    assert "its --sidecar .dat file would be the input itself" in capsys.readouterr().err
    assert odd.read_bytes() == before


def test_existing_files_of_the_user_are_never_replaced_by_sidecars(tmp_path, tiny_bundle_dir, capsys):
    folder = tmp_path / "photos"
    _photo(folder / "a.png")
    _photo(folder / "b.png", "coffee")
    (folder / "a.txt").write_text("my own caption, written by hand\n")
    out = tmp_path / "log.jsonl"
    assert _cli(folder, "--sidecar", ".txt", "--out", out, weights=tiny_bundle_dir) == 0
    assert (folder / "a.txt").read_text() == "my own caption, written by hand\n"
    assert f"{folder / 'a.txt'}: exists and was not written by caption-images; left as it is" in capsys.readouterr().err
    b = {r["path"]: r for r in _lines(out)}[str(folder / "b.png")]
    assert (folder / "b.txt").read_text() == b["caption"] + "\n"
    # --overwrite rewrites the sidecars this tool wrote (b.txt, even when changed by nobody) but not a.txt
    assert _cli(folder, "--sidecar", ".txt", "--prefix", "photo of ", "--out", out, "--overwrite",
                weights=tiny_bundle_dir) == 0
    assert (folder / "b.txt").read_text() == f"photo of {b['caption']}\n"
    assert (folder / "a.txt").read_text() == "my own caption, written by hand\n"
    # a sidecar edited by the user after it was written is theirs now
    (folder / "b.txt").write_text("edited\n")
    assert _cli(folder, "--sidecar", ".txt", "--out", out, "--overwrite", weights=tiny_bundle_dir) == 0
    assert (folder / "b.txt").read_text() == "edited\n"


def test_colliding_stems_get_one_sidecar_each(tmp_path, tiny_bundle_dir, capsys):
    folder = tmp_path / "photos"
    for ext, which in ((".bmp", "cat"), (".tiff", "coffee"), (".webp", "rocket")):
        _photo(folder / f"image{ext}", which)
    _photo(folder / "lone.png", "astronaut")
    out = tmp_path / "log.jsonl"
    assert _cli(folder, "--sidecar", ".txt", "--out", out, weights=tiny_bundle_dir) == 0
    records = {Path(r["path"]).name: r for r in _lines(out)}
    expected = {"image.bmp": "image.bmp.txt", "image.tiff": "image.tiff.txt", "image.webp": "image.webp.txt",
                "lone.png": "lone.txt"}  # the kohya/TagGUI stem.txt where it is unambiguous
    for image, sidecar in expected.items():
        assert (folder / sidecar).read_text() == records[image]["caption"] + "\n"
    assert not (folder / "image.txt").exists()
    capsys.readouterr()
    assert _cli(folder, "--sidecar", ".txt", weights=tiny_bundle_dir) == 0  # sidecars only: all four are done
    assert "captioned 0, skipped 4 (already done)" in capsys.readouterr().err


# -- 3: one run per output file; photos known by their real path -----------------------------------
def test_a_second_run_into_a_locked_output_refuses(tmp_path, tiny_bundle_dir, capsys):
    _photo(tmp_path / "p" / "a.png")
    out = tmp_path / "captions.jsonl"
    out.write_text("")
    with open(out, "ab") as held:  # what a first run does while it writes
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert _cli(tmp_path / "p", "--out", out, weights=tiny_bundle_dir) == 2
        assert "another caption-images run is writing to this file" in capsys.readouterr().err
        assert out.read_text() == ""
    assert _cli(tmp_path / "p", "--out", out, weights=tiny_bundle_dir) == 0  # once it is done
    assert len(_lines(out)) == 1


def test_resume_knows_photos_by_their_real_path(tmp_path, tiny_bundle_dir, capsys, monkeypatch):
    photos = [_photo(tmp_path / "lib" / f"{w}.png", w) for w in ("cat", "coffee")]
    (tmp_path / "link").symlink_to(tmp_path / "lib")
    out = tmp_path / "captions.jsonl"
    assert _cli(tmp_path / "lib", "--out", out, weights=tiny_bundle_dir) == 0
    first = _lines(out)
    assert [r["real_path"] for r in first] == [os.path.realpath(p) for p in photos]
    assert all(r["format_version"] == 4 for r in first)
    capsys.readouterr()
    monkeypatch.chdir(tmp_path / "lib")  # relative paths from elsewhere, through a symlinked folder
    assert _cli(".", "--out", out, weights=tiny_bundle_dir) == 0
    assert _cli(tmp_path / "link", "cat.png", "--out", out, weights=tiny_bundle_dir) == 0
    assert "skipped 2 (already done)" in capsys.readouterr().err
    assert _lines(out) == first
    # records keep the path as given
    assert _cli("../lib/../lib/cat.png", "--out", tmp_path / "rel.jsonl", weights=tiny_bundle_dir) == 0
    (record,) = _lines(tmp_path / "rel.jsonl")
    assert record["path"] == "../lib/../lib/cat.png" and record["real_path"] == os.path.realpath(photos[0])


# -- 4, 5, 6: discovery and reading never hang --------------------------------------------------
def test_symlink_loops_give_each_photo_once(tmp_path):
    _photo(tmp_path / "l" / "a.jpg")
    _photo(tmp_path / "l" / "sub" / "b.jpg", "coffee")
    os.symlink(".", tmp_path / "l" / "s1")
    os.chdir(tmp_path)
    try:
        assert discover(["l/**/*.jpg"]).paths == ["l/a.jpg", "l/sub/b.jpg"]
        assert discover(["l"], recursive=True).paths == ["l/a.jpg", "l/sub/b.jpg"]
    finally:
        os.chdir(PROJECT)


def test_several_symlink_loops_do_not_hang_discovery(tmp_path, tiny_bundle_dir):
    _photo(tmp_path / "l" / "a.jpg")
    os.symlink(".", tmp_path / "l" / "s1")
    os.symlink(".", tmp_path / "l" / "s2")
    (tmp_path / "l" / "sub").mkdir()
    os.symlink("..", tmp_path / "l" / "sub" / "s3")
    try:
        run = _subprocess(["l/**/*.jpg", "--out", tmp_path / "o.jsonl"], tiny_bundle_dir, timeout=60, cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail("discovery hung on symlink loops")
    assert run.returncode == 0, run.stderr
    assert [r["path"] for r in _lines(tmp_path / "o.jsonl")] == ["l/a.jpg"]


def test_fifo_device_and_oversized_files_are_one_line_errors(tmp_path, tiny_bundle_dir):
    folder = tmp_path / "d"
    _photo(folder / "a.png")
    os.mkfifo(folder / "f.jpg")
    os.symlink("/dev/zero", folder / "z.jpg")
    with open(folder / "huge.png", "wb") as f:  # sparse: 513 MB that take no disk
        f.truncate(513 * 2**20)
    try:
        run = _subprocess([folder, "--out", tmp_path / "o.jsonl"], tiny_bundle_dir, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("caption-images hung on a FIFO or /dev/zero")
    assert run.returncode == 0, run.stderr
    records = {Path(r["path"]).name: r for r in _lines(tmp_path / "o.jsonl")}
    assert records["a.png"]["error"] is None and records["a.png"]["caption"] is not None
    assert records["f.jpg"]["error"] == f"{folder / 'f.jpg'}: not a regular file (a named pipe)"
    assert records["z.jpg"]["error"] == f"{folder / 'z.jpg'}: not a regular file (a character device)"
    assert records["huge.png"]["error"] == f"{folder / 'huge.png'}: file too large (513 MB; the limit is 512 MB)"
    assert "captioned 1, skipped 0 (already done), failed 3" in run.stderr


@pytest.fixture
def deep_tree(tmp_path):
    """A chain of 1,100 folders, made and removed one by one (Path.mkdir(parents=True) and
    shutil.rmtree, which pytest's own clean-up uses, both recurse and would fail on it)."""
    chain = [tmp_path / "tree"]
    for _ in range(1100):
        chain.append(chain[-1] / "d")
    for folder in chain:
        folder.mkdir()
    yield chain[-1]
    for folder in reversed(chain):
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()


def test_a_very_deep_tree_is_walked_without_recursion(tmp_path, deep_tree):
    photo = _photo(deep_tree / "bottom.png")
    (deep_tree / "clip.mp4").write_bytes(b"not really a video")
    assert discover([str(tmp_path / "tree")], recursive=True, extensions=VIDEO_EXTENSIONS).paths == \
        [str(deep_tree / "clip.mp4")]
    assert discover([str(tmp_path / "tree")], recursive=True).paths == [str(photo)]
    assert discover([str(tmp_path / "tree" / "**" / "*.png")]).paths == [str(photo)]


# -- 12, 13, 14: resume ---------------------------------------------------------------------------
def test_failures_are_retried_and_other_models_refused(tmp_path, tiny_bundle_dir, capsys):
    listed = tmp_path / "list.txt"
    later = tmp_path / "later.png"
    listed.write_text(f"{_photo(tmp_path / 'a.png')}\n{later}\n")
    out = tmp_path / "captions.jsonl"
    assert _cli("--from-list", listed, "--out", out, weights=tiny_bundle_dir) == 0
    assert [r["error"] is None for r in _lines(out)] == [True, False]
    _photo(later, "coffee")  # the missing file appears
    assert _cli("--from-list", listed, "--out", out, weights=tiny_bundle_dir) == 0
    records = _lines(out)
    assert [Path(r["path"]).name for r in records] == ["a.png", "later.png"]  # one record each
    assert all(r["error"] is None for r in records)
    assert "captioned 1, skipped 1 (already done), failed 0" in capsys.readouterr().err
    # records made by another version of the bundle are not kept as done silently
    out.write_text("".join(json.dumps({**r, "model_version": "0.0.0"}) + "\n" for r in records))
    assert _cli("--from-list", listed, "--out", out, weights=tiny_bundle_dir) == 2
    err = capsys.readouterr().err
    assert "2 records (the first on line 1) were made with other settings: model_version '0.0.0' (this run: " \
           "'0.0.1')" in err and "--overwrite" in err
    # and a different beam width is a different setting too
    assert _cli("--from-list", listed, "--out", tmp_path / "beam.jsonl", weights=tiny_bundle_dir) == 0
    assert _cli("--from-list", listed, "--out", tmp_path / "beam.jsonl", "--beam-size", "5",
                weights=tiny_bundle_dir) == 2
    assert "options.beam_size 3 (this run: 5)" in capsys.readouterr().err


def test_stale_temp_files_of_a_killed_run_are_cleaned(tmp_path, tiny_bundle_dir):
    folder = tmp_path / "photos"
    _photo(folder / "a.png")
    pid = _dead_pid()
    stale = [folder / f".a.txt.caption-images-{pid}.tmp", folder / f".a.txt.{pid}.tmp"]  # this and the older naming
    for path in stale:
        path.write_text("half a capt")
    mine = [folder / ".notes.tmp", folder / f".b.md.{pid}.tmp"]  # not this tool's: left alone
    for path in mine:
        path.write_text("keep")
    assert _cli(folder, "--sidecar", ".txt", weights=tiny_bundle_dir) == 0
    assert not any(p.exists() for p in stale) and all(p.read_text() == "keep" for p in mine)
    assert (folder / "a.txt").exists()


def test_disk_full_summary_counts_only_what_was_written(tmp_path, tiny_bundle_dir, capsys, monkeypatch):
    for i, which in enumerate(PHOTOS):
        _photo(tmp_path / "p" / f"{i}.png", which)
    real, calls = JsonlOutput.write, []

    def write(self, records):
        calls.append(len(records))
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, records)

    monkeypatch.setattr(JsonlOutput, "write", write)
    out = tmp_path / "captions.jsonl"
    assert _cli(tmp_path / "p", "--out", out, "--batch-size", "2", weights=tiny_bundle_dir) == 2
    err = capsys.readouterr().err
    assert "cannot write output" in err and "No space left on device" in err
    assert len(_lines(out)) == 2 and "captioned 2, skipped 0 (already done), failed 0" in err


def test_csv_cut_after_a_newline_inside_a_quoted_path_is_repaired(tmp_path, tiny_bundle_dir, capsys):
    _photo(tmp_path / "plain.png")
    odd = _photo(tmp_path / "two\nlines.png", "coffee")
    out = tmp_path / "captions.csv"
    assert _cli(tmp_path / "plain.png", odd, "--out", out, weights=tiny_bundle_dir) == 0
    data = out.read_bytes()
    out.write_bytes(data[: data.rindex(b"two\n") + 4])  # killed right after the newline in the path
    capsys.readouterr()
    assert _cli(tmp_path / "plain.png", odd, "--out", out, weights=tiny_bundle_dir) == 0
    assert "removed an incomplete last record (line 3" in capsys.readouterr().err
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == [str(tmp_path / "plain.png"), str(odd)]
    assert all(r["error"] == "" and r["caption"] for r in rows)
    assert out.read_bytes() == data  # the same file as a run that was never killed
    assert _cli(tmp_path / "plain.png", "--out", out, "--overwrite", weights=tiny_bundle_dir) == 0
    with open(out, newline="") as f:
        assert [r["path"] for r in csv.DictReader(f)] == [str(tmp_path / "plain.png")]  # header and one row


def test_a_bad_csv_record_before_the_last_is_refused_untouched(tmp_path, tiny_bundle_dir, capsys):
    photos = [_photo(tmp_path / f"{w}.png", w) for w in ("cat", "coffee", "rocket")]
    out = tmp_path / "captions.csv"
    assert _cli(*photos, "--out", out, weights=tiny_bundle_dir) == 0
    lines = out.read_text().splitlines(keepends=True)
    lines[2] = '"2"x' + lines[2]  # damaged by hand: not something a kill does
    out.write_text("".join(lines))
    damaged = out.read_bytes()
    capsys.readouterr()
    assert _cli(*photos, "--out", out, weights=tiny_bundle_dir) == 2
    assert "the record on line 3 is not valid CSV" in capsys.readouterr().err
    assert out.read_bytes() == damaged
