"""tag_video and the tag-video CLI on generated videos, with the real pretrained encoder
(tiny random decoder: captions are gibberish, ImageNet tags are real): shots at the exact cut
frames, scenes, times on the player's clock."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from captioning import EverydayOptions
from captioning.options import field_comments
from pipelines.video import OutputOptions, SearchOptions, TagOptions, VideoTooLong, tag_video
from pipelines.video.cli import _parser, main
from pipelines.video.cuts import CutOptions
from pipelines.video.io import FALLBACK_FPS, VideoError, VideoReader
from pipelines.video.results import SORTS, VideoTags
from test_video_clips import CUTS, SHOTS, make_clip, still_shot, truncate, write_av

DURATION = sum(s for _, s in SHOTS)
CAT_LABELS = {"tabby", "tiger cat", "Egyptian cat"}  # what the encoder says about skimage's chelsea


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("video") / "clip.avi", fps=12.0)


@pytest.fixture(scope="module")
def tagged(clip, captioner) -> VideoTags:
    return tag_video(clip, captioner, fps=1.0, batch_size=8)


def _check_shots(tags: VideoTags, fps: float, cuts=CUTS, duration=DURATION):
    """Shots start at the exact cut frames and times, tile the video, and hold their frames."""
    shots = tags.shots
    assert [s.start_frame for s in shots] == [0] + [round(c * fps) for c in cuts]
    assert [s.start for s in shots] == pytest.approx([0.0, *cuts])
    assert [s.transition for s in shots] == [None] + ["cut"] * len(cuts)
    assert shots[-1].end == pytest.approx(duration) and shots[-1].end_frame == round(duration * fps)
    for a, b in zip(shots, shots[1:]):
        assert a.end == b.start and a.end_frame == b.start_frame
    times = {f.time for f in tags.frames}
    for shot in shots:
        assert shot.start <= shot.keyframe_time < shot.end and shot.keyframe_time in times
        assert shot.start_frame <= shot.keyframe_index < shot.end_frame
    for f in tags.frames:
        assert shots[f.shot].start_frame <= f.index < shots[f.shot].end_frame
    assert [s.frames for s in shots] == [sum(f.shot == s.index for f in tags.frames) for s in shots]


def test_shots_are_found_at_the_exact_cut_frames(tagged):
    _check_shots(tagged, 12.0)
    assert [f.time for f in tagged.frames] == pytest.approx(list(range(16)))
    assert [f.index for f in tagged.frames] == [12 * i for i in range(16)] and all(f.sampled for f in tagged.frames)
    assert tagged.video.duration == pytest.approx(DURATION) and tagged.video.sampled_frames == 16
    assert (tagged.video.fps, tagged.video.width, tagged.video.height) == (12.0, 320, 240)
    assert tagged.video.frames_decoded == 192 and tagged.video.timecode_rate == "12"
    assert [s.start_timecode for s in tagged.shots] == ["00:00:00:00", "00:00:04:00", "00:00:07:00", "00:00:12:00"]
    assert not tagged.partial and tagged.errors == ()


def test_different_photos_are_different_scenes(tagged):
    assert [(s.first_shot, s.shot_count) for s in tagged.scenes] == [(0, 1), (1, 1), (2, 1), (3, 1)]
    assert [s.scene for s in tagged.shots] == [0, 1, 2, 3]
    for scene, shot in zip(tagged.scenes, tagged.shots):
        assert (scene.start_frame, scene.end_frame, scene.caption) == (shot.start_frame, shot.end_frame, shot.caption)


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
        assert segments[0].start == 0.0 and segments[0].end == pytest.approx(CUTS[0])  # ends at the cut
    assert tagged.search(cat_label)[0].confidence > 0.3
    # "cat" also matches caption words, which the tiny random decoder may write anywhere
    assert any(s.start == 0.0 and s.end >= CUTS[0] and cat_label in s.labels for s in tagged.search("cat"))
    rocket = tagged.shots[3].tags[0].label  # the last shot's top label is found there
    assert any(s.start <= tagged.shots[3].keyframe_time < s.end for s in tagged.search(rocket))
    assert tagged.search("zebra") == []


def test_shots_and_search_have_everyday_words(tagged):
    """Issue #23: a shot's ImageNet labels rolled up into everyday words ("cat" for tabby, tiger cat...),
    which the index holds too, so --query cat finds the word itself."""
    cat_shot = tagged.shots[0]
    words = [t for t in cat_shot.tags if t.source == "everyday"]
    assert words[0].label == "cat" and words[0].frames == cat_shot.frames and len(words) <= 5
    assert words[0].probability >= cat_shot.tags[0].probability  # the sum of the cat classes
    assert tagged.index["cat"][0].start == 0.0 and tagged.index["cat"][0].end >= CUTS[0]
    assert any(t.source == "everyday" for t in tagged.summary.tags)
    assert tagged.to_dict()["options"]["everyday"] == {"min_tag_probability": 0.0, "exclude_tags": []}


def test_summary_and_json(tagged):
    summary = tagged.summary
    assert summary.shot_count == 4 and summary.scene_count == 4 and summary.duration == pytest.approx(DURATION)
    probs = [t.probability for t in summary.tags if t.source == "imagenet"]
    assert probs == sorted(probs, reverse=True) and 4 <= len(probs) <= 10
    d = json.loads(tagged.to_json())
    assert d["format_version"] == 4 and d["video"]["sampled_fps"] == 1.0
    assert d["options"]["scene_threshold"] == 0.3 and d["options"]["tags"] == 5
    assert d["options"]["cuts"] == dataclasses.asdict(CutOptions())
    assert d["model"]["name"] == "tiny_sat.test" and set(d["timings"]) == {"decode", "encode", "caption", "total"}
    assert len(d["shots"]) == 4 and len(d["scenes"]) == 4 and len(d["frames"]) == 16 and d["index"]
    assert VideoTags.from_dict(d).to_dict() == d


def test_half_rate_on_mp4_finds_the_same_shots(tmp_path, captioner):
    clip = make_clip(tmp_path / "clip.mp4", fps=25.0, fourcc="mp4v")
    tags = tag_video(clip, captioner, fps=0.5)
    assert [f.time for f in tags.frames] == pytest.approx([0, 2, 4, 6, 8, 10, 12, 14])
    _check_shots(tags, 25.0)


def test_every_n_frames(clip, captioner):
    calls = []
    tags = tag_video(clip, captioner, every_n_frames=18, batch_size=4, progress=lambda n, s: calls.append((n, s)))
    assert [n for n, _ in calls] == [4, 4, 3] and sum(s for _, s in calls) == pytest.approx(180 / 12)
    assert [f.index for f in tags.frames] == list(range(0, 192, 18))
    assert [f.time for f in tags.frames] == pytest.approx([i / 12 for i in range(0, 192, 18)])
    assert tags.video.sampled_fps is None
    _check_shots(tags, 12.0)


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
    assert tags.shots[-1].end_frame == tags.video.frames_decoded < 192
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


def test_max_seconds_stops_a_video_without_a_duration(tmp_path, captioner, decoded_frames):
    clip = no_duration_clip(tmp_path / "raw.mkv", seconds=40)
    with VideoReader(clip) as reader:
        assert reader.info.duration == 0.0
    decoded = decoded_frames
    decoded[0] = 0  # counted from here
    tagged = []
    with pytest.raises(VideoTooLong, match=r"raw\.mkv: longer than 5 s$"):
        tag_video(clip, captioner, fps=1.0, batch_size=2, max_seconds=5, progress=lambda n, s: tagged.append(s))
    assert sum(tagged) <= 5.0
    assert decoded[0] <= 5 * FALLBACK_FPS + 4  # decoding stopped at the first frame past the limit


def test_a_shot_between_samples_gets_its_first_frames_tagged(tmp_path, captioner):
    frames = still_shot("chelsea", 60) + still_shot("rocket", 15) + still_shot("coffee", 45)  # rocket: 2.4-3.0 s
    tags = tag_video(write_av(tmp_path / "short.mp4", frames), captioner, fps=0.5)  # samples at 0, 2, 4 s
    assert [(s.start_frame, s.end_frame) for s in tags.shots] == [(0, 60), (60, 75), (75, 120)]
    assert [(f.index, f.shot, f.sampled) for f in tags.frames if f.sampled] == [(0, 0, True), (50, 0, True),
                                                                                 (100, 2, True)]
    extra = [f for f in tags.frames if not f.sampled]
    assert len(extra) == 1 and extra[0].shot == 1 and 60 <= extra[0].index <= 66  # a few frames after the cut
    short = tags.shots[1]
    assert short.frames == 1 and short.keyframe_index == extra[0].index and tags.video.sampled_frames == 4
    assert [f.index for f in tags.frames] == sorted(f.index for f in tags.frames)


def test_alternating_shots_are_one_scene(tmp_path, captioner):
    shots = [("chelsea", 30), ("coffee", 30), ("chelsea", 30), ("coffee", 30), ("rocket", 40)]
    clip = write_av(tmp_path / "dialogue.mp4", [f for name, n in shots for f in still_shot(name, n)])
    tags = tag_video(clip, captioner, fps=1.0)
    assert [s.start_frame for s in tags.shots] == [0, 30, 60, 90, 120]
    assert [(s.first_shot, s.shot_count) for s in tags.scenes] == [(0, 4), (4, 1)]
    assert [s.scene for s in tags.shots] == [0, 0, 0, 0, 1]
    assert tag_video(clip, captioner, fps=1.0, scene_span=1).summary.scene_count == 5  # neighbours differ


def test_times_are_the_players_when_the_video_starts_late(tmp_path, captioner):
    frames = still_shot("chelsea", 50) + still_shot("coffee", 50)
    clip = write_av(tmp_path / "late.mp4", frames, start=1.075, audio=True)  # the audio starts at 0
    tags = tag_video(clip, captioner, fps=1.0)
    assert tags.video.start == pytest.approx(1.075) and tags.frames[0].time == pytest.approx(1.075)
    assert [s.start for s in tags.shots] == pytest.approx([1.075, 3.075])
    assert [s.start_frame for s in tags.shots] == [0, 50] and tags.shots[1].start_timecode == "00:00:03:02"
    # samples: the first frame, then at each second of the player's clock (1.995: within a quarter frame of 2 s)
    assert [f.time for f in tags.frames] == pytest.approx([1.075, 1.995, 2.995, 3.995, 4.995])


@pytest.mark.parametrize("kw", [dict(tags=0), dict(batch_size=0), dict(scene_threshold=0.0), dict(scene_span=0),
                                dict(min_shot_frames=0), dict(cut_ratio=0.5), dict(fps=0), dict(fps=None),
                                dict(every_n_frames=0), dict(beam_size=0)])
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
    changed = tag_video(clip, captioner, fps=0.5, cut_ratio=4.0, shot_threshold=0.25)  # CutOptions' names; the old name
    assert changed.options["cuts"]["cut_ratio"] == 4.0 and changed.options["scene_threshold"] == 0.25
    assert TagOptions(scene_threshold=0.2).shot_threshold == 0.2  # the web UI's name, until it moves


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
               "--min-hit-confidence", "0", "--batch-size", "4", "--strict"])  # the tiny model's tiger cat: under 0.2
    captured = capsys.readouterr()
    assert rc == 1  # --strict: a video failed (the good one was still tagged); without it, 0 as caption-images
    errors = [line for line in captured.err.splitlines() if line.startswith("tag-video:")]
    assert any("fake.mp4: cannot open as a video" in e for e in errors)
    assert any("missing.mp4: no such file or folder" in e for e in errors)  # as caption-images says it
    assert errors[-1].startswith("tag-video: tagged 1, skipped 0 (already done), failed 1 in ")
    assert main([str(video_dir / "missing.mp4"), "--weights", str(tiny_bundle_dir), "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip().endswith("tag-video: no videos found in the given inputs")
    assert [p.name for p in out.iterdir()] == ["Short"]  # a folder per video
    assert sorted(p.name for p in (out / "Short").iterdir()) == ["Short.csv", "Short.json", "Short.run.json",
                                                                 "Short.srt", "Short.vtt", "Short_keyframes"]
    out = out / "Short"
    assert len(list((out / "Short_keyframes").glob("shot_*.jpg"))) == 2
    d = json.loads((out / "Short.json").read_text())
    assert len(d["shots"]) == 2 and d["video"]["path"].endswith("Short.AVI")
    hits = [line.split("\t") for line in captured.out.splitlines()]
    assert len(hits) == 1 and hits[0][0].endswith("Short.AVI") and hits[0][1].startswith("00:00:00.000 --> ")
    assert hits[0][3] == "tiger cat" and abs(float(hits[0][1].split(" --> ")[1][6:]) - 3.0) <= 1.0


def test_cli_writes_the_editor_and_report_formats(video_dir, tiny_bundle_dir, tmp_path, capsys):
    argv = [str(video_dir / "Short.AVI"), "--weights", str(tiny_bundle_dir), "--device", "cpu", "--out",
            str(tmp_path / "out")]
    assert main([*argv, "--formats", "json,chapters", "--formats", "edl,otio,html", "--strip", "2", "--strict"]) == 0
    out = tmp_path / "out" / "Short"
    assert sorted(p.name for p in out.iterdir()) == ["Short.chapters.vtt", "Short.edl", "Short.html", "Short.json",
                                                     "Short.otio", "Short.run.json"]
    d = json.loads((out / "Short.json").read_text())
    assert [s["start_frame"] for s in d["shots"]] == [0, 30] and d["video"]["timecode_rate"] == "10"
    edl = (out / "Short.edl").read_text()
    assert "001  AX       V     C        00:00:00:00 00:00:03:00 00:00:00:00 00:00:03:00" in edl
    assert "002  AX       V     C        00:00:03:00 00:00:06:00 00:00:03:00 00:00:06:00" in edl
    assert (out / "Short.html").read_text().count("data:image/jpeg;base64,") == 4  # 2 shots x --strip 2
    (out / "Short.edl").write_text("edited by hand\n")  # a file tag-video did not write: the video fails, one line
    assert main([*argv, "--formats", "json,edl", "--strict", "--overwrite"]) == 1
    assert "Short.edl: exists and was not written by tag-video" in capsys.readouterr().err
    assert (out / "Short.edl").read_text() == "edited by hand\n"


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
                                  ["--fps", "0"], ["--tags", "0"], ["--engine", "spark"], ["--sort", "size"],
                                  ["--min-hit-confidence", "high"], ["--min-confidence", "0.5"]])
def test_cli_rejects_bad_options(video_dir, argv, capsys):
    with pytest.raises(SystemExit) as e:
        main([str(video_dir / "Short.AVI"), *argv])
    assert e.value.code == 2


@pytest.mark.parametrize("argv,message", [(["--fps", "0"], "--fps must be > 0"),
                                          (["--every-n-frames", "0", "--beam-size", "0"],
                                           "--every-n-frames must be >= 1; --beam-size must be >= 1"),
                                          (["--min-hit-confidence", "1.5"],
                                           "--min-hit-confidence must be in [0, 1], not 1.5"),
                                          (["--min-hit-confidence", "-0.1"],
                                           "--min-hit-confidence must be in [0, 1], not -0.1")])
def test_cli_names_the_flag_of_a_bad_option(video_dir, argv, message, capsys):
    with pytest.raises(SystemExit):
        main([str(video_dir / "Short.AVI"), *argv])
    assert capsys.readouterr().err.strip().endswith(f"tag-video: error: {message}")


def test_cli_flags_are_the_tag_cut_and_output_options():
    flags = {a.dest: a for a in _parser()._actions if a.option_strings}
    for cls, skip, rename in ((TagOptions, ("cuts", "decoding", "everyday"), {}), (CutOptions, (), {}),
                              (EverydayOptions, ("exclude_tags",), {}), (OutputOptions, ("formats",), {"out_dir": "out"}),
                              (SearchOptions, (), {"min_confidence": "min_hit_confidence"})):
        comments = field_comments(cls)
        for f in dataclasses.fields(cls):
            if f.name not in skip:  # cuts, everyday: their own flags; decoding: Decoding's; formats, exclude_tags: repeatable
                comment = comments[f.name].split(" (None: ")[0]  # "(None: X)" reads "(default: X)" on the command line
                flag = flags[rename.get(f.name, f.name)]
                assert flag.default == f.default and flag.help.startswith(comment), f.name
    assert flags["formats"].help.endswith("(repeatable; default: json)")
    assert flags["beam_size"].help.endswith("(default: the bundle's)") and flags["fps"].type is float
    assert flags["sort"].choices == SORTS and "min_confidence" not in flags  # caption-images' --min-confidence:
    # a caption's confidence; tag-video's minimum is a search hit's, --min-hit-confidence


def test_cli_no_videos(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2  # a usage error, as caption-images finding no images
    assert "no videos found in the given inputs" in capsys.readouterr().err


def test_cli_help_states_every_default():
    for action in _parser()._actions:
        if action.option_strings and action.dest != "help":
            assert "default" in action.help, action.dest


def test_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "pipelines.video", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "--scene-threshold" in result.stdout and "--cut-ratio" in result.stdout
    assert "--engine" in result.stdout and "--strategy" not in result.stdout


def test_importing_loads_neither_a_model_nor_ray():
    """Nor torch: the CLIs parse flags, find inputs, plan and check the bundle before importing it
    (their head starts fork before it; a second or more of start-up)."""
    code = ("import sys, pipelines, pipelines.images.cli, pipelines.images.ray, pipelines.video.cli, "
            "pipelines.video.export, pipelines.video.ray, captioning, captioning.bundle, captioning.options; "
            "from pipelines.video import TagOptions, VideoTooLong; from captioning import Tag, CaptionResult; "
            "print(*(m in sys.modules for m in ('ray', 'cv2', 'av', 'opentimelineio', 'torch')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False"] * 5, result.stderr


def test_decoding_options_as_every_tool_takes_them(clip, captioner, tmp_path, tiny_bundle_dir, capsys):
    short = tag_video(clip, captioner, fps=1.0, batch_size=8, max_length=3, length_penalty=1.0)
    assert all(len(s.caption.split()) <= 3 for s in short.shots)
    assert short.options["max_length"] == 3 and short.options["length_penalty"] == 1.0
    assert short.options["beam_size"] == captioner.decoding.beam_size  # the whole decoding in effect is recorded
    assert main([str(clip), "--weights", str(tiny_bundle_dir), "--device", "cpu", "--out", str(tmp_path),
                 "--max-length", "3", "--length-penalty", "1.0", "--batch-size", "8"]) == 0
    written = json.loads((tmp_path / "clip" / "clip.json").read_text())
    assert [s["caption"] for s in written["shots"]] == [s.caption for s in short.shots]
    assert written["options"]["max_length"] == 3
