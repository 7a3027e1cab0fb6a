"""Output files: SRT and WebVTT checked by a strict parser, CSV, JSON, thumbnails."""
from __future__ import annotations

import csv
import json
import re

import cv2
import numpy as np
import pytest

from captioning.api import Tag
from pipelines.video.export import timestamp, to_srt, to_vtt, write_outputs, write_thumbnails
from pipelines.video.results import FrameTags, Shot, ShotTag, Summary, VideoMeta, VideoTags
from test_video_clips import make_clip, red_clip

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
          captions=("a cat on a sofa", "a dog <runs> & jumps --> far", "")) -> VideoTags:
    shots, frames = [], []
    for n, ((start, end), caption) in enumerate(zip(shot_times, captions)):
        tags = (ShotTag(f"label{n}", 0.5, 1), ShotTag("second", 0.2, 1), ShotTag("word", 0.3, 1, "caption"))
        shots.append(Shot(n, start, end, 1, n * 100, start, caption, 0.5, tags))
        frames.append(FrameTags(n * 100, start, (Tag(f"label{n}", 0.5), Tag("second, with comma", 0.2)), n,
                                caption or None))
    meta = VideoMeta("clip.mp4", shot_times[-1][1], 25.0, 100, 64, 48, 1.0, len(frames))
    return VideoTags(meta, tuple(frames), tuple(shots), Summary(meta.duration, len(shots), ()), {})


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


def test_csv_has_one_row_per_frame(tmp_path):
    write_outputs(_tags(), tmp_path, "clip", formats=("csv",))
    rows = list(csv.DictReader(open(tmp_path / "clip.csv", newline="", encoding="utf-8")))
    assert [r["frame"] for r in rows] == ["0", "100", "200"]
    assert rows[1]["time"] == "2.500" and rows[1]["shot"] == "1"
    assert list(rows[0]) == ["frame", "time", "shot", "caption", "tags"]
    assert json.loads(rows[0]["tags"])[1] == {"label": "second, with comma", "probability": 0.2}  # as caption-images
    assert rows[0]["caption"] == "a cat on a sofa" and rows[2]["caption"] == ""


def test_write_outputs_all_formats_and_thumbnails(tmp_path):
    video = make_clip(tmp_path / "clip.avi", fps=5.0, shots=(("chelsea", 2.0), ("coffee", 2.0)))
    tags = _tags(shot_times=((0.0, 2.0), (2.0, 4.0)), captions=("cat", "coffee"))
    tags = VideoTags(VideoMeta(str(video), 4.0, 5.0, 20, 320, 240, 1.0, 2), tags.frames[:2],
                     tuple(Shot(s.index, s.start, s.end, 1, k, k / 5, s.caption, 0.5, s.tags)
                           for s, k in zip(tags.shots, (3, 15))), tags.summary, {})
    written = write_outputs(tags, tmp_path / "out", "clip", formats=("json", "csv", "srt", "vtt"), thumbnails=True)
    names = sorted(p.relative_to(tmp_path / "out").as_posix() for p in written)
    assert names == ["clip.csv", "clip.json", "clip.srt", "clip.vtt", "clip_keyframes/shot_000.jpg",
                     "clip_keyframes/shot_001.jpg"]
    assert json.loads((tmp_path / "out/clip.json").read_text())["shots"][1]["keyframe_index"] == 15
    first, second = (cv2.imread(str(tmp_path / f"out/clip_keyframes/shot_00{i}.jpg")) for i in (0, 1))
    assert first.shape == (240, 320, 3)
    assert np.abs(first.astype(int) - second.astype(int)).mean() > 20  # cat vs coffee
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_thumbnails_keep_the_colours(tmp_path):
    video = red_clip(tmp_path / "red.avi")
    tags = _tags(shot_times=((0.0, 1.0),), captions=("red",))
    tags = VideoTags(VideoMeta(str(video), 1.0, 10.0, 10, 64, 48, 1.0, 1), tags.frames[:1],
                     tuple(Shot(s.index, s.start, s.end, 1, 0, 0.0, s.caption, 0.5, s.tags) for s in tags.shots),
                     tags.summary, {})
    write_thumbnails(tags, tmp_path / "thumbs")
    b, g, r = cv2.imread(str(tmp_path / "thumbs/shot_000.jpg")).reshape(-1, 3).mean(0)  # imread gives BGR
    assert r > 200 and g < 40 and b < 40


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        write_outputs(_tags(), tmp_path, "clip", formats=("xml",))
