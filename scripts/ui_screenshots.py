"""Screenshots of the three UI tabs with real results (not a test).

    python scripts/ui_screenshots.py --images ../shared/data/flickr8k/images --out out/screenshots

Starts app.py with the default bundle, drives Debian's Chromium through Playwright: one photo
on the Image tab, a clip made of a few photos on the Video tab, a dozen photos on the Batch tab.
"""
from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parent.parent


def _clip(photos: list[Path], path: Path) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (448, 448))
    for photo in photos:
        frame = cv2.resize(cv2.imread(str(photo)), (448, 448))
        for i in range(40):  # 4 s per shot with a slow zoom
            z = 1 + i / 200
            writer.write(cv2.resize(frame, None, fx=z, fy=z)[:448, :448])
    writer.release()
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default="../shared/data/flickr8k/images", help="photo folder (default: %(default)s)")
    p.add_argument("--out", default="out/screenshots", help="where the PNGs go (default: %(default)s)")
    p.add_argument("--port", type=int, default=7870, help="port for the app (default: %(default)s)")
    p.add_argument("--weights", default=None, help="bundle (default: weights/DEFAULT)")
    args = p.parse_args(argv)
    photos = sorted(Path(args.images).glob("*.jpg"))[:12]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(ROOT / "app.py"), "--port", str(args.port)] + (["--weights", args.weights] if args.weights else [])
    app = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(240):
            try:
                socket.create_connection(("127.0.0.1", args.port), 1).close()
                break
            except OSError:
                time.sleep(0.5)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw, tempfile.TemporaryDirectory() as tmp:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(180_000)
            page.goto(f"http://127.0.0.1:{args.port}")
            page.locator("#caption").wait_for()
            page.locator("input[accept*='image']").first.set_input_files(str(photos[0]))
            page.get_by_role("button", name="Caption", exact=True).click()
            page.wait_for_function("() => document.querySelector('#caption textarea').value.length > 0")
            page.wait_for_timeout(1500)
            page.screenshot(path=str(out / "image_tab.png"), full_page=True)
            page.get_by_role("tab", name="Video").click()
            page.locator("input[accept*='.mp4']").first.set_input_files(str(_clip(photos[1:5], Path(tmp) / "clip.mp4")))
            page.get_by_role("button", name="Tag video").click()
            page.locator("#shots-table").get_by_text("0:16.0").first.wait_for(state="attached")
            page.locator("#video-search textarea").fill("dog")
            page.get_by_role("button", name="Search").click()
            page.wait_for_timeout(2500)
            page.screenshot(path=str(out / "video_tab.png"), full_page=True)
            page.get_by_role("tab", name="Batch").click()
            page.locator("input[type=file][multiple]").last.set_input_files([str(x) for x in photos])
            page.wait_for_timeout(1500)
            page.get_by_role("button", name="Caption all").click()
            page.locator("#batch-table").get_by_text(photos[-1].name).first.wait_for(state="attached")
            page.wait_for_timeout(1500)
            page.screenshot(path=str(out / "batch_tab.png"), full_page=True)
            browser.close()
    finally:
        app.terminate()
    print(f"wrote {out}/image_tab.png, video_tab.png, batch_tab.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
