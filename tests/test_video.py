"""tag_video and the tag-video CLI on generated videos, with the real pretrained encoder
(tiny random decoder: captions are gibberish, ImageNet tags are real)."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from captioning.options import field_comments
from pipelines.video import TagOptions, VideoTooLong, tag_video
from pipelines.video.cli import _parser, main
from pipelines.video.io import FALLBACK_FPS, VideoError, VideoReader
from pipelines.video.results import VideoTags
from test_video_clips import CUTS, SHOTS, make_clip, truncate

DURATION = sum(s for _, s in SHOTS)
CAT_LABELS = {"tabby", "tiger cat", "Egyptian cat"}  # what the encoder says about skimage's chelsea


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("video") / "clip.avi", fps=12.0)


@pytest.fixture(scope="module")
def tagged(clip, captioner) -> VideoTags:
    return tag_video(clip, captioner, fps=1.0, batch_size=8)


def _check_shots(tags: VideoTags, period: float):
    shots = tags.shots
    assert len(shots) == len(CUTS) + 1
    assert shots[0].start == 0.0 and shots[-1].end == pytest.approx(DURATION)
    for a, b in zip(shots, shots[1:]):
        assert a.end == b.start
    for cut, shot in zip(CUTS, shots[1:]):
        assert abs(shot.start - cut) <= period, f"cut at {cut} s found at {shot.start} s"
    times = {f.time for f in tags.frames}
    for shot in shots:
        assert shot.start <= shot.keyframe_time < shot.end and shot.keyframe_time in times
    for f in tags.frames:
        assert shots[f.shot].start <= f.time < shots[f.shot].end
    assert [s.frames for s in shots] == [sum(f.shot == s.index for f in tags.frames) for s in shots]


def test_shots_are_found_at_the_cuts(tagged):
    _check_shots(tagged, 1.0)
    assert [f.time for f in tagged.frames] == pytest.approx(list(range(16)))
    assert [f.index for f in tagged.frames] == [12 * i for i in range(16)]
    assert tagged.video.duration == pytest.approx(DURATION) and tagged.video.sampled_frames == 16
    assert (tagged.video.fps, tagged.video.width, tagged.video.height) == (12.0, 320, 240)
    assert not tagged.partial and tagged.errors == ()


def test_the_cat_shot_is_tagged_as_a_cat(tagged):
    cat_shot = tagged.shots[0]
    assert cat_shot.tags[0].label in CAT_LABELS and cat_shot.tags[0].source == "imagenet"
    assert cat_shot.tags[0].frames == cat_shot.frames  # in every frame's top-5
    probabilities = [t.probability for t in cat_shot.tags if t.source == "imagenet"]
    assert probabilities == sorted(probabilities, reverse=True) and len(probabilities) == 5
    for shot in tagged.shots[1:]:
        assert not CAT_LABELS & {t.label for t in shot.tags[:2]}
    assert all(len(f.tags) == 5 for f in tagged.frames)


def test_search_finds_the_cat_segment(tagged):
    cat_label = tagged.shots[0].tags[0].label
    for query in (cat_label, cat_label.upper(), "Tiger Cat"):  # two words: only an ImageNet label matches
        segments = tagged.search(query)
        assert len(segments) == 1, f"{query!r}: {segments}"
        assert segments[0].start == 0.0 and abs(segments[0].end - CUTS[0]) <= 1.0
    assert tagged.search(cat_label)[0].confidence > 0.3
    # "cat" also matches caption words, which the tiny random decoder may write anywhere
    assert any(s.start == 0.0 and s.end >= CUTS[0] - 1.0 and cat_label in s.labels for s in tagged.search("cat"))
    rocket = tagged.shots[3].tags[0].label  # the last shot's top label is found there
    assert any(s.start <= tagged.shots[3].keyframe_time < s.end for s in tagged.search(rocket))
    assert tagged.search("zebra") == []


def test_summary_and_json(tagged):
    summary = tagged.summary
    assert summary.shot_count == 4 and summary.duration == pytest.approx(DURATION)
    probs = [t.probability for t in summary.tags if t.source == "imagenet"]
    assert probs == sorted(probs, reverse=True) and 4 <= len(probs) <= 10
    d = json.loads(tagged.to_json())
    assert d["format_version"] == 1 and d["video"]["sampled_fps"] == 1.0
    assert d["options"]["shot_threshold"] == 0.3 and d["options"]["tags"] == 5
    assert d["model"]["name"] == "tiny_sat.test" and set(d["timings"]) == {"decode", "encode", "caption", "total"}
    assert len(d["shots"]) == 4 and len(d["frames"]) == 16 and d["index"]
    assert VideoTags.from_dict(d).to_dict() == d


def test_half_rate_on_mp4_finds_the_same_shots(tmp_path, captioner):
    clip = make_clip(tmp_path / "clip.mp4", fps=25.0, fourcc="mp4v")
    tags = tag_video(clip, captioner, fps=0.5)
    assert [f.time for f in tags.frames] == pytest.approx([0, 2, 4, 6, 8, 10, 12, 14])
    _check_shots(tags, 2.0)


def test_every_n_frames(clip, captioner):
    calls = []
    tags = tag_video(clip, captioner, every_n_frames=18, batch_size=4, progress=lambda n, s: calls.append((n, s)))
    assert [n for n, _ in calls] == [4, 4, 3] and sum(s for _, s in calls) == pytest.approx(180 / 12)
    assert [f.index for f in tags.frames] == list(range(0, 192, 18))
    assert [f.time for f in tags.frames] == pytest.approx([i / 12 for i in range(0, 192, 18)])
    assert tags.video.sampled_fps is None
    _check_shots(tags, 1.5)


def test_caption_every_frame_matches_keyframe_captions(tmp_path, captioner):
    clip = make_clip(tmp_path / "short.avi", fps=10.0, shots=(("chelsea", 3.0), ("coffee", 3.0)))
    every = tag_video(clip, captioner, caption_every_frame=True, beam_size=2)
    once = tag_video(clip, captioner, beam_size=2)
    assert all(isinstance(f.caption, str) for f in every.frames) and all(f.caption is None for f in once.frames)
    assert [(s.start, s.end, s.keyframe_index, s.caption) for s in every.shots] == \
        [(s.start, s.end, s.keyframe_index, s.caption) for s in once.shots]
    for shot in every.shots:
        assert shot.caption == next(f.caption for f in every.frames if f.index == shot.keyframe_index)
    assert every.options["caption_every_frame"] and every.options["beam_size"] == 2


def test_truncated_video_gives_partial_results(clip, captioner, tmp_path):
    tags = tag_video(truncate(clip, tmp_path / "cut.avi"), captioner, fps=1.0)
    assert tags.partial and any("truncated" in e for e in tags.errors)
    assert 3 <= len(tags.frames) < 16 and tags.video.duration < DURATION - 2
    assert tags.shots[-1].end == pytest.approx(tags.video.duration)
    assert json.loads(tags.to_json())["partial"] is True


def test_unreadable_videos_raise_video_error(tmp_path, captioner):
    (tmp_path / "text.mp4").write_text("not a video\n" * 50)
    (tmp_path / "zero.mp4").write_bytes(b"")
    for name in ("text.mp4", "zero.mp4", "missing.mp4"):
        with pytest.raises(VideoError, match=name):
            tag_video(tmp_path / name, captioner)


def no_duration_clip(path: Path, seconds: float) -> Path:
    """Raw MJPEG frames (no container, so no duration; read at FALLBACK_FPS) saved as ``path``."""
    raw = path.with_suffix(".mjpeg")  # the extension picks FFmpeg's raw MJPEG muxer
    writer = cv2.VideoWriter(str(raw), cv2.VideoWriter_fourcc(*"MJPG"), FALLBACK_FPS, (64, 48))
    for i in range(int(seconds * FALLBACK_FPS)):
        writer.write(np.full((48, 64, 3), (i * 7) % 256, np.uint8))
    writer.release()
    return raw.rename(path)


def test_max_seconds_stops_a_video_without_a_duration(tmp_path, captioner, monkeypatch):
    clip = no_duration_clip(tmp_path / "raw.mkv", seconds=40)
    with VideoReader(clip) as reader:
        assert reader.info.duration == 0.0
    grabs, grab = [0], VideoReader._grab

    def counting_grab(self):
        grabs[0] += 1
        return grab(self)

    monkeypatch.setattr(VideoReader, "_grab", counting_grab)
    tagged = []
    with pytest.raises(VideoTooLong, match=r"raw\.mkv: longer than 5 s$"):
        tag_video(clip, captioner, fps=1.0, batch_size=2, max_seconds=5, progress=lambda n, s: tagged.append(s))
    assert sum(tagged) == pytest.approx(5.0)  # the samples at 0..5 s, then it stopped
    assert grabs[0] <= 6 * FALLBACK_FPS + 1  # decoding stopped at the first sample past the limit


@pytest.mark.parametrize("kw", [dict(tags=0), dict(batch_size=0), dict(shot_threshold=0.0),
                                dict(min_shot_seconds=-1), dict(fps=0), dict(fps=None), dict(every_n_frames=0),
                                dict(beam_size=0), dict(strategy="jump")])
def test_invalid_options(clip, captioner, kw):
    with pytest.raises(ValueError):
        tag_video(clip, captioner, **kw)


def test_options_object_and_keyword_changes_are_one_thing(clip, captioner):
    options = TagOptions(fps=0.5, batch_size=4)
    assert tag_video(clip, captioner, options).to_dict()["options"] == \
        tag_video(clip, captioner, fps=0.5, batch_size=4).to_dict()["options"] == \
        tag_video(clip, captioner, TagOptions(fps=2.0), fps=0.5, batch_size=4).to_dict()["options"]
    with pytest.raises(TypeError):
        tag_video(clip, captioner, frames_per_second=2.0)


# -- the CLI -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    make_clip(d / "Short.AVI", fps=10.0, shots=(("chelsea", 3.0), ("coffee", 3.0)))
    (d / "fake.mp4").write_text("this is text, not a video\n")
    (d / "notes.txt").write_text("ignored\n")
    return d


def test_cli_batch_with_bad_files_outputs_and_query(video_dir, tiny_bundle_dir, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main([str(video_dir), str(video_dir / "missing.mp4"), "--weights", str(tiny_bundle_dir), "--device", "cpu",
               "--out", str(out), "--formats", "json,csv,srt,vtt", "--thumbnails", "--query", "tiger cat",
               "--batch-size", "4", "--strict"])
    captured = capsys.readouterr()
    assert rc == 1  # --strict: two inputs failed (the good one was still tagged); without it, 0 as caption-images
    errors = [line for line in captured.err.splitlines() if line.startswith("tag-video:")]
    assert any("fake.mp4: cannot open as a video" in e for e in errors)
    assert any("missing.mp4: file not found" in e for e in errors)
    assert errors[-1] == "tag-video: 2 of 3 videos failed"
    assert main([str(video_dir / "missing.mp4"), "--weights", str(tiny_bundle_dir), "--device", "cpu"]) == 0
    assert capsys.readouterr().err.strip().endswith("tag-video: 1 of 1 videos failed")  # reported, not fatal
    assert sorted(p.name for p in out.iterdir()) == ["Short.csv", "Short.json", "Short.srt", "Short.vtt",
                                                     "Short_keyframes"]
    assert len(list((out / "Short_keyframes").glob("shot_*.jpg"))) == 2
    d = json.loads((out / "Short.json").read_text())
    assert len(d["shots"]) == 2 and d["video"]["path"].endswith("Short.AVI")
    hits = [line.split("\t") for line in captured.out.splitlines()]
    assert len(hits) == 1 and hits[0][0].endswith("Short.AVI") and hits[0][1].startswith("00:00:00.000 --> ")
    assert hits[0][3] == "tiger cat" and abs(float(hits[0][1].split(" --> ")[1][6:]) - 3.0) <= 1.0


def test_cli_summary_without_out(video_dir, tiny_bundle_dir, capsys):
    assert main([str(video_dir / "Short.AVI"), "--weights", str(tiny_bundle_dir), "--device", "cpu",
                 "--fps", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "Short.AVI: 6.0 s, 2 shots, 3 frames; top tags: " in out


def test_cli_missing_bundle_is_one_line_exit_2(video_dir, tmp_path, capsys):
    assert main([str(video_dir / "Short.AVI"), "--weights", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tag-video: ") and "nope" in err[0]


@pytest.mark.parametrize("argv", [["--formats", "json,xml", "--out", "x"], ["--formats", "srt"],
                                  ["--fps", "0"], ["--tags", "0"], ["--engine", "spark"]])
def test_cli_rejects_bad_options(video_dir, argv, capsys):
    with pytest.raises(SystemExit) as e:
        main([str(video_dir / "Short.AVI"), *argv])
    assert e.value.code == 2


@pytest.mark.parametrize("argv,message", [(["--fps", "0"], "--fps must be > 0"),
                                          (["--every-n-frames", "0", "--beam-size", "0"],
                                           "--every-n-frames must be >= 1; --beam-size must be >= 1")])
def test_cli_names_the_flag_of_a_bad_option(video_dir, argv, message, capsys):
    with pytest.raises(SystemExit):
        main([str(video_dir / "Short.AVI"), *argv])
    assert capsys.readouterr().err.strip().endswith(f"tag-video: error: {message}")


def test_cli_flags_are_the_tag_options():
    flags = {a.dest: a for a in _parser()._actions if a.option_strings}
    comments = field_comments(TagOptions)
    for f in dataclasses.fields(TagOptions):
        if f.name not in ("strategy", "decoding"):  # strategy: "auto" picks per video; decoding: Decoding's flags
            comment = comments[f.name].split(" (None: ")[0]  # "(None: X)" reads "(default: X)" on the command line
            assert flags[f.name].default == f.default and flags[f.name].help.startswith(comment), f.name
    assert flags["beam_size"].help.endswith("(default: the bundle's)") and flags["fps"].type is float


def test_cli_no_videos(tmp_path, capsys):
    assert main([str(tmp_path)]) == 1
    assert "no video files found" in capsys.readouterr().err


def test_cli_help_states_every_default():
    for action in _parser()._actions:
        if action.option_strings and action.dest != "help":
            assert "default" in action.help, action.dest


def test_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "pipelines.video", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "--shot-threshold" in result.stdout and "--engine" in result.stdout


def test_importing_loads_neither_a_model_nor_ray():
    code = ("import sys, pipelines, pipelines.images.cli, pipelines.images.ray, pipelines.video.cli, "
            "pipelines.video.export, pipelines.video.ray; "
            "print('ray' in sys.modules, 'cv2' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False", "False"], result.stderr


def test_decoding_options_as_every_tool_takes_them(clip, captioner, tmp_path, tiny_bundle_dir, capsys):
    short = tag_video(clip, captioner, fps=1.0, batch_size=8, max_length=3, length_penalty=1.0)
    assert all(len(s.caption.split()) <= 3 for s in short.shots)
    assert short.options["max_length"] == 3 and short.options["length_penalty"] == 1.0
    assert short.options["beam_size"] == captioner.decoding.beam_size  # the whole decoding in effect is recorded
    assert main([str(clip), "--weights", str(tiny_bundle_dir), "--device", "cpu", "--out", str(tmp_path),
                 "--max-length", "3", "--length-penalty", "1.0", "--batch-size", "8"]) == 0
    written = json.loads((tmp_path / "clip.json").read_text())
    assert [s["caption"] for s in written["shots"]] == [s.caption for s in short.shots]
    assert written["options"]["max_length"] == 3
