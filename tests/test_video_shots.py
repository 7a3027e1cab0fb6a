"""Keyframes, scenes, tag segments, caption words, search and the JSON form, on hand-made vectors (no model)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from captioning.api import CaptionResult, Tag
from pipelines.video.aggregate import build_index, caption_confidence
from pipelines.video.results import (FORMAT_VERSION, FrameTags, Scene, Segment, Shot, ShotTag, Summary, VideoMeta,
                                     VideoTags, merge_segments)
from pipelines.video.shots import CENTRAL_TOLERANCE, OpenShot, RawShot, frame_spans, group_scenes
from pipelines.video.words import caption_words, matches, singular


def _unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def _scene(rng, base, n, jitter=0.05):
    return [_unit(base + jitter * rng.standard_normal(base.shape)) for _ in range(n)]


def _shot(vectors, first=0, **kw):
    shot = OpenShot(first, **kw)
    for i, v in enumerate(vectors):
        shot.add(v, lambda i=i: f"payload {first + i}")
    return shot.close()


def test_keyframe_is_the_most_central_frame_of_the_shot():
    rng = np.random.default_rng(0)
    vectors = _scene(rng, rng.standard_normal(64), 7)
    raw = _shot(vectors, first=10)
    mean = np.mean(vectors, axis=0)
    scores = [float(v @ mean) for v in vectors]
    best = max(scores)  # the first frame as close to the mean as the closest, up to float noise
    assert raw.keyframe == 10 + next(i for i, x in enumerate(scores) if x >= best - CENTRAL_TOLERANCE * abs(best))
    assert (raw.first, raw.stop, raw.payload) == (10, 17, f"payload {raw.keyframe}")


def test_near_identical_frames_do_not_let_float_noise_pick_the_keyframe():
    rng = np.random.default_rng(3)
    base = rng.standard_normal(64)
    for seed in range(5):  # the same still frame, encoded with noise of another thread count
        noise = np.random.default_rng(seed)
        vectors = [v / np.linalg.norm(v) for v in (base + 1e-6 * noise.standard_normal(64) for _ in range(4))]
        assert _shot(vectors).keyframe == 0


def test_open_shot_memory_is_bounded_in_a_long_shot():
    rng = np.random.default_rng(1)
    shot = OpenShot(0, max_stored=8)
    stored = []
    for i, v in enumerate(_scene(rng, rng.standard_normal(32), 200, jitter=0.01)):
        shot.add(v, lambda i=i: i)
        stored.append(len(shot._stored))
    raw = shot.close()
    assert max(stored) <= 8 and (raw.first, raw.stop) == (0, 200)
    assert raw.payload == raw.keyframe and raw.keyframe % 32 == 0  # evenly thinned candidates


def test_frame_spans_stop_at_the_shot_boundaries():
    times = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    shot_of = np.array([0, 0, 1, 1, 2])
    starts, ends = frame_spans(times, shot_of, np.array([0.0, 1.8, 3.4, 5.0]))  # shots: 0-1.8, 1.8-3.4, 3.4-5
    assert starts.tolist() == [0.0, 0.5, 1.8, 2.5, 3.4] and ends.tolist() == [0.5, 1.8, 2.5, 3.4, 5.0]


def test_scenes_join_similar_shots_within_the_span():
    rng = np.random.default_rng(2)
    a, b, c = (rng.standard_normal(64) for _ in range(3))
    unit = lambda v: _unit(v + 0.05 * rng.standard_normal(64))  # noqa: E731
    shots = np.stack([unit(a), unit(b), unit(a), unit(b), unit(c), unit(c)])  # a dialogue, then somewhere else
    assert group_scenes(shots, threshold=0.3, span=4) == [[0, 1, 2, 3], [4, 5]]
    assert group_scenes(shots, threshold=0.3, span=1) == [[0], [1], [2], [3], [4, 5]]  # neighbours only
    assert group_scenes(shots[:1], threshold=0.3, span=4) == [[0]]


def test_caption_words_keep_content_nouns():
    assert caption_words("A black dog is running through the grass .") == ["dog", "grass"]
    assert caption_words("Two children are playing on the beach near the waves") == ["child", "beach", "wave"]
    assert caption_words("two men are sitting on a wooden bench") == ["man", "bench"]
    assert caption_words("a man in a red shirt rides a bike in front of a building") == \
        ["man", "shirt", "bike", "building"]
    assert caption_words("dogs <unk> puppies benches the the 3 dogs") == ["dog", "puppy", "bench"]
    assert caption_words("") == []


def test_singular_and_matching():
    assert [singular(w) for w in ("dogs", "grass", "puppies", "boxes", "bus", "cat", "women")] == \
        ["dog", "grass", "puppy", "box", "bus", "cat", "woman"]
    assert matches("tiger cat", "cat") and matches("Egyptian cat", "EGYPTIAN CAT") and matches("dog", "Dogs")
    assert not matches("tabby", "cat") and not matches("hotdog", "dog") and not matches("cat", "")
    assert not matches("tiger cat", "tiger shark")


def test_merge_segments():
    merged = merge_segments([Segment(4, 6, 0.2, ("b",)), Segment(0, 2, 0.5, ("a",)), Segment(2, 3, 0.9, ("b",)),
                             Segment(10, 11, 0.1, ("a",))])
    assert merged == [Segment(0, 3, 0.9, ("a", "b")), Segment(4, 6, 0.2, ("b",)), Segment(10, 11, 0.1, ("a",))]


def _caption(text, logprob=-2.0):
    return CaptionResult(text, text.split(), logprob, logprob)


def _example() -> VideoTags:
    """Two shots: a cat (0-2.5 s) and a dog on grass (2.5-6 s), frames every second, 10 fps."""
    cat, dog = [Tag("tabby", 0.7), Tag("tiger cat", 0.2)], [Tag("golden retriever", 0.6), Tag("tabby", 0.05)]
    frames = [FrameTags(i * 10, float(i), f"00:00:0{i}:00", int(i >= 3), True, tuple(cat if i < 3 else dog))
              for i in range(6)]
    caps = [_caption("a cat sits on a sofa"), _caption("a dog runs on the grass")]
    shots = [Shot(0, 0, 0.0, 2.5, 0, 25, "00:00:00:00", "00:00:02:05", None, 3, 10, 1.0, caps[0].text,
                  caption_confidence(caps[0]),
                  (ShotTag("tabby", 0.7, 3), ShotTag("cat", caption_confidence(caps[0]), 1, "caption"),
                   ShotTag("sofa", caption_confidence(caps[0]), 1, "caption"))),
             Shot(1, 1, 2.5, 6.0, 25, 60, "00:00:02:05", "00:00:06:00", "cut", 3, 40, 4.0, caps[1].text,
                  caption_confidence(caps[1]),
                  (ShotTag("golden retriever", 0.6, 3), ShotTag("dog", caption_confidence(caps[1]), 1, "caption"),
                   ShotTag("grass", caption_confidence(caps[1]), 1, "caption")))]
    scenes = [Scene(n, s.start, s.end, s.start_frame, s.end_frame, s.start_timecode, s.end_timecode, n, 1,
                    s.keyframe_index, s.keyframe_time, s.caption, s.tags[:1]) for n, s in enumerate(shots)]
    starts, ends = frame_spans(np.arange(6.0), np.array([0, 0, 0, 1, 1, 1]), np.array([0.0, 2.5, 6.0]))
    index = build_index(frames, shots, starts, ends, None)
    meta = VideoMeta("clip.mp4", 6.0, 0.0, 10.0, 60, 60, 320, 240, 320, 240, "1:1", 0, "10", False, 1.0, 6)
    return VideoTags(meta, tuple(frames), tuple(shots), tuple(scenes), Summary(6.0, 2, 2, (ShotTag("tabby", 0.4, 4),)),
                     index)


def test_index_runs_of_frames_and_caption_words():
    tags = _example()
    assert tags.index["tabby"] == (Segment(0.0, 6.0, pytest.approx((0.7 * 2.5 + 0.05 * 3.5) / 6.0)),)
    assert tags.index["golden retriever"] == (Segment(2.5, 6.0, pytest.approx(0.6)),)
    assert tags.index["cat"] == (Segment(0.0, 2.5, pytest.approx(np.exp(-2.0 / 7))),)
    assert set(tags.index) == {"tabby", "tiger cat", "golden retriever", "cat", "sofa", "dog", "grass"}


def test_search_is_case_insensitive_matches_words_and_merges():
    tags = _example()
    assert [(s.start, s.end, s.labels) for s in tags.search("CAT")] == [(0.0, 2.5, ("cat", "tiger cat"))]
    assert [(s.start, s.end) for s in tags.search("dogs")] == [(2.5, 6.0)]
    assert [(s.start, s.end) for s in tags.search("Golden Retriever")] == [(2.5, 6.0)]
    assert tags.search("tabby", min_confidence=0.5) == []
    assert tags.search("elephant") == [] and tags.search("  ") == []


def test_json_round_trip_and_versioning():
    tags = _example()
    d = json.loads(tags.to_json())
    assert d["format_version"] == FORMAT_VERSION and list(d)[0] == "format_version"
    assert d["shots"][1]["tags"][1] == {"label": "dog", "probability": round(np.exp(-2.0 / 7), 4),
                                        "frames": 1, "source": "caption"}
    assert d["frames"][0] == {"index": 0, "time": 0.0, "timecode": "00:00:00:00", "shot": 0, "sampled": True,
                              "tags": [{"label": "tabby", "probability": 0.7}, {"label": "tiger cat", "probability": 0.2}],
                              "caption": None, "blank": False}
    assert d["shots"][1]["blank"] is False and d["shots"][1]["caption_confidence"] is not None
    assert d["shots"][1]["start_frame"] == 25 and d["shots"][1]["transition"] == "cut" and d["scenes"][1]["first_shot"] == 1
    assert d["index"]["dog"] == [{"start": 2.5, "end": 6.0, "confidence": round(np.exp(-2.0 / 7), 4)}]
    again = VideoTags.from_dict(d)
    assert again.to_dict() == d and [s.labels for s in again.search("dog")] == [("dog",)]
    with pytest.raises(ValueError, match="format_version"):
        VideoTags.from_dict({**d, "format_version": 99})
    old = {**d, "format_version": 2, "frames": [{k: v for k, v in f.items() if k != "blank"} for f in d["frames"]],
           "shots": [{k: v for k, v in s.items() if k != "blank"} for s in d["shots"]]}
    assert VideoTags.from_dict(old).to_dict() == d  # version 2 reads as 3 with nothing blank


def test_raw_shot_is_immutable():
    with pytest.raises(AttributeError):
        RawShot(0, 1, 0, None).first = 3


def test_blank_frames_are_never_keyframes():
    """Issue #23: a blank frame is counted but is no keyframe candidate and not in the mean; a shot of
    blank frames only is blank, its first frame its keyframe, with no payload."""
    shot = OpenShot(10)
    vectors = np.eye(3)
    shot.add(vectors[0], lambda: "black", blank=True)
    shot.add(vectors[1], lambda: "cat")
    shot.add(vectors[2], lambda: "grey", blank=True)
    raw = shot.close()
    assert (raw.first, raw.stop, raw.keyframe, raw.payload, raw.blank) == (10, 13, 11, "cat", False)
    only_blank = OpenShot(5)
    for v in vectors:
        only_blank.add(v, lambda: 1 / 0, blank=True)  # the payload of a blank frame is never made
    assert only_blank.close() == RawShot(5, 8, 5, None, blank=True) and len(only_blank) == 3
