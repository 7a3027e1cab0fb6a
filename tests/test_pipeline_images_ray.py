"""The Ray engine gives the same records as the local one (against a local Ray started here)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from pipelines.images.cli import main

pytestmark = pytest.mark.slow  # starting Ray and its actors: ~20 s on 2 idle cores, minutes when busy


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ray_engine_matches_local_engine(local_ray, tmp_path, tiny_bundle_dir):
    photos = tmp_path / "photos"
    photos.mkdir()
    sources = [skimage.data.chelsea(), skimage.data.astronaut(), skimage.data.coffee(), skimage.data.rocket(),
               np.dstack([skimage.data.camera()] * 3)]
    for i, arr in enumerate(sources * 2):
        Image.fromarray(np.rot90(arr, i // len(sources)).copy()).save(photos / f"img{i}.jpg")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    common = [str(photos), "--weights", str(tiny_bundle_dir), "--batch-size", "4", "--n-best", "2"]
    assert main(common + ["--out", str(tmp_path / "local.jsonl")]) == 0
    assert main(common + ["--out", str(tmp_path / "ray.jsonl"), "--engine", "ray", "--workers", "1"]) == 0
    local, remote = _records(tmp_path / "local.jsonl"), _records(tmp_path / "ray.jsonl")
    assert [r["path"] for r in remote] == [r["path"] for r in local]  # same order
    for a, b in zip(local, remote):
        assert (a["caption"], a["error"], a["sha256"], a["width"], a["model"]) == \
               (b["caption"], b["error"], b["sha256"], b["width"], b["model"])
        if a["error"] is None:
            assert b["score"] == pytest.approx(a["score"], abs=1e-3)
            assert [t["label"] for t in b["tags"]] == [t["label"] for t in a["tags"]]
            assert [x["text"] for x in b["n_best"]] == [x["text"] for x in a["n_best"]]
    assert sum(r["error"] is not None for r in remote) == 1
    # resume works the same: nothing left to do
    assert main(common + ["--out", str(tmp_path / "ray.jsonl"), "--engine", "ray"]) == 0
    assert len(_records(tmp_path / "ray.jsonl")) == len(local)
