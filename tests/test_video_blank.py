"""Issue #23, video: near-uniform frames (black, grey, a flat colour) get no caption and no tags;
search finds everyday words by their synonyms and plurals, says when nothing matched, and ranks
by confidence on request (tiny random decoder, real encoder, generated clips)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from pipelines.video import tag_video
from pipelines.video.cli import _report, main
from pipelines.video.export import write_outputs
from pipelines.video.options import SearchOptions
from pipelines.video.results import BLANK, Segment, VideoTags, no_matches
from test_video_clips import SIZE, still_shot, write_av

FPS = 25
BLANK_TIMES = (2.0, 3.0, 6.0, 7.0)  # the samples (fps 1) on the black and the grey frames


def _flat(value, n: int) -> list[np.ndarray]:
    return [np.full((SIZE[1], SIZE[0], 3), value, np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def blank_clip(tmp_path_factory):
    """cat 0-2 s, black 2-4 s (a fade through black: its middle is a boundary), coffee 4-6 s, grey
    6-8 s (a shot of its own: cuts on both sides), rocket 8-10 s."""
    frames = (still_shot("chelsea", 2 * FPS) + _flat(0, 2 * FPS) + still_shot("coffee", 2 * FPS)
              + _flat(128, 2 * FPS) + still_shot("rocket", 2 * FPS))
    return write_av(tmp_path_factory.mktemp("blank") / "blank.mp4", frames, fps=FPS)


@pytest.fixture(scope="module")
def blank_tags(blank_clip, captioner) -> VideoTags:
    return tag_video(blank_clip, captioner, fps=1.0, batch_size=4)


def test_black_and_grey_frames_get_no_tags(blank_tags):
    frames = {f.time: f for f in blank_tags.frames}
    assert sorted(t for t, f in frames.items() if f.blank) == pytest.approx(BLANK_TIMES)
    for f in blank_tags.frames:
        assert (f.tags == ()) == f.blank and f.caption is None
    for segments in blank_tags.index.values():  # no tag is seen on a blank frame
        for s in segments:
            assert not any(s.start <= t < s.end for t in BLANK_TIMES), segments
    assert blank_tags.summary.tags and blank_tags.options["blank_spread"] == 8.0


def test_a_shot_of_blank_frames_has_no_caption_and_mixed_shots_use_their_pictures(blank_tags):
    grey = [s for s in blank_tags.shots if s.start <= 6.0 < s.end]
    assert len(grey) == 1 and grey[0].blank and grey[0].start == pytest.approx(6.0)
    assert grey[0].caption is None and grey[0].caption_confidence is None and grey[0].tags == ()
    frames = {f.index: f for f in blank_tags.frames}
    for shot in blank_tags.shots:
        if shot.blank:
            continue
        assert shot.caption is not None and shot.tags and not frames[shot.keyframe_index].blank
        own = [f for f in blank_tags.frames if f.shot == shot.index and not f.blank]
        assert all(t.frames <= len(own) for t in shot.tags if t.source != "caption")
    first = blank_tags.shots[0]  # the cat and the first half of the black
    assert first.frames > len([f for f in blank_tags.frames if f.shot == 0 and not f.blank]) >= 1
    assert first.tags[0].frames == 2  # the cat's label: in both cat frames, not the black one
    assert [s.caption for s in blank_tags.scenes if s.caption is None] == [None] * sum(
        all(blank_tags.shots[i].blank for i in range(s.first_shot, s.first_shot + s.shot_count))
        for s in blank_tags.scenes)


def test_every_format_stays_valid_with_a_blank_shot(blank_tags, tmp_path):
    d = json.loads(blank_tags.to_json())
    assert d["format_version"] == 4 and VideoTags.from_dict(d).to_dict() == d
    assert [s["blank"] for s in d["shots"]].count(True) == 1 and "caption_confidence" in d["shots"][0]
    written = write_outputs(blank_tags, tmp_path, "blank", formats=("json", "csv", "srt", "vtt", "chapters",
                                                                   "edl", "html"))
    text = {p.suffix: p.read_text() for p in written}
    pictured = [s for s in blank_tags.shots if not s.blank]
    assert text[".srt"].count(" --> ") == len(pictured) and "None" not in text[".srt"]
    assert "(no caption)" not in text[".srt"] and "None" not in text[".vtt"]
    assert BLANK in text[".html"] and ">None<" not in text[".html"] and "(blank)" in text[".edl"]
    assert "None" not in (tmp_path / "blank.chapters.vtt").read_text()


def test_every_frame_captioning_skips_blank_frames(blank_clip, captioner):
    tags = tag_video(blank_clip, captioner, fps=1.0, caption_every_frame=True)
    assert all((f.caption is None) == f.blank for f in tags.frames)
    assert [s.caption is None for s in tags.shots] == [s.blank for s in tags.shots]


def test_a_clip_of_black_frames_only(tmp_path, captioner):
    tags = tag_video(write_av(tmp_path / "black.mp4", _flat(0, 30) + _flat(16, 30), fps=FPS), captioner)
    assert all(s.blank and s.caption is None for s in tags.shots) and tags.index == {}
    assert tags.summary.tags == () and all(s.caption is None for s in tags.scenes)
    written = write_outputs(tags, tmp_path / "out", "black", formats=("srt", "vtt", "chapters", "html"))
    assert all("None" not in p.read_text() for p in written)
    assert tag_video(tmp_path / "black.mp4", captioner, blank_spread=0.0).shots[0].caption is not None  # 0: off


def test_synonyms_and_plurals_find_everyday_words(tmp_path, captioner):
    tags = tag_video(write_av(tmp_path / "cat.mp4", still_shot("chelsea", 50), fps=FPS), captioner)
    assert tags.index["cat"]  # the everyday word of the photo's classes
    for query in ("kitty", "Kitties", "house cat", "kitty-cat", "cats"):
        hits = tags.search(query)
        assert hits and hits[0].start == 0.0 and "cat" in hits[0].labels, query
    assert tags.search("deer") == [] and tags.search("machine") == []  # "machine" is not a name for a car
    fake = dataclasses.replace(tags, index={"dog": (Segment(0, 1, 0.2), Segment(2, 3, 0.9), Segment(4, 5, 0.5)),
                                            "car": (Segment(6, 7, 0.4),), "airplane": (Segment(8, 9, 0.7),)})
    for query in ("puppy", "puppies", "doggy", "hound", "dogs"):
        assert [s.start for s in fake.search(query)] == [0, 2, 4], query
    assert [s.start for s in fake.search("automobiles")] == [6]
    assert [s.start for s in fake.search("aeroplane")] == [8] == [s.start for s in fake.search("planes")]
    assert [s.confidence for s in fake.search("puppies", sort="confidence")] == [0.9, 0.5, 0.2]
    with pytest.raises(ValueError, match="sort must be one of time, confidence"):
        fake.search("dog", sort="size")


def test_cli_sorts_by_confidence_and_says_when_nothing_matched(blank_clip, tiny_bundle_dir, capsys):
    argv = [str(blank_clip), "--weights", str(tiny_bundle_dir), "--device", "cpu", "--query", "deer",
            "--query", "coffee", "--sort", "confidence"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert f"tag-video: no matches for 'deer' in {blank_clip}" in captured.err.splitlines()
    lines = [line.split("\t") for line in captured.out.splitlines()]
    assert lines and all(line[0] == str(blank_clip) for line in lines)
    confidences = [float(line[2]) for line in lines]
    assert confidences == sorted(confidences, reverse=True)


def test_report_orders_hits_and_warns_once_per_query(blank_tags):
    fake = dataclasses.replace(blank_tags, index={"dog": (Segment(0, 1, 0.2), Segment(2, 3, 0.9))})
    out, err = [], []
    _report(fake, ["puppy", "zebra"], out.append, search=SearchOptions(sort="confidence"), warn=err.append)
    assert [line.split("\t")[2] for line in out] == ["0.900", "0.200"]  # 0.2: the minimum is shown
    assert err == [no_matches("zebra", fake.video.path)] == [f"no matches for 'zebra' in {fake.video.path}"]


def test_report_hides_hits_under_the_minimum_confidence_and_counts_them(blank_tags):
    path = blank_tags.video.path
    fake = dataclasses.replace(blank_tags, index={"dog": (Segment(0, 1, 0.1), Segment(5, 6, 0.9)),
                                                  "cat": (Segment(0, 1, 0.05), Segment(3, 4, 0.19))})
    out, err = [], []
    _report(fake, ["dog", "cat", "zebra"], out.append, warn=err.append)  # SearchOptions(): from 0.2
    assert [line.split("\t")[1:3] for line in out] == [["00:00:05.000 --> 00:00:06.000", "0.900"]]
    assert err == [f"no matches for 'cat' in {path} (2 under --min-hit-confidence 0.2)",
                   f"no matches for 'zebra' in {path}"]
    out, err = [], []
    _report(fake, ["dog", "cat", "zebra"], out.append, search=SearchOptions(min_confidence=0), warn=err.append)
    assert [line.split("\t")[2] for line in out] == ["0.100", "0.900", "0.050", "0.190"]
    assert err == [f"no matches for 'zebra' in {path}"]


def test_search_options_check_themselves():
    assert SearchOptions() == SearchOptions(min_confidence=0.2, sort="time")
    assert SearchOptions(min_confidence=0).min_confidence == 0 and SearchOptions(min_confidence=1).sort == "time"
    for bad, field in (({"min_confidence": -0.1}, "min_confidence"), ({"min_confidence": 1.5}, "min_confidence"),
                       ({"min_confidence": float("nan")}, "min_confidence"), ({"sort": "size"}, "sort")):
        with pytest.raises(ValueError, match=f"^{field} "):
            SearchOptions(**bad)


def test_cli_hides_hits_under_the_minimum_confidence_unless_told(blank_clip, blank_tags, tiny_bundle_dir, capsys):
    """docs/experiments.md: nine in ten hits under 0.2 are wrong, so --query shows a segment from 0.2
    on; --min-hit-confidence 0 shows every one; a query whose hits are all hidden says how many."""
    cat = blank_tags.search("cat")  # the photo's cat labels (high), the random decoder's word "cat" (low)
    shown = [s for s in cat if s.confidence >= 0.2]
    assert shown and len(shown) < len(cat)
    low = next(label for label in sorted(blank_tags.index)
               if blank_tags.search(label) and max(s.confidence for s in blank_tags.search(label)) < 0.2)
    hidden = len(blank_tags.search(low))
    argv = [str(blank_clip), "--weights", str(tiny_bundle_dir), "--device", "cpu", "--batch-size", "4",
            "--query", "cat", "--query", low]
    assert main(argv) == 0
    captured = capsys.readouterr()
    confidences = [float(line.split("\t")[2]) for line in captured.out.splitlines()]
    assert confidences == pytest.approx([s.confidence for s in shown], abs=1e-3)
    assert (f"tag-video: no matches for {low!r} in {blank_clip} ({hidden} under --min-hit-confidence 0.2)"
            in captured.err.splitlines())
    assert main([*argv, "--min-hit-confidence", "0"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == len(cat) + hidden and "no matches" not in captured.err


def test_the_synonym_table_names_everyday_words():
    from captioning.everyday import everyday_table, synonym_words

    table = everyday_table()
    assert table.synonyms and all(set(ws) <= set(table.words) for ws in table.synonyms.values())
    assert not set(table.synonyms) & set(table.words)  # an everyday word is not a synonym of another
    assert synonym_words("Automobile") == ("car",) and synonym_words("bike") == ("motorcycle", "bicycle")
    assert synonym_words("aeroplane") == synonym_words("plane") == ("airplane",) and synonym_words("deer") == ()
