"""The Gradio app: build_demo with the tiny bundle and its handlers called directly."""
from __future__ import annotations

import json
import zipfile

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import app


@pytest.fixture(scope="module")
def handlers(captioner, tmp_path_factory):
    return app.Handlers(captioner, max_upload_mb=1, workdir=str(tmp_path_factory.mktemp("ui")))


@pytest.fixture
def cat_path(photo, tmp_path):
    path = tmp_path / "cat.jpg"
    Image.fromarray(photo).save(path)
    return str(path)


def test_build_demo_has_named_endpoints(captioner):
    demo = app.build_demo(captioner)
    assert isinstance(demo, gr.Blocks)
    names = {d.get("api_name") for d in demo.config["dependencies"]}
    assert {"caption_image", "caption_batch", "tag_video", "search_video"} <= names


def test_caption_image_handler(handlers, cat_path, captioner):
    text, nbest, tags, words, heatmap, state = handlers.caption_image(cat_path, 3, 12)
    assert text == captioner.caption(cat_path, beam_size=3, max_length=12).text
    assert len(nbest) == 3 and nbest[0][0] == text
    assert next(iter(tags)) in {"tabby", "tiger cat", "Egyptian cat"}
    assert words["choices"] == [f"{i + 1}. {w}" for i, w in enumerate(text.split())]
    if text:
        assert heatmap.size == Image.open(cat_path).size
        other = handlers.attention_for_word(words["choices"][-1], state)
        assert other.size == heatmap.size


def test_bad_uploads_are_readable_errors(handlers, tmp_path):
    fake = tmp_path / "fake.jpg"
    fake.write_text("this is text")
    with pytest.raises(gr.Error, match="Cannot read this image"):
        handlers.caption_image(str(fake))
    with pytest.raises(gr.Error, match="Upload an image"):
        handlers.caption_image(None)
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (800, 800, 3), dtype=np.uint8)).save(big)
    with pytest.raises(gr.Error, match="the limit is 1 MB"):
        handlers.caption_image(str(big))


def test_batch_with_zip_and_bad_file(handlers, cat_path, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(cat_path, "folder/cat2.jpg")
        z.writestr("../evil.png", b"")  # path traversal attempt: flattened, then fails as empty
        z.writestr("notes.txt", "ignored")
    rows, csv_path, jsonl_path = handlers.caption_batch([cat_path, str(bad), str(archive)])
    assert [r[0] for r in rows][:2] == ["cat.jpg", "broken.png"] and len(rows) == 4
    assert not rows[0][3] and not rows[2][3]  # good images: no error (captions of random weights may be empty)
    assert rows[1][1] == "" and "broken.png" in rows[1][3]
    assert not (tmp_path.parent / "evil.png").exists()
    records = [json.loads(line) for line in open(jsonl_path)]
    assert len(records) == 4 and open(csv_path).readline().startswith("path,caption")
