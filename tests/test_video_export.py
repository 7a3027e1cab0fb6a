"""Output files: SRT, WebVTT and chapters checked by a strict parser, EDL, OpenTimelineIO, the HTML
report, CSV, JSON, thumbnails at the display aspect, and never over a file tag-video did not write."""
from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import subprocess
from fractions import Fraction

import cv2
import numpy as np
import pytest
from PIL import Image

from captioning.api import Tag
from pipelines.video.editors import to_edl, to_otio
from pipelines.video.export import OutputOptions, timestamp, to_srt, to_vtt, write_outputs
from pipelines.video.report import THUMB_HEIGHT
from pipelines.video.results import FrameTags, Scene, Shot, ShotTag, Summary, VideoMeta, VideoTags
from pipelines.video.subtitles import to_chapters
from pipelines.video.timecode import timecode
from pipelines.video.writing import OWNER_XATTR, OutputError
from test_video_clips import photo_rgb, red_clip, still_shot, write_av

_SRT_TIME = r"(\d{2}):([0-5]\d):([0-5]\d),(\d{3})"
_VTT_TIME = r"(\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3})"


def _seconds(match_groups) -> float:
    h, m, s, ms = map(int, match_groups)
    return h * 3600 + m * 60 + s + ms / 1000


def parse_srt(text: str) -> list[tuple[float, float, list[str]]]:
    """Strict SRT: blocks of number (1, 2, ...), 'HH:MM:SS,mmm --> HH:MM:SS,mmm', >= 1 text line."""
    assert text.endswith("\n") and "\r" not in text
    cues = []
    for n, block in enumerate(text.strip("\n").split("\n\n"), 1):
        lines = block.split("\n")
        assert lines[0] == str(n), f"cue number {lines[0]!r}, expected {n}"
        m = re.fullmatch(f"{_SRT_TIME} --> {_SRT_TIME}", lines[1])
        assert m, f"bad timing line {lines[1]!r}"
        text_lines = lines[2:]
        assert text_lines and all(line.strip() for line in text_lines) and not any("-->" in t for t in text_lines)
        cues.append((_seconds(m.groups()[:4]), _seconds(m.groups()[4:]), text_lines))
    _check_times(cues)
    return cues


def parse_vtt(text: str) -> list[tuple[float, float, list[str]]]:
    """Strict WebVTT: 'WEBVTT' header, blank line, cues of optional id, timing line, text lines."""
    assert text.startswith("WEBVTT\n\n") and text.endswith("\n")
    cues = []
    for block in text.strip("\n").split("\n\n")[1:]:
        lines = block.split("\n")
        if "-->" not in lines[0]:
            assert lines[0].strip() and "-->" not in lines[0]  # a cue identifier
            lines = lines[1:]
        m = re.fullmatch(f"{_VTT_TIME} --> {_VTT_TIME}", lines[0])
        assert m, f"bad timing line {lines[0]!r}"
        text_lines = lines[1:]
        assert text_lines and all(line.strip() for line in text_lines)
        assert not any("-->" in t or re.search(r"<(?!/?[biuc]\b)|&(?!amp;|lt;|gt;)", t) for t in text_lines)
        cues.append((_seconds(m.groups()[:4]), _seconds(m.groups()[4:]), text_lines))
    _check_times(cues)
    return cues


def _check_times(cues):
    assert cues, "no cues"
    for i, (start, end, _) in enumerate(cues):
        assert end > start, f"cue {i + 1} ends before it starts"
        if i:
            assert start >= cues[i - 1][1], f"cue {i + 1} overlaps the previous one"


