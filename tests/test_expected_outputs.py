"""Captions, tags and video JSON of a fixed set of inputs, with explicit options, against a
stored expectation: a refactoring must not change what users get.

The inputs are made here (scikit-image photos, a clip of them); the expectation is
``tests/expected/outputs.json``. After a deliberate change of outputs (a new model, a new
decoding rule) rewrite it with ``CAPTIONING_UPDATE_EXPECTED=1 python -m pytest tests/test_expected_outputs.py``
and say why in the commit.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data
from PIL import Image

from captioning import Captioner
from pipelines import caption_images, tag_video
from test_video_clips import make_clip

pytestmark = pytest.mark.slow  # the shipped model on 4 photos and a 16 s clip: ~15 s

EXPECTED = Path(__file__).parent / "expected" / "outputs.json"
BUNDLE = "lite0_sat.flickr8k"  # by name: a new default must not silently change the expectation
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
DIGITS = 3  # floats compared to 3 decimals: what a user reads, robust to float noise


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, DIGITS)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_round(v) for v in value]
    return value


@pytest.fixture(scope="module")
def shipped() -> Captioner:
    return Captioner.load(BUNDLE, device="cpu")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("expected_photos")
    paths = []
    for name in PHOTOS:
        image = getattr(skimage.data, name)()
        path = folder / f"{name}.png"
        Image.fromarray(np.ascontiguousarray(image[..., :3])).save(path)
        paths.append(path)
    return paths


def _outputs(captioner: Captioner, photos: list[Path], clip: Path) -> dict[str, Any]:
    api = {}
    for path in photos:
        r = captioner.caption(path, beam_size=3, max_length=20)
        api[path.stem] = {"caption": r.text, "score": r.score, "alternatives": [a.text for a in r.alternatives],
                          "tags": [[t.label, t.probability] for t in captioner.tags(path, k=5)]}
    records = caption_images(photos, captioner, batch_size=2, beam_size=3, max_length=20, n_best=2, tags=3)
    batch = {Path(r["path"]).stem: {k: r[k] for k in ("caption", "score", "n_best", "tags", "width", "height",
                                                        "model", "model_version", "error")} for r in records}
    video = tag_video(clip, captioner, fps=1.0, scene_threshold=0.3, scene_span=4, tags=5, batch_size=8,
                      beam_size=3).to_dict()
    video.pop("timings", None)
    video["video"].pop("path")
    return _round({"bundle": f"{captioner.name} {captioner.version}", "api": api, "batch": batch, "video": video})


def test_outputs_match_the_stored_expectation(shipped, photos, tmp_path):
    got = _outputs(shipped, photos, make_clip(tmp_path / "clip.avi"))
    if os.environ.get("CAPTIONING_UPDATE_EXPECTED"):
        EXPECTED.parent.mkdir(exist_ok=True)
        EXPECTED.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    expected = json.loads(EXPECTED.read_text())
    for part in ("bundle", "api", "batch", "video"):
        assert got[part] == expected[part], part
