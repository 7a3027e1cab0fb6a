"""The Gradio app: build_demo with the tiny bundle, its handlers called directly, and the
image endpoint through Gradio's own upload and preprocessing (a launched demo + gradio_client)."""
from __future__ import annotations

import csv
import io
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import app
from captioning import ImageError, load_image
from pipelines.video.io import FALLBACK_FPS
from test_video import no_duration_clip
from test_video_clips import make_clip


@pytest.fixture(scope="module")
def handlers(captioner, tmp_path_factory):
    return app.Handlers(captioner, max_upload_mb=1, workdir=str(tmp_path_factory.mktemp("ui")),
                        downloads=str(tmp_path_factory.mktemp("downloads")))


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
    assert demo.delete_cache == app.CACHE_CLEANUP


def test_handlers_leave_no_folder_behind(captioner, tmp_path, monkeypatch):
    """Without a workdir a request's scratch folder is made in the temp folder and removed with it;
    building the handlers makes none (each app start and test used to leave an empty one)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    app.Handlers(captioner, downloads=str(tmp_path / "downloads"))
    assert list(tmp_path.iterdir()) == []


def test_the_header_gives_the_bundles_dev_scores():
    flat = {"split": "dev", "BLEU-4": 0.2376, "CIDEr-D": 0.6066}
    both = {"split": "dev", "datasets": {"flickr8k": {"CIDEr-D": 0.6066}, "coco_subset": {"CIDEr-D": 0.4479}}}
    assert app.dev_quality(flat) == "BLEU-4 0.238, CIDEr-D 0.607"
    assert app.dev_quality(both) == "CIDEr-D flickr8k 0.607, coco_subset 0.448"
    assert app.dev_quality({}) == ""


def test_caption_image_handler(handlers, cat_path, captioner):
    text, nbest, tags, words, heatmap, state, everyday, trust = handlers.caption_image(cat_path, 3, 12)
    assert trust == ""  # the tiny bundle has no calibration: no confidence, nothing said
    assert text == captioner.caption(cat_path, beam_size=3, max_length=12).text
    assert len(nbest) == 3 and nbest[0][0] == text
    assert next(iter(tags)) in {"tabby", "tiger cat", "Egyptian cat"}
    assert next(iter(everyday)).startswith("cat — ") and max(everyday.values()) >= max(tags.values())  # summed
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
    assert not rows[0][5] and not rows[2][5]  # good images: no error (captions of random weights may be empty)
    assert rows[1][1] == "" and "broken.png" in rows[1][5]
    assert len(rows[0]) == len(app.BATCH_COLUMNS) and rows[0][2] is None and rows[0][3] == ""  # no calibration
    assert not (tmp_path.parent / "evil.png").exists()
    records = [json.loads(line) for line in open(jsonl_path)]
    assert len(records) == 4 and {"path", "caption", "error"} <= set(next(csv.reader(open(csv_path))))


# -- video length (issue #18.7) ----------------------------------------------------------


def test_video_without_a_duration_stops_at_the_limit(captioner, tmp_path, decoded_frames):
    clip = no_duration_clip(tmp_path / "raw.mkv", seconds=10)  # the container announces no duration
    handlers = app.Handlers(captioner, max_video_seconds=3, workdir=str(tmp_path))
    grabs = decoded_frames
    grabs[0] = 0  # counted from here
    with pytest.raises(gr.Error) as e:
        handlers.tag_video(str(clip))
    assert e.value.message == ("The video is longer than 3 s; this server takes up to 3 s "
                               "(use tag-video for longer ones).")
    assert grabs[0] <= 3 * FALLBACK_FPS + 4  # stopped at the first frame past 3 s, not at the end of the file


def test_video_announcing_its_duration_is_refused_before_decoding(captioner, tmp_path, decoded_frames):
    clip = make_clip(tmp_path / "clip.avi", fps=10.0, shots=(("chelsea", 5.0),))
    handlers = app.Handlers(captioner, max_video_seconds=3, workdir=str(tmp_path))
    grabs = decoded_frames
    grabs[0] = 0  # counted from here
    with pytest.raises(gr.Error) as e:
        handlers.tag_video(str(clip))
    assert e.value.message == "The video is 5 s long; this server takes up to 3 s (use tag-video for longer ones)."
    assert grabs[0] == 0


# -- image uploads through Gradio's preprocessing (issue #18.8) ---------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(captioner, tmp_path_factory):
    """(demo, gradio_client.Client) of the app launched on 127.0.0.1, its cache in a temp folder."""
    from gradio_client import Client

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio_cache")))
        mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        demo = app.build_demo(captioner)
        _, url, _ = demo.launch(server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True,
                                quiet=True)
        try:
            yield demo, Client(url, verbose=False, download_files=False)
        finally:
            demo.close()


def _jpeg(photo) -> bytes:
    out = io.BytesIO()
    Image.fromarray(photo).save(out, format="JPEG")
    return out.getvalue()


def _png(photo) -> bytes:
    out = io.BytesIO()
    Image.fromarray(photo).save(out, format="PNG")
    return out.getvalue()


def _zip_bytes() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("a.txt", "hello")
    return out.getvalue()


BAD_IMAGES = {  # file name -> contents (a function of the test photo)
    "empty.png": lambda photo: b"",
    "notes.txt": lambda photo: b"just some text\n",
    "text.jpg": lambda photo: b"just some text\n",
    "page.html": lambda photo: b"<!doctype html><html><body><img src=x></body></html>",
    "page.png": lambda photo: b"<!doctype html><html><body>not a png</body></html>",
    "drawing.svg": lambda photo: b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><rect/></svg>',
    "cut.jpg": lambda photo: _jpeg(photo)[:2000],
    "cut.png": lambda photo: _png(photo)[:2000],
    "archive.png": lambda photo: _zip_bytes(),
    "noise.webp": lambda photo: np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
    "header.gif": lambda photo: b"GIF89a",
    "doc.jpg": lambda photo: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
}


def _cli_reason(path) -> str:
    """What the CLI says about a bad file (load_image's message), without the path."""
    with pytest.raises(ImageError) as e:
        load_image(path)
    return str(e.value).removeprefix(f"{path}: ")


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_bad_image_upload_gives_the_cli_reason(served, photo, tmp_path, name):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    path = tmp_path / name
    path.write_bytes(BAD_IMAGES[name](photo))
    with pytest.raises(AppError) as e:
        served[1].predict(handle_file(str(path)), 3, 12, api_name="/caption_image")
    assert str(e.value) == f"Cannot read this image: {_cli_reason(path)}"
    assert "/tmp" not in str(e.value)


def _gray16(photo) -> Image.Image:
    gray = np.asarray(Image.fromarray(photo).convert("L"), dtype=np.uint16) * 257  # full 16-bit range
    return Image.fromarray(gray)


def _rgba(photo) -> Image.Image:
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    rgba[:, : photo.shape[1] // 2, 3] = 0  # left half transparent: composited on white, as load_image does
    return Image.fromarray(rgba)


GOOD_IMAGES = {  # file name -> PIL image written with the name's format
    "gray16.png": _gray16,
    "transparent.png": _rgba,
    "photo.tif": lambda photo: Image.fromarray(photo),
    "cmyk.jpg": lambda photo: Image.fromarray(photo).convert("CMYK"),
}


@pytest.mark.parametrize("name", sorted(GOOD_IMAGES))
def test_image_upload_gets_the_cli_caption(served, captioner, photo, tmp_path, name):
    from gradio_client import handle_file

    path = tmp_path / name
    GOOD_IMAGES[name](photo).save(path)
    caption, _, tags, *_ = served[1].predict(handle_file(str(path)), 3, 12, api_name="/caption_image")
    assert caption == captioner.caption(path, beam_size=3, max_length=12).text
    expected = captioner.top_tags(captioner.encode([load_image(path)]), k=5)[0]
    assert [t["label"] for t in tags["confidences"]] == [t.label for t in expected]


def test_every_decoding_option_has_a_control_starting_at_the_bundles(captioner):
    """Each tab that captions offers every Decoding option the CLIs take, by name, set to the bundle's."""
    endpoints = app.build_demo(captioner).get_api_info()["named_endpoints"]
    for name in ("/caption_image", "/caption_batch", "/tag_video"):
        defaults = {p["parameter_name"]: p["parameter_default"] for p in endpoints[name]["parameters"]}
        assert {k: defaults.get(k) for k in app.DECODING_FIELDS} == captioner.decoding.asdict(), name


def test_decoding_options_reach_the_captions(served, handlers, captioner, cat_path):
    """Non-default options set in the UI (through the API, by name) give the API's captions, and
    the batch tab's records say which options made them."""
    from gradio_client import handle_file

    options = dict(beam_size=1, min_length=4, max_length=6, no_repeat_words=not captioner.decoding.no_repeat_words)
    caption, *_ = served[1].predict(handle_file(cat_path), **options, api_name="/caption_image")
    assert caption == captioner.caption(cat_path, **options).text
    values = [options.get(name) for name in app.DECODING_FIELDS]
    rows, _, jsonl_path = handlers.caption_batch([cat_path], *values)
    record = json.loads(Path(jsonl_path).read_text().splitlines()[0])
    assert rows[0][1] == caption and record["options"] == {**captioner.decoding.asdict(), **options,
                                                           "n_best": 0, "tags": 3, "min_tag_probability": 0.0,
                                                           "exclude_tags": [], "min_confidence": 0.0,
                                                           "precision": "fp32"}


# -- batch zips and work files (issue #18.9) ----------------------------------------------
@pytest.fixture
def no_zip_read(monkeypatch):
    """ZipFile.read loads a whole member into memory: the app must never call it."""
    def read(self, *args, **kwargs):
        raise AssertionError("ZipFile.read called")

    monkeypatch.setattr(zipfile.ZipFile, "read", read)


def _lying_zip(path, *, declared: int, actual: int):
    """A zip whose one image entry declares ``declared`` bytes but inflates to ``actual``."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big.png", bytes(actual))
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, data.find(b"PK\x01\x02") + 24, declared)  # central directory
    struct.pack_into("<I", data, data.find(b"PK\x03\x04") + 22, declared)  # local header
    path.write_bytes(bytes(data))
    return path


def test_zip_with_too_many_entries_is_refused_before_unpacking(captioner, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(20_000):
            z.writestr(f"img{i:05d}.png", b"")
    handlers = app.Handlers(captioner, workdir=str(work))
    with pytest.raises(gr.Error, match="20000 files: the UI takes at most 2000"):
        handlers.caption_batch([str(archive)])
    assert list(work.iterdir()) == []


def test_zip_member_declaring_more_than_the_limit_is_refused_unread(captioner, tmp_path, no_zip_read):
    work = tmp_path / "work"
    work.mkdir()
    archive = tmp_path / "bomb.zip"  # the 700 MB member of the issue, scaled to a 1 MB limit
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.png", bytes(3 * 2**20))
    assert archive.stat().st_size < 2**20 / 100
    handlers = app.Handlers(captioner, max_upload_mb=1, workdir=str(work))
    with pytest.raises(gr.Error) as e:
        handlers.caption_batch([str(archive)])
    assert e.value.message == "bomb.zip: zeros.png unpacks to 3 MB; the limit is 1 MB."
    assert list(work.iterdir()) == []


def test_zip_member_holding_more_than_it_declares_is_refused(captioner, tmp_path, no_zip_read):
    work = tmp_path / "work"
    work.mkdir()
    archive = _lying_zip(tmp_path / "lying.zip", declared=1000, actual=3 * 2**20)
    handlers = app.Handlers(captioner, max_upload_mb=1, workdir=str(work))
    with pytest.raises(gr.Error) as e:
        handlers.caption_batch([str(archive)])
    assert e.value.message == "lying.zip: cannot unpack (Bad CRC-32 for file 'big.png')."  # zipfile's own check
    assert list(work.iterdir()) == []


def test_unzipping_stops_at_the_declared_size_whatever_the_stream_holds(captioner, tmp_path, no_zip_read,
                                                                         monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    archive = _lying_zip(tmp_path / "lying.zip", declared=1000, actual=10)
    read = [0]

    class Endless(io.RawIOBase):  # a member stream that runs past its entry's size
        def readinto(self, buffer):
            buffer[:] = bytes(len(buffer))
            read[0] += len(buffer)
            return len(buffer)

    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, info, *args, **kwargs: Endless())
    handlers = app.Handlers(captioner, max_upload_mb=1, workdir=str(work))
    with pytest.raises(gr.Error) as e:
        handlers.caption_batch([str(archive)])
    assert e.value.message == "lying.zip: big.png holds more data than its entry declares."
    assert read[0] == 1001  # one byte past the declared size, then it stopped
    assert list(work.iterdir()) == []


def test_batch_leaves_no_work_files(captioner, cat_path, tmp_path, monkeypatch):
    cache = tmp_path / "gradio_cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))  # where Gradio serves (and cleans) files from
    work = tmp_path / "work"
    work.mkdir()
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(cat_path, "a/cat.jpg")
        z.write(cat_path, "b/cat.jpg")
    handlers = app.Handlers(captioner, workdir=str(work))
    rows, csv_path, jsonl_path = handlers.caption_batch([cat_path, str(archive), str(archive)])
    assert len(rows) == 5 and not any(r[5] for r in rows)
    assert list(work.iterdir()) == []  # the unpacked members are gone with the request
    for download in (csv_path, jsonl_path):  # the downloads are in Gradio's cache, for Gradio to serve and delete
        assert download.startswith(str(cache)) and len(open(download).read().splitlines()) >= 5


def test_downloads_are_served_and_deleted_by_gradio(served, cat_path, tmp_path):
    from gradio.route_utils import delete_files_created_by_app
    from gradio_client import handle_file

    demo, client = served
    archive = tmp_path / "one.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(cat_path, "cat.jpg")
    table, csv_file, jsonl_file = client.predict([handle_file(str(archive))], 2, api_name="/caption_batch")
    paths = [f["path"] for f in (csv_file, jsonl_file)]
    for p in map(Path, paths):  # served from the folder the handler wrote, not from a copy
        assert p.parent.parent == Path(demo.GRADIO_CACHE) and p.parent.name.startswith("captioning-")
    delete_files_created_by_app(demo, age=None)  # what delete_cache runs on its schedule
    assert not any(os.path.exists(p) for p in paths)


def test_error_messages_name_no_server_paths(captioner, cat_path, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    handlers = app.Handlers(captioner, max_upload_mb=1, max_video_seconds=3, workdir=str(work),
                            downloads=str(tmp_path / "downloads"))
    (tmp_path / "fake.zip").write_bytes(b"not a zip")
    (tmp_path / "fake.mp4").write_text("not a video")
    (tmp_path / "fake.jpg").write_text("not an image")
    (tmp_path / "big.bin").write_bytes(bytes(2 * 2**20))
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(broken, "w") as z:
        z.writestr("empty.png", b"")
        z.writestr("text.jpg", "text")
        z.write(cat_path, "cat.jpg")
    calls = [(handlers.caption_batch, [str(tmp_path / "fake.zip")]),
             (handlers.caption_batch, [str(tmp_path / "big.bin")]),
             (handlers.caption_batch, [str(_lying_zip(tmp_path / "lying.zip", declared=1000, actual=5000))]),
             (handlers.tag_video, str(tmp_path / "fake.mp4")),
             (handlers.tag_video, str(no_duration_clip(tmp_path / "raw.mkv", seconds=5))),
             (handlers.caption_image, str(tmp_path / "fake.jpg"))]
    messages = []
    for handler, arg in calls:
        with pytest.raises(gr.Error) as e:
            handler(arg)
        messages.append(e.value.message)
    rows, _, _ = handlers.caption_batch([str(broken), str(tmp_path / "fake.jpg")])
    messages += [row[5] for row in rows if row[5]]
    assert len(messages) == 6 + 3
    for message in messages:
        assert "/tmp" not in message and str(work) not in message and str(tmp_path) not in message, message
        assert "\n" not in message


def test_caption_image_reads_no_file_outside_the_uploads(served, cat_path, monkeypatch):
    """The caption event takes its payload unprocessed: a request naming a server file instead
    of uploading one must still be refused before the handler opens anything. Raw HTTP, since
    gradio_client would upload a local file it is given."""
    import httpx

    demo, client = served
    opened = []
    real = app.load_image
    monkeypatch.setattr(app, "load_image", lambda src: opened.append(str(src)) or real(src))
    fn = next(i for i, d in enumerate(demo.config["dependencies"]) if d.get("api_name") == "caption_image")
    for n, path in enumerate((cat_path, "/etc/passwd")):  # files the server can read, never uploaded
        session = f"outside{n}"
        payload = {"path": path, "meta": {"_type": "gradio.FileData"}}
        joined = httpx.post(f"{client.src}gradio_api/queue/join", json={
            "data": [payload, 3, 12], "fn_index": fn, "session_hash": session, "event_data": None})
        assert joined.status_code == 200
        with httpx.stream("GET", f"{client.src}gradio_api/queue/data?session_hash={session}", timeout=60) as events:
            done = next(m for m in (json.loads(line[5:]) for line in events.iter_lines() if line.startswith("data:"))
                        if m.get("msg") == "process_completed")
        assert done["success"] is False
    assert opened == []


def test_the_ui_helpers_but_the_decoding_controls_load_neither_gradio_nor_torch():
    """pipelines.ui's tags and trust are plain functions over results; only its decoding module
    (the controls) needs Gradio and, through Decoding, torch."""
    code = ("import sys, pipelines.ui, pipelines.ui.tags, pipelines.ui.trust; "
            "print('gradio' in sys.modules, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False", "False"], result.stderr