def _tags(shot_times=((0.0, 2.5), (2.5, 3661.2346), (3661.2346, 3700.0)),
          captions=("a cat on a sofa", "a dog <runs> & jumps --> far", ""), *, path="clip.mp4", fps=25.0,
          keyframes=None, scenes_of=None) -> VideoTags:
    """Shots at ``shot_times`` (one tagged frame each, at its start unless ``keyframes`` gives its
    frame number); ``scenes_of``: the scene of each shot (default: one scene per shot)."""
    rate = Fraction(fps).limit_denominator(1001)
    frame = lambda t: round(t * fps)  # noqa: E731
    scenes_of = scenes_of or list(range(len(shot_times)))
    shots, frames = [], []
    for n, ((start, end), caption) in enumerate(zip(shot_times, captions)):
        key = keyframes[n] if keyframes else frame(start)
        tags = (ShotTag(f"label{n}", 0.5, 1), ShotTag("second", 0.2, 1), ShotTag("word", 0.3, 1, "caption"))
        shots.append(Shot(n, scenes_of[n], start, end, frame(start), frame(end), timecode(start, rate),
                          timecode(end, rate), None if n == 0 else "cut", 1, key, key / fps, caption, 0.5, tags))
        frames.append(FrameTags(key, key / fps, timecode(key / fps, rate), n, True,
                                (Tag(f"label{n}", 0.5), Tag("second, with comma", 0.2)), caption or None))
    scenes = []
    for scene in sorted(set(scenes_of)):
        members = [s for s in shots if s.scene == scene]
        first, last = members[0], members[-1]
        scenes.append(Scene(scene, first.start, last.end, first.start_frame, last.end_frame, first.start_timecode,
                            last.end_timecode, first.index, len(members), first.keyframe_index, first.keyframe_time,
                            first.caption, first.tags[:1]))
    end = shot_times[-1][1]
    meta = VideoMeta(str(path), end, 0.0, fps, frame(end), frame(end), 64, 48, 64, 48, "1:1", 0, str(rate), False,
                     1.0, len(frames))
    return VideoTags(meta, tuple(frames), tuple(shots), tuple(scenes), Summary(end, len(shots), len(scenes), ()), {})


def test_timestamps():
    assert timestamp(0) == "00:00:00,000"
    assert timestamp(3661.2346) == "01:01:01,235"
    assert timestamp(59.9996, sep=".") == "00:01:00.000"
    assert timestamp(-0.0004) == "00:00:00,000"


@pytest.mark.parametrize("cue_tags", [False, True])
def test_srt_is_valid(cue_tags):
    cues = parse_srt(to_srt(_tags(), cue_tags=cue_tags))
    assert [x for s, e, _ in cues for x in (s, e)] == pytest.approx([0.0, 2.5, 2.5, 3661.235, 3661.235, 3700.0])
    assert cues[0][2][0] == "a cat on a sofa" and cues[2][2][0] == "(no caption)"
    assert (cues[0][2][1:] == ["tags: label0, second"]) == cue_tags  # caption words are not repeated
    assert len(cues[0][2]) == (2 if cue_tags else 1)


@pytest.mark.parametrize("cue_tags", [False, True])
def test_vtt_is_valid_and_escaped(cue_tags):
    text = to_vtt(_tags(), cue_tags=cue_tags)
    cues = parse_vtt(text)
    assert [x for s, e, _ in cues for x in (s, e)] == pytest.approx([0.0, 2.5, 2.5, 3661.235, 3661.235, 3700.0])
    assert cues[1][2][0] == "a dog &lt;runs&gt; &amp; jumps -&gt; far"


def test_zero_length_shots_give_no_cue():
    tags = _tags(shot_times=((0.0, 1.0), (1.0, 1.0002), (1.0002, 2.0)), captions=("one", "two", "three"))
    cues = parse_srt(to_srt(tags))
    assert [c[2][0] for c in cues] == ["one", "three"]
    assert parse_vtt(to_vtt(tags))[1][:2] == (1.0, 2.0)


def test_chapters_are_one_cue_per_scene():
    tags = _tags(shot_times=((0.0, 2.0), (2.0, 4.5), (4.5, 9.0)), captions=("a cat", "the same <cat>", ""),
                 scenes_of=[0, 0, 1])
    text = to_chapters(tags)
    cues = parse_vtt(text)
    assert [(s, e) for s, e, _ in cues] == [(0.0, 4.5), (4.5, 9.0)]
    assert [c[2] for c in cues] == [["a cat"], ["Scene 2"]]  # a scene without a caption gets its number
    assert "chapter-1\n" in text


def test_edl_is_cmx3600_with_one_cut_per_shot():
    tags = _tags(shot_times=((0.0, 2.0), (2.0, 4.5), (4.5, 3700.0)), captions=("a cat", "a dög", "x" * 500),
                 fps=30000 / 1001)
    tags = VideoTags(VideoMeta(**{**tags.video.__dict__, "drop_frame": True}), tags.frames, tags.shots, tags.scenes,
                     tags.summary, {})
    lines = to_edl(tags, title="my clip").split("\n")
    assert lines[:3] == ["TITLE: my clip", "FCM: DROP FRAME", ""]
    events = [line for line in lines if re.match(r"^\d{3}  ", line)]
    tc = r"\d\d:\d\d:\d\d[:;]\d\d"
    assert len(events) == 3 and all(re.fullmatch(rf"\d{{3}}  AX       V     C        ({tc} ){{3}}{tc}", e)
                                      for e in events)
    for event, shot in zip(events, tags.shots):
        src_in, src_out, rec_in, rec_out = event.split()[-4:]
        assert (src_in, src_out) == (rec_in, rec_out) == (shot.start_timecode, shot.end_timecode)
    # 3700 s at 29.97 drop-frame: frame 110889; drop-frame meets the clock every 10 minutes, lags <= 2 frames between
    assert events[2].split()[-3] == "01:01:39;29" and tags.shots[2].start_timecode == "00:00:04;15"
    assert "* FROM CLIP NAME: clip.mp4" in lines and all(line.isascii() for line in lines)
    assert max(len(line) for line in lines) < 300


