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
SHARED = ("--weights", "--device", "--backend", "--strict", "--beam-size", "--max-length", "--n-best", "--engine", "--address",
          "--actors", "--workers", "--recursive", "--min-tag-probability", "--exclude-tags")
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
    assert set(flags["--device"]) == set(TOOLS)  # caption-train trains there (cuda: each torchrun rank its own GPU)
    assert {"caption", "caption-images", "tag-video", "caption-eval", "app.py"} <= set(flags["--weights"])
    assert {"caption", "caption-images", "tag-video"} <= set(flags["--strict"])
    inference = {"caption", "caption-images", "tag-video", "app.py"}  # the tools that run a Captioner
    assert set(flags["--backend"]) == inference and inference <= set(flags["--threads"])


def test_on_off_flags_follow_one_rule_in_every_tool():
    """A flag of an option the tool owns is a switch; a flag over a bundle's recorded value (the
    decoding flags of the inference tools) takes 0 or 1, so a bundle's "on" can be turned off."""
    import argparse

    for tool, make in TOOLS.items():
        for action in make()._actions:
            if isinstance(action, (argparse._StoreTrueAction, argparse.BooleanOptionalAction)):
                assert action.default in (False, True), (tool, action.option_strings)
            elif action.choices == (False, True):
                assert action.default is None and re.search(r"default: the .*'s", action.help), (tool, action.option_strings)
    train = caption_train().parse_args(["--data", "d.csv", "--out", "o", "--keep-epochs", "--eval-no-repeat-words"])
    assert train.keep_epochs and train.eval_no_repeat_words and not train.eval_no_dangling_end
    images = caption_images().parse_args(["--no-repeat-words", "0", "photos"])
    assert images.no_repeat_words is False and images.no_dangling_end is None
    video = tag_video().parse_args(["--caption-every-frame", "clip.mp4"])
    assert video.caption_every_frame and video.inputs == ["clip.mp4"]
