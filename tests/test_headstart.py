"""The head start (pipelines.headstart): items made in a forked child, in order, by position,
with its errors, its lead bounded, and nothing left running; and caption-images with it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

from pipelines.headstart import DISABLE_ENV, HeadStart

PROJECT = Path(__file__).resolve().parents[1]


def _squares(n: int):
    return lambda: (np.full((4, 4), i, np.int64) for i in range(n))


def test_items_come_in_order_and_by_position():
    with HeadStart(_squares(50), ahead=100, count=50) as head:
        assert head.get(7)[0, 0] == 7  # out of order first
        assert [int(head.get(i)[0, 0]) for i in range(50) if i != 7] == [i for i in range(50) if i != 7]
        with pytest.raises(IndexError):
            head.get(50)
        with pytest.raises(ValueError, match="item 7 was taken already"):  # its space may hold a later item
            head.get(7)


def test_the_file_holds_the_items_in_flight_not_all_of_them():
    """Items taken are written over: a long run (a two-hour video's frames) keeps a small file."""
    size = 50_000
    with HeadStart(lambda: (np.full(size, i % 256, np.uint8) for i in range(400)), ahead=8) as head:
        for i, item in enumerate(head):
            assert item.shape == (size,) and (item == i % 256).all()  # never a record written over too early
        assert i == 399
        assert os.fstat(head._file.fileno()).st_size <= 2 * 9 * (size + 200)  # 400 items: ~20 MB appended


def _failing():
    yield "first"
    raise ValueError("clip.mp4: broken on purpose")


def test_an_error_in_the_child_is_raised_where_its_item_would_be():
    with HeadStart(_failing, ahead=10) as head:
        assert head.get(0) == "first"
        with pytest.raises(ValueError, match="broken on purpose"):
            head.get(1)


def _counting(progress: Path):
    def produce():
        for i in range(1000):
            with progress.open("a") as f:
                f.write(f"{i}\n")
            yield i
    return produce


def _settled_count(progress: Path) -> int:
    """Lines in ``progress`` once they stop growing."""
    last, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < 0.5:
        n = len(progress.read_text().splitlines()) if progress.exists() else 0
        if n != last:
            last, stable_since = n, time.monotonic()
        time.sleep(0.05)
    return last


def test_the_child_stays_at_most_ahead_items_in_front(tmp_path):
    progress = tmp_path / "made.txt"
    with HeadStart(_counting(progress), ahead=5) as head:
        assert _settled_count(progress) == 5  # made 5, none taken: it waits
        assert [head.get(i) for i in range(3)] == [0, 1, 2]
        assert _settled_count(progress) == 8  # 3 taken: 3 more made
        pid = head.pid
    with pytest.raises(ChildProcessError):  # closed: killed and reaped, no zombie
        os.waitpid(pid, os.WNOHANG)


def test_a_child_that_dies_is_an_error_not_a_hang():
    head = HeadStart(lambda: iter(lambda: 1, None), ahead=2)  # endless
    os.kill(head.pid, 9)
    with pytest.raises(RuntimeError, match="ended unexpectedly"):
        for _ in range(10):
            head.get(_)
    head.close()


# a CLI in a fresh interpreter, counting the items it takes from a head start
CLI = """
import atexit, importlib, sys
from pipelines import headstart
main = importlib.import_module(sys.argv.pop(1)).main
taken = []
get = headstart.HeadStart.get
headstart.HeadStart.get = lambda self, i: taken.append(i) or get(self, i)
atexit.register(lambda: print(f"taken from the head start: {len(taken)}", file=sys.stderr))
sys.exit(main(sys.argv[1:]))
"""


def _run_cli(module: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLI, module, *args], cwd=PROJECT, env=env, capture_output=True,
                          text=True, timeout=300)


def _env(graph_cache: Path, mode: str) -> dict[str, str]:
    env = {**os.environ, "CAPTIONING_CACHE": str(graph_cache)}
    env.pop(DISABLE_ENV, None)
    if mode == "inline":
        env[DISABLE_ENV] = "1"
    return env


