"""The recipes in recipes/ run as written: every flag they pass is one the tools accept, the
steps come in order, and a second run skips what the first finished. The tools are replaced
by stand-ins that parse their arguments with the real parsers and make the outputs a step
leaves (hours of training are not a test)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
PARSERS = {  # tool -> the module and function that build its argparse parser
    "caption-train": ("captioning.training.config", "parser"),
    "caption-eval": ("captioning.training.evaluate", "_parser"),
    "caption-ensemble": ("captioning.training.ensembling", "_parser"),
    "caption-average": ("captioning.training.averaging", "_parser"),
    "caption-calibrate": ("captioning.training.calibrate", "_parser"),
}
STAND_IN = '''#!{python}
import importlib, json, os, sys
args = importlib.import_module({module!r}).{function}().parse_args(sys.argv[1:])  # exits 2 on a bad flag
with open(os.environ["RECIPE_LOG"], "a") as log:
    log.write(json.dumps([{tool!r}, sys.argv[1:]]) + "\\n")
out = getattr(args, "out", None)
if {tool!r} == "caption-train":
    os.makedirs(os.path.join(out, "bundle"))
elif {tool!r} == "caption-eval":
    open(out, "w").write("{{}}")
elif out:
    os.makedirs(out)
'''


@pytest.fixture
def stand_ins(tmp_path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool, (module, function) in PARSERS.items():
        path = bin_dir / tool
        path.write_text(STAND_IN.format(python=sys.executable, module=module, function=function, tool=tool))
        path.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(PROJECT),
            "RECIPE_LOG": str(tmp_path / "log.jsonl"), "RUNS": str(tmp_path / "runs"), "DATA": "captions.csv"}


def _run(recipe: str, env: dict[str, str]) -> list[str]:
    done = subprocess.run(["bash", str(PROJECT / "recipes" / recipe)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    log = Path(env["RECIPE_LOG"])
    tools = [line.split('"')[1] for line in log.read_text().splitlines()] if log.exists() else []
    log.unlink(missing_ok=True)
    return tools


@pytest.mark.parametrize("recipe,steps", [
    ("lite0_sat.flickr8k.sh", ["caption-train"] * 3 + ["caption-eval", "caption-train", "caption-average"]),
    ("lite0_sat_x3.flickr8k.sh", ["caption-train"] * 3 + ["caption-ensemble", "caption-eval"]),
    ("encoder_ab.coco_flickr8k.sh", ["caption-train"] * 2),
    ("lite2_sat.coco_flickr8k.sh", ["caption-train", "caption-eval", "caption-calibrate"]),
])
def test_recipe_flags_parse_and_a_second_run_skips_finished_steps(stand_ins, recipe, steps):
    assert _run(recipe, stand_ins) == steps
    assert _run(recipe, stand_ins) == []
    assert not (PROJECT / "runs" / "recipe-default").exists()  # RUNS was honoured: nothing in the checkout


def test_several_datasets_reach_every_tool_as_one_data_flag_each(stand_ins):
    """DATA with several files (space-separated) gives each tool one --data per file."""
    import json

    env = {**stand_ins, "DATA": "a/captions.csv b/captions.csv"}
    done = subprocess.run(["bash", str(PROJECT / "recipes" / "lite0_sat_x3.flickr8k.sh")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    calls = [json.loads(line) for line in Path(env["RECIPE_LOG"]).read_text().splitlines()]
    for tool, argv in calls:
        assert [argv[i + 1] for i, a in enumerate(argv) if a == "--data"] == ["a/captions.csv", "b/captions.csv"], tool
