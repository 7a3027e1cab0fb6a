"""Shared fixtures: a tiny bundle saved and loaded through the real bundle code."""
from __future__ import annotations

import numpy as np
import pytest

from captioning import Captioner, load_bundle
from captioning.bundle import BundleInfo
from captioning.runtime import CACHE_ENV
from captioning.testing import TINY, TINY_CAPTIONS, save_random_bundle
from captioning.testing import tiny_model as make_tiny_model
from captioning.vocab import Vocabulary

__all__ = ["TINY_CAPTIONS", "make_tiny_model"]  # the tests import these from here


@pytest.fixture(scope="session", autouse=True)
def graph_cache(tmp_path_factory):
    """The encoder graphs a test run exports (captioning.runtime) go to a cache of its own."""
    folder = tmp_path_factory.mktemp("graph-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(folder))
        yield folder


@pytest.fixture(scope="session")
def tiny_vocab() -> Vocabulary:
    return Vocabulary.build(TINY_CAPTIONS, min_freq=1)


@pytest.fixture(scope="session")
def tiny_bundle_dir(tmp_path_factory, tiny_vocab):
    path = tmp_path_factory.mktemp("weights") / "tiny_sat.test"
    info = BundleInfo(name="tiny_sat.test", version="0.0.1", metrics={"note": "random weights"},
                      decoding={"beam_size": 3})
    return save_random_bundle(path, tiny_vocab, info, **TINY)


@pytest.fixture(scope="session")
def tiny_bundle(tiny_bundle_dir):
    return load_bundle(tiny_bundle_dir)


@pytest.fixture(scope="session")
def captioner(tiny_bundle_dir) -> Captioner:
    return Captioner.load(tiny_bundle_dir, device="cpu")


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    import skimage.data

    return skimage.data.chelsea()  # (300, 451, 3) uint8, a cat


@pytest.fixture
def decoded_frames(monkeypatch) -> list[int]:
    """``decoded_frames[0]``: frames the video reader decodes from now on (VideoReader._decode
    decodes every packet)."""
    from pipelines.video.io import VideoReader

    frames, decode = [0], VideoReader._decode

    def counting(self, packet):
        out = decode(self, packet)
        frames[0] += len(out)
        return out

    monkeypatch.setattr(VideoReader, "_decode", counting)
    return frames