def test_caption_images_writes_the_same_records_with_and_without_it(tmp_path, tiny_bundle_dir, graph_cache):
    """Run as a command (torch not imported yet: the head start decodes the first images),
    with a bad file among them, it writes what the in-process path writes."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (40 + i, 60, 3), np.uint8)).save(folder / f"p{i:02}.jpg")
    (folder / "p05.jpg").write_bytes(b"not a jpeg")
    outputs = {}
    for mode in ("head", "inline"):
        out = tmp_path / f"{mode}.jsonl"
        result = _run_cli("pipelines.images.cli", [str(folder), "--weights", str(tiny_bundle_dir), "--device", "cpu",
                                                   "--batch-size", "4", "-o", str(out)], _env(graph_cache, mode))
        assert result.returncode == 0, result.stderr
        assert "p05.jpg" in result.stderr and "captioned 11" in result.stderr and "failed 1" in result.stderr
        assert f"taken from the head start: {12 if mode == 'head' else 0}" in result.stderr
        outputs[mode] = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(outputs["head"]) == 12
    assert outputs["head"] == outputs["inline"]


def test_a_head_start_stopped_early_leaves_the_rest_to_the_readers(tmp_path, captioner, monkeypatch):
    """caption-images stops the head start once the model is loaded: the photos it did not reach
    are decoded in this process, and the records are those of a run without it."""
    from pipelines.images import local
    from pipelines.images.local import caption_images, prepare_head

    prepare = local.prepare_image
    done = tmp_path / "prepared.txt"  # a line per photo prepared, by the child too

    def slow_prepare(*a):
        time.sleep(0.1)
        prepared = prepare(*a)
        with done.open("a") as f:
            f.write(f"{prepared.path}\n")
        return prepared

    monkeypatch.setattr(local, "prepare_image", slow_prepare)

    paths = []
    for i in range(10):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (50, 70, 3), np.uint8)).save(tmp_path / f"p{i}.png")
        paths.append(str(tmp_path / f"p{i}.png"))
    head = prepare_head(paths, captioner.preprocessing)
    while len(done.read_text().splitlines() if done.exists() else []) < 2:  # the child has made its first item
        time.sleep(0.01)
    made = head.stop()
    assert head.count == made and 1 <= made < 10
    with_head = list(caption_images(paths, captioner, batch_size=4, head=head))
    head.close()
    assert with_head == list(caption_images(paths, captioner, batch_size=4))


def test_tag_video_writes_the_same_results_with_and_without_it(tmp_path, tiny_bundle_dir, graph_cache):
    """Its first video scanned by the head start, a second one and a broken one in the same
    batch as usual: the same JSON as the in-process path."""
    from test_video_clips import make_clip

    videos = tmp_path / "videos"
    videos.mkdir()
    make_clip(videos / "a.avi", fps=12.0)
    make_clip(videos / "b.avi", fps=10.0, shots=(("chelsea", 3.0), ("coffee", 3.0)))
    (videos / "c.avi").write_bytes(b"not a video")
    results = {}
    for mode in ("head", "inline"):
        out = tmp_path / mode
        result = _run_cli("pipelines.video.cli", [str(videos), "--weights", str(tiny_bundle_dir), "--device", "cpu",
                                                  "--out", str(out), "--formats", "json"], _env(graph_cache, mode))
        assert result.returncode == 0, result.stderr
        assert "tagged 2, skipped 0 (already done), failed 1" in result.stderr and "c.avi" in result.stderr
        taken = int(result.stderr.split("taken from the head start: ")[1].split()[0])
        assert (taken > 10) if mode == "head" else taken == 0  # a.avi's frames, boundaries and end
        results[mode] = {v: json.loads((out / v / f"{v}.json").read_text()) for v in ("a", "b")}
        for tags in results[mode].values():
            del tags["timings"]
    assert results["head"] == results["inline"]


def test_stop_keeps_what_the_child_finished_and_nothing_after():
    def slow() -> Iterator[int]:
        for i in range(1000):
            time.sleep(0.01)
            yield i

    head = HeadStart(slow, ahead=1000, count=1000)
    try:
        assert head.get(2) == 2
        made = head.stop()
        assert 3 <= made < 1000 and head.count == made
        assert [head.get(i) for i in range(made) if i != 2] == [i for i in range(made) if i != 2]
        with pytest.raises(IndexError):
            head.get(made)
        assert head.pid == 0  # the child is gone
    finally:
        head.close()
    head.close()  # twice is harmless