def test_otio_round_trips_through_opentimelineio(tmp_path):
    otio = pytest.importorskip("opentimelineio")
    video = tmp_path / "clip.mp4"
    tags = _tags(shot_times=((0.0, 2.0), (2.0, 4.5), (4.5, 9.0)), captions=("a cat", "a dog", "a cup"), path=video,
                 scenes_of=[0, 0, 1])
    timeline = otio.adapters.read_from_string(to_otio(tags, title="clip"), "otio_json")
    (track,) = timeline.tracks
    clips = list(track)
    assert [(c.source_range.start_time.value, c.source_range.duration.value) for c in clips] == [(0, 50), (50, 62),
                                                                                              (112, 113)]
    assert {c.source_range.start_time.rate for c in clips} == {25.0}
    assert [c.metadata["tag-video"]["caption"] for c in clips] == ["a cat", "a dog", "a cup"]
    assert clips[0].media_reference.target_url == video.resolve().as_uri()
    assert [(m.name, m.marked_range.start_time.value) for m in track.markers] == [("a cat", 0), ("a cup", 112)]


def test_csv_has_one_row_per_frame(tmp_path):
    write_outputs(_tags(), tmp_path, "clip", formats=("csv",))
    rows = list(csv.DictReader(open(tmp_path / "clip.csv", newline="", encoding="utf-8")))
    assert [r["frame"] for r in rows] == ["0", "62", "91531"]
    assert rows[1]["time"] == "2.480" and rows[1]["shot"] == "1" and rows[1]["timecode"] == "00:00:02:12"
    assert list(rows[0]) == ["frame", "time", "timecode", "shot", "caption", "tags"]
    assert json.loads(rows[0]["tags"])[1] == {"label": "second, with comma", "probability": 0.2}  # as caption-images
    assert rows[0]["caption"] == "a cat on a sofa" and rows[2]["caption"] == ""


@pytest.fixture(scope="module")
def pal_clip(tmp_path_factory):
    """704x576 stored, 16:9 displayed (16:11 pixels): a squeezed photo, then a cut to another."""
    frames = [cv2.resize(f, (704, 576), interpolation=cv2.INTER_AREA)
              for f in still_shot("astronaut", 25, size=(1024, 576)) + still_shot("rocket", 25, size=(1024, 576))]
    return write_av(tmp_path_factory.mktemp("pal") / "pal.mp4", frames, sar=Fraction(16, 11))


def _pal_tags(path) -> VideoTags:
    tags = _tags(shot_times=((0.0, 1.0), (1.0, 2.0)), captions=("astronaut", "rocket"), path=path, keyframes=(12, 37))
    return VideoTags(VideoMeta(**{**tags.video.__dict__, "width": 1024, "height": 576, "stored_width": 704,
                                  "stored_height": 576, "sample_aspect_ratio": "16:11"}),
                     tags.frames, tags.shots, tags.scenes, tags.summary, {})


def test_all_formats_and_thumbnails_at_the_display_aspect(tmp_path, pal_clip):
    out = tmp_path / "out"
    written = write_outputs(_pal_tags(pal_clip), out, "pal", formats=OutputOptions(None, ("json,csv", "srt", "vtt",
                            "chapters,edl,otio,html")).formats, thumbnails=True)
    names = sorted(p.relative_to(out).as_posix() for p in written)
    assert names == ["pal.chapters.vtt", "pal.csv", "pal.edl", "pal.html", "pal.json", "pal.otio", "pal.srt",
                     "pal.vtt", "pal_keyframes/shot_000.jpg", "pal_keyframes/shot_001.jpg"]
    first, second = (cv2.imread(str(out / f"pal_keyframes/shot_00{i}.jpg")) for i in (0, 1))
    assert first.shape == (576, 1024, 3)  # stretched to 16:9, not squeezed
    expected = cv2.cvtColor(still_shot("astronaut", 25, size=(1024, 576))[12], cv2.COLOR_RGB2BGR)
    assert np.abs(first.astype(int) - expected).mean() < 10 and np.abs(first.astype(int) - second).mean() > 20
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert all(os.getxattr(p, OWNER_XATTR) for p in written)


