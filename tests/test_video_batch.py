"""tag-video over folders of videos: caption-images' discovery (-r, globs), a folder per video
under --out, resume (done videos skipped unopened, other options refused), bad files, progress."""
from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import pytest

from pipelines.files import VIDEO_EXTENSIONS
from pipelines.inputs import discover
from pipelines.video.cli import main
from pipelines.video.layout import LayoutError, Target, targets
from pipelines.video.writing import write_file
from test_video_clips import make_clip

SHORT = (("chelsea", 1.0), ("coffee", 1.0))  # two shots, 20 frames at 10 fps


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """videos/one.avi, videos/sub/one.avi (the same name), videos/sub/deeper/two.MP4, a text file
    named like a video, a hidden clip and a note."""
    root = tmp_path_factory.mktemp("tree") / "videos"
    (root / "sub" / "deeper").mkdir(parents=True)
    make_clip(root / "one.avi", fps=10.0, shots=SHORT)
    make_clip(root / "sub" / "one.avi", fps=10.0, shots=SHORT[::-1])
    make_clip(root / "sub" / "deeper" / "two.MP4", fps=10.0, shots=SHORT, fourcc="mp4v")
    shutil.copy(root / "one.avi", root / ".hidden.avi")
    (root / "sub" / "broken.mp4").write_text("not a video\n")
    (root / "notes.txt").write_text("not a video either\n")
    return root


@pytest.fixture
def run(tiny_bundle_dir, capsys):
    """main() with the tiny bundle on the CPU -> (exit status, stdout, stderr)."""
    def call(*argv) -> tuple[int, str, str]:
        status = main([*map(str, argv), "--weights", str(tiny_bundle_dir), "--device", "cpu", "--batch-size", "8"])
        out, err = capsys.readouterr()
        return status, out, err
    return call


def _folders(out: Path) -> list[str]:
    """The video folders under ``out`` (those holding a run record), relative to it."""
    return sorted(str(p.parent.relative_to(out)) for p in out.rglob("*.run.json"))


# -- which videos, where their files go ---------------------------------------------------
def test_folders_are_searched_at_their_top_level_unless_recursive(tree):
    top = discover([str(tree)], extensions=VIDEO_EXTENSIONS)
    assert top.paths == [str(tree / "one.avi")] and top.relative == ["one.avi"]  # hidden and .txt files left out
    deep = discover([str(tree)], recursive=True, extensions=VIDEO_EXTENSIONS)
    assert deep.relative == ["one.avi", "sub/broken.mp4", "sub/one.avi", "sub/deeper/two.MP4"]
    pattern = discover([f"{tree}/*/one.avi", f"{tree}/**/*.MP4"], extensions=VIDEO_EXTENSIONS)
    assert pattern.relative == ["sub/one.avi", "sub/deeper/two.MP4"]  # below each pattern's fixed folders
    named = discover([str(tree / "sub" / "one.avi"), str(tree / "notes.txt")], extensions=VIDEO_EXTENSIONS)
    assert named.relative == ["one.avi", "notes.txt"]  # named files are taken as they are (and fail later)


