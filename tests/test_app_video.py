"""The web UI's video tab, its handlers called directly (as tests/test_app.py does): tagging gives
the shot table, the timeline picture and the state; a row picked shows that shot's keyframe at
full size and outlines it on the timeline; search reads the same state."""
from __future__ import annotations

import inspect
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import app
from pipelines.video import SearchOptions
from pipelines.video.results import VideoTags
from pipelines.video.timeline import BOUNDARY, SELECTED, Layout, clock
from test_video_clips import make_clip

SHOTS = (("chelsea", 3.0), ("coffee", 3.0), ("astronaut", 3.0))  # cuts at 3 and 6 s of 9


@pytest.fixture(scope="module")
def tagged(captioner, tmp_path_factory):
    """(handlers, what tag_video returned) for a 3-shot clip."""
    folder = tmp_path_factory.mktemp("ui_video")
    handlers = app.Handlers(captioner, workdir=str(folder / "work"), downloads=str(folder / "downloads"))
    clip = make_clip(folder / "three.mp4", fps=10.0, shots=SHOTS, fourcc="mp4v")
    return handlers, handlers.tag_video(str(clip), 1.0, 0.3)


def _select(row: int, column: int = 3) -> gr.SelectData:
    """What Gradio passes when a cell of the shots table is clicked."""
    return gr.SelectData(None, {"index": [row, column], "value": "", "row_value": [], "col_value": []})


def test_tagging_gives_rows_a_timeline_and_keyframes(tagged):
    _, (rows, picture, top, files, state) = tagged
    assert [row[:3] for row in rows] == [[1, "0:00.0", "0:03.0"], [2, "0:03.0", "0:06.0"], [3, "0:06.0", "0:09.0"]]
    layout = Layout()
    assert isinstance(picture, Image.Image) and picture.size == (layout.width, layout.height)
    band = np.asarray(picture)[layout.band_top + layout.band // 2]
    marks = np.flatnonzero(np.diff(np.all(band == BOUNDARY, axis=-1).astype(np.int8)) == 1)
    assert len(marks) == 2  # the two cuts
    assert sorted(state["keyframes"]) == [0, 1, 2] and top and len(files) == 3
    assert all(Image.open(path).size == (320, 240) for path in state["keyframes"].values())


def test_a_row_picked_shows_its_keyframe_and_outlines_it(tagged):
    handlers, (rows, _, _, _, state) = tagged
    keyframe, about, picture = handlers.select_shot(state, _select(1))
    assert keyframe == state["keyframes"][1]
    assert about.startswith("**Shot 2** of 3, 0:03.0 to 0:06.0; keyframe at ") and rows[1][3] in about
    outlined = np.flatnonzero(np.all(np.asarray(picture) == SELECTED, axis=-1).any(axis=0))
    layout = Layout()
    third = (layout.width - 2 * layout.margin) / 3
    assert layout.margin + third <= outlined.min() and outlined.max() <= layout.margin + 2 * third  # the second shot
    assert handlers.select_shot(state, _select(7)) == (gr.update(), gr.update(), gr.update())  # no such row
    with pytest.raises(gr.Error):
        handlers.select_shot(None, _select(0))  # nothing tagged yet


def test_search_reads_the_tab_state(tagged):
    handlers, (_, _, _, _, state) = tagged
    hits, said = handlers.search_video("cat", state)
    assert hits and hits[0][0] == "0:00.0" and said == ""
    by_confidence, _ = handlers.search_video("kitty", state, "confidence")  # a synonym of "cat" (issue #23)
    assert by_confidence and [r[2] for r in by_confidence] == sorted((r[2] for r in by_confidence), reverse=True)
    name = Path(VideoTags.from_dict(state["tags"]).video.path).name
    assert handlers.search_video("deer", state) == ([], f"no matches for 'deer' in {name}")  # as tag-video says it


def test_search_hides_hits_under_the_minimum_confidence_and_says_so(tagged):
    handlers, (_, _, _, _, state) = tagged
    tags = VideoTags.from_dict(state["tags"])
    low = next(label for label in sorted(tags.index)
               if tags.search(label) and max(s.confidence for s in tags.search(label)) < SearchOptions().min_confidence)
    hidden = len(tags.search(low))
    name = Path(tags.video.path).name
    assert handlers.search_video(low, state) == (  # the default minimum: none shown, the hidden ones counted
        [], f"no matches for {low!r} in {name} ({hidden} below the minimum confidence 0.2: lower it to see them)")
    rows, said = handlers.search_video(low, state, "time", 0.0)
    assert len(rows) == hidden and said == ""
    kept = tags.search("cat", min_confidence=0.5)  # the photo's cat labels, not the random decoder's word "cat"
    assert kept and kept != tags.search("cat")
    assert [r[:3] for r in handlers.search_video("cat", state, "time", 0.5)[0]] == [
        [clock(s.start), clock(s.end), round(s.confidence, 3)] for s in kept]
    with pytest.raises(gr.Error, match="min_confidence must be in"):
        handlers.search_video("cat", state, "time", 1.5)


def test_the_search_slider_defaults_to_tag_videos_minimum(captioner):
    default = SearchOptions().min_confidence
    assert inspect.signature(app.Handlers.search_video).parameters["min_confidence"].default == default
    demo = app.build_demo(captioner)
    components = {c["id"]: c for c in demo.config["components"]}
    (slider,) = [c for c in components.values() if c.get("props", {}).get("elem_id") == "video-min-confidence"]
    assert (slider["props"]["value"], slider["props"]["minimum"], slider["props"]["maximum"],
            slider["props"]["step"]) == (default, 0, 1, 0.05)
    (search,) = [d for d in demo.config["dependencies"] if d.get("api_name") == "search_video"]
    assert slider["id"] in search["inputs"] and (slider["id"], "release") in [tuple(t) for t in search["targets"]]


def test_the_table_selects_into_the_keyframe_and_the_timeline(captioner):
    demo = app.build_demo(captioner)
    names = {c.get("props", {}).get("elem_id"): c["id"] for c in demo.config["components"]}
    select = [d for d in demo.config["dependencies"]
              if [tuple(t) for t in d["targets"]] == [(names["shots-table"], "select")]]
    assert len(select) == 1
    assert set(select[0]["outputs"]) == {names["shot-keyframe"], names["timeline"], names["shot-about"]}