def test_html_report_is_self_contained_with_a_strip_per_shot(tmp_path, pal_clip):
    write_outputs(_pal_tags(pal_clip), tmp_path, "pal", formats=("html",), strip=3)
    page = (tmp_path / "pal.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert not re.search(r"(src|href)=\"(?!data:|#)", page) and "http" not in page.replace("http-equiv", "")
    assert page.count('<div class="shot"') == 2 and page.count('<h2 id="scene-') == 2
    images = re.findall(r'<img( class="key")? src="data:image/jpeg;base64,([^"]+)"', page)
    assert len(images) == 4 and sum(bool(key) for key, _ in images) == 2  # first frame + keyframe, per shot
    sizes = {Image.open(io.BytesIO(base64.b64decode(data))).size for _, data in images}
    assert sizes == {(160, THUMB_HEIGHT)}  # 16:9
    assert "astronaut" in page and "00:00:01:00" in page


def test_files_tag_video_did_not_write_are_never_replaced(tmp_path, pal_clip):
    tags = _pal_tags(pal_clip)
    (tmp_path / "pal.srt").write_text("my own subtitles\n")
    with pytest.raises(OutputError, match=r"pal\.srt: exists and was not written by tag-video"):
        write_outputs(tags, tmp_path, "pal", formats=("json", "srt"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pal.srt"]  # nothing written, the file untouched
    assert (tmp_path / "pal.srt").read_text() == "my own subtitles\n"
    (tmp_path / "pal.srt").unlink()
    write_outputs(tags, tmp_path, "pal", formats=("json", "srt"))
    again = write_outputs(tags, tmp_path, "pal", formats=("json", "srt"), cue_tags=True)  # ours: replaced
    assert "tags: label0" in (tmp_path / "pal.srt").read_text() and len(again) == 2
    (tmp_path / "pal.json").write_text("{}")  # changed by someone since
    with pytest.raises(OutputError, match="pal.json"):
        write_outputs(tags, tmp_path, "pal", formats=("json",))
    (tmp_path / "pal_keyframes").mkdir()
    (tmp_path / "pal_keyframes" / "shot_001.jpg").symlink_to(tmp_path / "pal.srt")
    with pytest.raises(OutputError, match="shot_001.jpg"):
        write_outputs(tags, tmp_path, "pal", formats=("srt",), thumbnails=True)


def test_thumbnails_keep_the_colours(tmp_path):
    video = red_clip(tmp_path / "red.avi")
    tags = _tags(shot_times=((0.0, 1.0),), captions=("red",), path=video, fps=10.0)
    write_outputs(tags, tmp_path / "out", "red", formats=("json",), thumbnails=True)
    b, g, r = cv2.imread(str(tmp_path / "out/red_keyframes/shot_000.jpg")).reshape(-1, 3).mean(0)  # imread: BGR
    assert r > 200 and g < 40 and b < 40


def test_rotated_video_thumbnails_are_upright(tmp_path):
    img = photo_rgb("chelsea")[:240, :320]
    video = write_av(tmp_path / "rot.mp4", [img] * 5, rotation=90)
    tags = _tags(shot_times=((0.0, 0.2),), captions=("cat",), path=video)
    write_outputs(tags, tmp_path, "rot", formats=("json",), thumbnails=True)
    shown = cv2.cvtColor(cv2.imread(str(tmp_path / "rot_keyframes/shot_000.jpg")), cv2.COLOR_BGR2RGB)
    assert shown.shape == (320, 240, 3) and np.abs(shown.astype(int) - np.rot90(img)).mean() < 12


@pytest.mark.parametrize("formats", [("xml",), ("json,pdf",), ()])
def test_unknown_formats_are_refused(tmp_path, formats):
    with pytest.raises(ValueError, match="formats"):
        write_outputs(_tags(), tmp_path, "clip", formats=formats)
    assert list(tmp_path.iterdir()) == []


def test_temp_files_of_a_killed_run_are_removed_and_live_ones_kept(tmp_path):
    from pipelines.video.writing import clean_stale_temps

    dead = _dead_pid()
    stale, live, other = (tmp_path / f".clip.json.tag-video-{dead}.tmp", tmp_path / f".clip.vtt.tag-video-{os.getpid()}.tmp",
                          tmp_path / f".clip.json.other-{dead}.tmp")
    for f in (stale, live, other):
        f.write_text("partial")
    assert clean_stale_temps(tmp_path) == [stale.name]
    assert not stale.exists() and live.exists() and other.exists()


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid  # reaped: no process has it (pids are not reused this quickly)