def test_video_extensions_in_any_case(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.MP4", "b.avi", "sub/c.Mkv", "d.webm", "e.mov", "f.m4v", "notes.txt", "g.jpg"):
        (tmp_path / name).write_bytes(b"x")
    found = discover([str(tmp_path), str(tmp_path / "notes.txt")], recursive=True, extensions=VIDEO_EXTENSIONS)
    assert [Path(p).name for p in found.paths] == ["a.MP4", "b.avi", "d.webm", "e.mov", "f.m4v", "c.Mkv", "notes.txt"]


def test_a_folder_per_video_and_clashes_refused(tmp_path):
    found = targets(["a/x.mp4", "a/x.mkv", "a/y.mp4", "b/x.mp4"], ["x.mp4", "x.mkv", "y.mp4", "b/x.mp4"], tmp_path)
    assert found == [Target(tmp_path / "x.mp4", "x"), Target(tmp_path / "x.mkv", "x"), Target(tmp_path / "y", "y"),
                     Target(tmp_path / "b" / "x", "x")]  # a shared stem keeps the extension, as sidecars do
    with pytest.raises(LayoutError, match="a/x.mp4 and b/x.mp4 would both write in .*/x: give the folder"):
        targets(["a/x.mp4", "b/x.mp4"], ["x.mp4", "x.mp4"], tmp_path)


def test_cli_tags_a_tree_with_same_named_videos_and_a_bad_file(tree, tmp_path, run):
    status, out, err = run(tree, "-r", "--out", tmp_path / "tags", "--formats", "json,srt", "--strict")
    assert status == 1  # --strict: broken.mp4 failed; the others were tagged
    assert _folders(tmp_path / "tags") == ["one", "sub/deeper/two", "sub/one"]
    lines = err.splitlines()
    bad = [line for line in lines if "broken.mp4" in line]
    assert len(bad) == 1 and bad[0].startswith(f"tag-video: {tree}/sub/broken.mp4: cannot open as a video (")
    assert lines[-1].startswith("tag-video: tagged 3, skipped 0 (already done), failed 1 in ")
    one, other = (json.loads((tmp_path / "tags" / f / "one.json").read_text()) for f in ("one", "sub/one"))
    assert one["video"]["path"] == str(tree / "one.avi") and other["video"]["path"] == str(tree / "sub" / "one.avi")
    assert one["shots"][0]["tags"][0]["label"] != other["shots"][0]["tags"][0]["label"]  # a cat, a cup: two videos
    assert sorted(p.name for p in (tmp_path / "tags" / "sub" / "one").iterdir()) == ["one.json", "one.run.json",
                                                                                      "one.srt"]
    assert len(out.splitlines()) == 3  # a summary line per video tagged

    status, _, err = run(tree, "--out", tmp_path / "top")  # no -r: the folder's own videos only
    assert status == 0 and _folders(tmp_path / "top") == ["one"] and "broken" not in err
    status, _, _ = run(f"{tree}/*/one.avi", "--out", tmp_path / "glob")
    assert status == 0 and _folders(tmp_path / "glob") == ["sub/one"]


def test_two_named_videos_sharing_a_name_are_refused_before_any_work(tree, tmp_path, run, decoded_frames):
    status, _, err = run(tree / "one.avi", tree / "sub" / "one.avi", "--out", tmp_path)
    assert status == 2 and "would both write in" in err and decoded_frames[0] == 0
    assert not any(tmp_path.iterdir())


# -- resume -------------------------------------------------------------------------------
def test_resume_skips_done_videos_without_decoding_them(tree, tmp_path, run, decoded_frames):
    argv = (tree, "-r", "--out", tmp_path, "--formats", "json,vtt", "--thumbnails")
    assert run(*argv)[0] == 0
    first = decoded_frames[0]
    assert first >= 3 * 20
    status, out, err = run(*argv)
    assert status == 0 and decoded_frames[0] == first  # nothing opened for decoding again
    assert f"tag-video: {tree}/one.avi: already done in {tmp_path}/one (same bundle and options); skipped" in err
    assert "tagged 0, skipped 3 (already done), failed 1" in err and out == ""  # broken.mp4 is tried again
    (tmp_path / "sub" / "one" / "one.vtt").unlink()  # an incomplete folder: that video alone is tagged again
    status, _, err = run(*argv)
    assert status == 0 and 0 < decoded_frames[0] - first < first  # one video of three (thumbnails read it twice)
    assert "tagged 1, skipped 2 (already done), failed 1" in err and (tmp_path / "sub" / "one" / "one.vtt").is_file()


def test_other_options_or_bundle_are_refused_unless_overwrite(tree, tmp_path, run, decoded_frames):
    video, out = tree / "sub" / "deeper" / "two.MP4", tmp_path / "tags"
    files = ("--formats", "json,srt,html", "--thumbnails")
    assert run(video, "--out", out, *files)[0] == 0
    folder = out / "two"
    (folder / "mine.txt").write_text("a file of the user's\n")
    frames = decoded_frames[0]
    for changed, difference in ((("--fps", "2", *files), "options.fps 1.0 (this run: 2.0)"),
                                (("--beam-size", "1", *files), "options.beam_size 3 (this run: 1)"),
                                (("--formats", "json,srt,html"), "outputs.thumbnails True (this run: False)")):
        status, _, err = run(video, "--out", out, *changed)
        assert status == 2 and decoded_frames[0] == frames, changed
        assert err.strip().splitlines()[-1] == (
            f"tag-video: {folder}: made with other settings: {difference}; resume with the same ones, start over "
            "with --overwrite, or choose another --out")
    record = json.loads((folder / "two.run.json").read_text())  # as if another version of the bundle wrote it
    write_file(folder / "two.run.json", json.dumps({**record, "model": {**record["model"], "version": "9.9.9"}}))
    assert "model.version '9.9.9' (this run: '0.0.1')" in run(video, "--out", out, *files)[2]
    assert record["precision"] == "fp32"
    write_file(folder / "two.run.json", json.dumps({**record, "precision": "bf16"}))  # as a --precision bf16 run
    assert "precision 'bf16' (this run: 'fp32')" in run(video, "--out", out, *files)[2]
    write_file(folder / "two.run.json", json.dumps({k: v for k, v in record.items() if k != "precision"}))
    status, _, err = run(video, "--out", out, *files)  # recorded before --precision existed: FP32, done
    assert status == 0 and "skipped 1" in err and decoded_frames[0] == frames
    write_file(folder / "two.run.json", json.dumps(record))
    assert run(video, "--out", out, "--formats", "json", "--overwrite")[0] == 0
    assert decoded_frames[0] > frames  # tagged again; the files only the earlier run wrote are gone, not the user's
    assert sorted(p.name for p in folder.iterdir()) == ["mine.txt", "two.json", "two.run.json"]
    assert json.loads((folder / "two.run.json").read_text())["outputs"] == {"formats": ["json"], "thumbnails": False}
    (folder / "two.run.json").write_text("edited by hand\n")  # not tag-video's any more: the video fails, one line
    written = (folder / "two.json").read_bytes()
    status, _, err = run(video, "--out", out, "--strict")
    assert status == 1 and f"{folder}/two.run.json: exists and was not written by tag-video" in err
    assert (folder / "two.json").read_bytes() == written and (folder / "two.run.json").read_text() == "edited by hand\n"


def test_a_default_and_the_same_value_given_are_one_setting(tree, tmp_path, run, decoded_frames):
    video = tree / "one.avi"
    assert run(video, "--out", tmp_path)[0] == 0
    frames = decoded_frames[0]
    status, _, err = run(video, "--out", tmp_path, "--fps", "1", "--beam-size", "3", "--strip", "2")
    assert status == 0 and decoded_frames[0] == frames and "skipped 1" in err  # --strip shapes only the HTML


# -- progress -----------------------------------------------------------------------------
class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_on_a_terminal(tree, tmp_path, tiny_bundle_dir, monkeypatch):
    monkeypatch.setattr("sys.stderr", _Terminal())
    monkeypatch.setenv("COLUMNS", "160")
    assert main([str(tree), "-r", "--out", str(tmp_path), "--weights", str(tiny_bundle_dir), "--device", "cpu"]) == 0
    shown = sys.stderr.getvalue()
    assert "tag-video: 100%" in shown and "4/4 [" in shown  # the videos, broken.mp4 among them
    assert "frame/s" in shown and "x real time" in shown  # each video's frames, with the rate
