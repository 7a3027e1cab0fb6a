"""The timeline picture of the web UI's video tab (pipelines.video.timeline), drawn from results
made by hand: its size, one red mark per shot boundary where the boundary is, keyframes over
their shots (none where a shot is too short), tags under them, the selected shot outlined."""
from __future__ import annotations

import numpy as np
import pytest

from pipelines.video.timeline import BOUNDARY, SELECTED, Layout, clock, timeline
from test_video_export import _tags

SHOTS = ((0.0, 4.0), (4.0, 7.0), (7.0, 12.0), (12.0, 16.0))  # cuts at 4, 7 and 12 s of 16


def _x(t: float, end: float, layout: Layout = Layout()) -> float:
    return layout.margin + t / end * (layout.width - 2 * layout.margin)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) column of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def _colour_columns(picture, y: int, colour) -> list[tuple[int, int]]:
    row = np.asarray(picture)[y]
    return _runs(np.all(row == colour, axis=-1))


@pytest.mark.parametrize("width", [1200, 640])
def test_size_and_one_mark_per_boundary_at_its_time(width):
    layout = Layout(width=width)
    picture = timeline(_tags(SHOTS, ("a", "b", "c", "d")), layout=layout)
    assert picture.size == (width, layout.height) and picture.mode == "RGB"
    for y in (layout.band_top + layout.band // 2, layout.ruler + layout.thumbs // 2):  # the band, the keyframe row
        marks = _colour_columns(picture, y, BOUNDARY)
        assert len(marks) == 3, marks
        for (first, last), t in zip(marks, (4.0, 7.0, 12.0)):
            assert first - 1 <= _x(t, 16.0, layout) <= last + 1 and last - first <= 2
    assert not _colour_columns(picture, layout.height - 2, BOUNDARY)  # not under the band, where the tags are


def test_a_single_shot_has_no_mark():
    picture = timeline(_tags(((0.0, 5.0),), ("a",)))
    assert not np.all(np.asarray(picture) == BOUNDARY, axis=-1).any()


def test_keyframes_sit_over_their_shots_unless_too_short():
    tags = _tags(((0.0, 50.0), (50.0, 50.2), (50.2, 100.0)), ("a", "b", "c"))
    colours = {0: (0, 200, 0), 1: (0, 0, 230), 2: (250, 200, 0)}
    frames = {n: np.full((48, 64, 3), c, np.uint8) for n, c in colours.items()}
    layout = Layout()
    picture = np.asarray(timeline(tags, frames, layout=layout))
    y = layout.ruler + layout.thumbs // 2
    for n, (start, end) in ((0, (0.0, 50.0)), (2, (50.2, 100.0))):
        columns = np.flatnonzero(np.all(picture[y] == colours[n], axis=-1))
        assert _x(start, 100.0) < columns.min() and columns.max() < _x(end, 100.0)  # over its shot
        assert abs((columns.min() + columns.max()) / 2 - (_x(start, 100.0) + _x(end, 100.0)) / 2) <= 2  # centred
    assert not np.all(picture == colours[1], axis=-1).any()  # 0.2 s of 100: a 2 px slot, no picture
    keyframe_row = picture[layout.ruler:layout.ruler + layout.thumbs]
    assert np.all(keyframe_row[:, :int(_x(0, 100.0))] == 255)  # left of the axis: paper


def test_tags_under_wide_shots_and_a_selected_shot_outlined():
    tags = _tags(SHOTS, ("a", "b", "c", "d"))
    layout = Layout()
    plain, chosen = np.asarray(timeline(tags, layout=layout)), np.asarray(timeline(tags, selected=2, layout=layout))
    text = plain[layout.band_top + layout.band + 4:]
    for start, end in SHOTS:
        assert (text[:, int(_x(start, 16.0)) + 2:int(_x(end, 16.0)) - 2] < 128).any()  # a tag written under it
    outlined = np.flatnonzero(np.all(chosen == SELECTED, axis=-1).any(axis=0))
    assert not np.all(plain == SELECTED, axis=-1).any()
    assert _x(7.0, 16.0) <= outlined.min() and outlined.max() <= _x(12.0, 16.0)  # the third shot only


def test_clock():
    assert [clock(t) for t in (0, 4.04, 61.25, 3600)] == ["0:00.0", "0:04.0", "1:01.2", "60:00.0"]
