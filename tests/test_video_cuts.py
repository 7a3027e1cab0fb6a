"""The cut detector on generated clips (PyAV-encoded, known frames): hard cuts at the exact frame,
one boundary per fade or dissolve, nothing from flashes or camera motion."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipelines.video.cuts import Boundary, CutDetector, CutOptions
from pipelines.video.io import VideoReader
from test_video_clips import dissolve, fade, flash, pan_shot, still_shot, write_av, zoom_shot

BLACK = np.zeros((240, 320, 3), np.uint8)


def boundaries(path, **options) -> list[Boundary]:
    with VideoReader(path) as reader:
        detector = CutDetector(CutOptions(**options), fps=float(reader.info.rate))
        found = [b for f in reader.frames() for b in detector.push(f.index, f.time, f.luma()).final]
    return found + detector.finish().final


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("cut_clips")
    S = still_shot
    made = {
        # hard cuts at frames 50, 90, 150 between very different photos, slow drift inside each shot
        "cuts": S("chelsea", 50) + S("coffee", 40) + S("astronaut", 60) + S("rocket", 30),
        # chelsea fades out over 12 frames, 5 black frames (50-54), coffee fades in over 12
        "fade": fade(S("chelsea", 50), 12, out=True) + [BLACK] * 5 + fade(S("coffee", 50), 12, out=False),
        # the same without a black hold: the darkest frames are 49-50
        "dip": fade(S("chelsea", 50), 12, out=True) + fade(S("coffee", 50), 12, out=False),
        # astronaut dissolves into rocket over frames 45-59 (15 frames of mix)
        "dissolve": dissolve(S("astronaut", 60), S("rocket", 60), 15),
        # a 2-frame flash at 40, and a 3-frame flash at 30 then a cut at 80
        "flash": flash(S("coffee", 80), 40, 2),
        "flash3": flash(S("astronaut", 80), 30, 3) + S("rocket", 40),
        # fast pans and zooms over one photo each, cut between them at 50 and 100
        "motion": pan_shot("astronaut", 50) + zoom_shot("coffee", 50) + pan_shot("chelsea", 60),
        # fast pan, then a still: one cut at 60
        "pan_cut": pan_shot("rocket", 60) + S("chelsea", 40),
        # black from the start, fading in; a long black (frames 60-119) between cuts; fading out to black at the end
        "blacks": [BLACK] * 10 + fade(S("coffee", 50), 10, out=False) + [BLACK] * 60
        + fade(S("astronaut", 50), 12, out=True) + [BLACK] * 10,
    }
    return {name: write_av(d / f"{name}.mp4", frames) for name, frames in made.items()}


def test_hard_cuts_are_found_at_their_exact_frame(clips):
    found = boundaries(clips["cuts"])
    assert [(b.frame, b.kind) for b in found] == [(50, "cut"), (90, "cut"), (150, "cut")]
    assert [b.time for b in found] == pytest.approx([2.0, 3.6, 6.0])


def test_cuts_between_fast_camera_moves_are_exact_and_the_moves_cut_nothing(clips):
    assert [(b.frame, b.kind) for b in boundaries(clips["motion"])] == [(50, "cut"), (100, "cut")]
    assert [(b.frame, b.kind) for b in boundaries(clips["pan_cut"])] == [(60, "cut")]


@pytest.mark.parametrize("name,black", [("fade", range(50, 55)), ("dip", range(47, 53))])
def test_a_fade_through_black_is_one_boundary_inside_the_black(clips, name, black):
    found = boundaries(clips[name])
    assert len(found) == 1 and found[0].kind == "fade" and found[0].frame in black, found


def test_black_at_either_end_is_no_boundary_and_a_long_black_is_one(clips):
    found = boundaries(clips["blacks"])
    assert [(b.frame, b.kind) for b in found] == [(90, "fade")]  # the middle of the black between the pictures


def test_a_dissolve_is_one_boundary_inside_it(clips):
    found = boundaries(clips["dissolve"])
    assert len(found) == 1 and found[0].kind == "dissolve" and 48 <= found[0].frame <= 56, found


def test_flashes_do_not_cut(clips):
    assert boundaries(clips["flash"]) == []
    assert [(b.frame, b.kind) for b in boundaries(clips["flash3"])] == [(80, "cut")]


def test_variable_frame_rate_and_a_late_start_keep_exact_frames_and_times(tmp_path):
    frames = still_shot("chelsea", 40) + still_shot("coffee", 40)
    times = [i * 0.04 if i < 30 else 1.2 + (i - 30) * 0.1 for i in range(80)]  # 25 fps, then 10 fps
    found = boundaries(write_av(tmp_path / "vfr.mkv", frames, times=times, start=1.5, audio=True))
    assert [(b.frame, b.kind) for b in found] == [(40, "cut")]
    assert found[0].time == pytest.approx(1.5 + 1.2 + 1.0)  # the player's clock: the audio starts at 0


def test_min_shot_frames_drops_boundaries_too_close(clips):
    assert [b.frame for b in boundaries(clips["cuts"], min_shot_frames=41)] == [50, 150]


def test_the_detector_reports_in_order_with_a_horizon():
    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 255, (30, 40), dtype=np.uint8) for _ in range(4)]
    detector = CutDetector(CutOptions(), fps=25.0)
    final, horizons = [], []
    for i in range(200):
        noise = rng.integers(0, 3, (30, 40), dtype=np.uint8)
        update = detector.push(i, i / 25, pictures[i // 50] + noise)
        final += update.final
        horizons.append(update.horizon)
        assert all(b.frame <= update.horizon for b in update.final)
    final += detector.finish().final
    assert [b.frame for b in final] == [50, 100, 150]
    assert horizons == sorted(horizons) and horizons[-1] >= 200 - detector.window - 5


@pytest.mark.parametrize("field,value", [("cut_ratio", 0.5), ("cut_window", 0), ("dissolve_monotony", 1.5),
                                         ("min_shot_frames", 0), ("black_level", -1)])
def test_invalid_options(field, value):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(CutOptions(), **{field: value})
