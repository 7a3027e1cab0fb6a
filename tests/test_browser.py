"""End to end in a real browser: app.py on a free port with the tiny bundle, driven through
Playwright in Debian's headless Chromium. Also the image endpoint through gradio_client."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
import skimage.data
from PIL import Image

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR", ROOT / "out" / "screenshots"))

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_bundle_dir):
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--weights",
                             str(tiny_bundle_dir), "--device", "cpu"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None:
                pytest.fail("app.py exited: " + proc.stdout.read()[-2000:])
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("app.py did not start listening within 180 s")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install chromium (CI does)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(120_000)
        pg.goto(server, wait_until="load")
        pg.locator("#caption").wait_for()
        yield pg
        browser.close()


def _video(path: Path) -> Path:
    frames = [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.astronaut()]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for img in frames:
        bgr = cv2.cvtColor(cv2.resize(img, (320, 240)), cv2.COLOR_RGB2BGR)
        for _ in range(30):  # 3 s per shot
            writer.write(bgr)
    writer.release()
    return path


def test_image_tab_shows_a_caption(page, tmp_path):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    img = tmp_path / "cat.jpg"
    Image.fromarray(skimage.data.chelsea()).save(img)
    page.get_by_role("tab", name="Image").click()
    page.locator("input[type=file]").first.set_input_files(str(img))
    page.get_by_role("button", name="Caption", exact=True).click()
    page.wait_for_function("() => { const t = document.querySelector('#caption textarea');"
                           " return t && t.value.length > 0; }", timeout=120_000)
    assert page.locator("#caption textarea").input_value()
    page.get_by_text("tabby").or_(page.get_by_text("tiger cat")).or_(page.get_by_text("Egyptian cat")).first.wait_for()
    table, score = page.locator("#nbest"), page.locator("#nbest").get_by_text("score", exact=True).first
    box, head = table.bounding_box(), score.bounding_box()  # the score column fits beside long captions
    assert head["x"] + head["width"] <= box["x"] + box["width"], (head, box)
    page.screenshot(path=str(SCREENSHOTS / "image_tab.png"), full_page=True)


def test_video_tab_shows_shots(page, tmp_path):
    video = _video(tmp_path / "three_shots.mp4")
    page.get_by_role("tab", name="Video").click()
    page.locator("input[accept*='.mp4']").first.set_input_files(str(video))
    page.get_by_role("button", name="Tag video").click()
    table = page.locator("#shots-table")
    table.get_by_text("0:09.0").first.wait_for(state="attached", timeout=180_000)  # the last shot ends at 9 s
    page.wait_for_timeout(500)
    text = table.inner_text()
    assert "0:09.0" in text  # the last shot ends with the 9 s video
    assert len(re.findall(r"\b0:0\d\.\d\b", text)) >= 4  # >= 2 shots, each with start and end
    page.screenshot(path=str(SCREENSHOTS / "video_tab.png"), full_page=True)


def test_video_tab_timeline_and_a_picked_shot(page):
    from captioning import examples

    page.reload(wait_until="load")  # a fresh tab: the upload box of the test before holds its clip
    page.get_by_role("tab", name="Video").click()
    page.locator("input[accept*='.mp4']").first.set_input_files(str(examples.CLIP))
    page.get_by_role("button", name="Tag video").click()
    table = page.locator("#shots-table")
    table.get_by_text("0:12.0").first.wait_for(state="attached", timeout=180_000)  # the example clip: 12 s, 4 shots
    timeline = page.locator("#timeline img")
    timeline.wait_for(state="visible")
    page.wait_for_function("() => { const i = document.querySelector('#timeline img');"
                           " return i && i.complete && i.naturalWidth === 1200; }")
    table.get_by_text("0:06.0").first.click()  # a cell of the second shot's row (it ends at 6 s)
    about = page.locator("#shot-about")
    about.get_by_text("Shot 2").wait_for()
    page.wait_for_function("() => { const i = document.querySelector('#shot-keyframe img');"
                           " return i && i.complete && i.naturalWidth > 0; }")
    keyframe = page.locator("#shot-keyframe img")
    assert keyframe.evaluate("i => i.naturalWidth") == 256  # the keyframe at the clip's full size, not a thumbnail
    assert keyframe.bounding_box()["width"] > 300  # shown large
    page.screenshot(path=str(SCREENSHOTS / "video_timeline.png"), full_page=True)


def test_gradio_client_image_endpoint(server, tmp_path):
    from gradio_client import Client, handle_file

    img = tmp_path / "coffee.jpg"
    Image.fromarray(skimage.data.coffee()).save(img)
    client = Client(server, verbose=False)
    caption, nbest, tags, *_ = client.predict(handle_file(str(img)), 2, 10, api_name="/caption_image")
    assert isinstance(caption, str)
    labels = [c["label"] for c in tags["confidences"]]
    assert {"cup", "espresso", "coffee mug"} & set(labels)
