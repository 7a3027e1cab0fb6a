"""README's examples run as written: the Python example and every command of its quick-start
block but the web UI, and the video tagging section's commands (run in a scratch folder that
sees the package's shipped examples)."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the shipped model, loaded by each command
PROJECT = Path(__file__).resolve().parent.parent
README = (PROJECT / "README.md").read_text()
QUICK_START = README[README.index("## Quick start"):README.index("## How it works")]
VIDEO_TAGGING = README[README.index("### Video tagging"):README.index("### Safety")]


def _blocks(language: str, section: str = QUICK_START) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def _commands(block: str) -> list[str]:
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


@pytest.fixture
def scratch(tmp_path) -> Path:
    (tmp_path / "captioning").symlink_to(PROJECT / "captioning")  # the examples' paths, as from the checkout
    return tmp_path


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    bin_dir = Path(sys.executable).parent  # the console scripts of this environment
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_python_example_runs(scratch):
    (code,) = _blocks("python")
    done = _run([sys.executable, "-c", code], scratch)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 8  # caption, tags, everyday tags, 4 batch records, the shots and a search


def test_quick_start_commands_run(scratch):
    (block,) = _blocks("bash")
    commands = _commands(block)
    assert commands[0] == "python app.py"  # the UI is tested in test_app.py and test_browser.py
    for command in commands[1:]:
        done = _run(shlex.split(command), scratch)
        assert done.returncode == 0, f"{command}: {done.stderr}"
        assert done.stdout.strip() or "captioned 4" in done.stderr, command
    assert (scratch / "captions.jsonl").read_text().count("\n") == 4
    assert {p.name for p in (scratch / "tags" / "clip").iterdir()} >= {"clip.json", "clip.srt", "clip.vtt"}


def test_video_tagging_commands_run_and_resume(scratch):
    (block,) = _blocks("bash", VIDEO_TAGGING)
    for command in _commands(block) * 2:  # the second time every video is already done
        done = _run(shlex.split(command), scratch)
        assert done.returncode == 0, f"{command}: {done.stderr}"
    assert "tagged 0, skipped 1 (already done), failed 0" in done.stderr
    names = {p.name for p in (scratch / "video-tags" / "clip").iterdir()}
    assert names == {f"clip{suffix}" for suffix in (".json", ".srt", ".chapters.vtt", ".edl", ".otio", ".html",
                                                     ".run.json", "_keyframes")}
