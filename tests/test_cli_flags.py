"""Same flag, same name, same meaning in every tool: the flags the command-line tools share
have one help text (up to what their default is) and one default."""
from __future__ import annotations

import re

import pytest

import app
from captioning.cli import _parser as caption
from captioning.training.averaging import _parser as caption_average
from captioning.training.config import parser as caption_train
from captioning.training.ensembling import _parser as caption_ensemble
from captioning.training.evaluate import _parser as caption_eval
from pipelines.images.cli import _parser as caption_images
from pipelines.video.cli import _parser as tag_video

TOOLS = {"caption": caption, "caption-images": caption_images, "tag-video": tag_video, "caption-eval": caption_eval,
         "caption-ensemble": caption_ensemble, "caption-average": caption_average, "caption-train": caption_train,
         "app.py": app._parser}
SHARED = ("--weights", "--device", "--strict", "--beam-size", "--max-length", "--n-best", "--engine", "--address",
          "--actors", "--workers")
MEANING = re.compile(r"\s*\((?:default|required).*$")  # the help without its default note


def _flags() -> dict[str, dict[str, tuple[str, object]]]:
    found: dict[str, dict[str, tuple[str, object]]] = {}
    for tool, make in TOOLS.items():
        for action in make()._actions:
            for option in action.option_strings:
                help_text = (action.help or "").split("; env ")[0].rstrip(")") + ")"  # app.py adds its env variable
                found.setdefault(option, {})[tool] = (MEANING.sub("", help_text), action.default)
    return found


@pytest.mark.parametrize("flag", SHARED)
def test_a_shared_flag_means_the_same_everywhere(flag):
    by_tool = _flags()[flag]
    if flag == "--max-length":  # caption-train's sets the model's caption length (the decoding limit it records)
        by_tool.pop("caption-train")
    meanings = {meaning for meaning, _ in by_tool.values()}
    assert len(meanings) == 1, by_tool
    if flag != "--actors":  # tag-video starts a model actor per CPU (at most one per video), caption-images one
        assert len({repr(default) for _, default in by_tool.values()}) == 1, by_tool


def test_every_tool_that_loads_a_model_takes_weights_and_device():
    flags = _flags()
    assert set(flags["--device"]) == set(TOOLS) - {"caption-train"}  # caption-train has --device too, its own way
    assert {"caption", "caption-images", "tag-video", "caption-eval", "app.py"} <= set(flags["--weights"])
    assert {"caption", "caption-images", "tag-video"} <= set(flags["--strict"])
