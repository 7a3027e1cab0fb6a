"""Shared fixtures: a tiny bundle saved and loaded through the real bundle code."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from captioning import Captioner, load_bundle, save_bundle
from captioning.bundle import BundleInfo
from captioning.decoder import DecoderConfig
from captioning.encoder import load_pretrained_encoder
from captioning.model import CaptionModel, ModelConfig
from captioning.vocab import Vocabulary

TINY_CAPTIONS = ["a dog runs on the grass", "a cat sits on a red sofa", "two people walk on the beach",
                 "a man rides a bike", "a child plays in the water", "a black dog jumps over a fence"]


def make_tiny_model(vocab: Vocabulary, seed: int = 0, *, layers: int = 1) -> CaptionModel:
    torch.manual_seed(seed)
    config = ModelConfig(decoder=DecoderConfig(vocab_size=len(vocab), embed_dim=16, hidden_dim=32, context_dim=24,
                                               attention_dim=8, dropout=0.1, layers=layers), max_length=12)
    model = CaptionModel(config)
    model.encoder.load_state_dict(load_pretrained_encoder().state_dict())
    with torch.no_grad():  # random weights would often end at once: make captions a few words long
        model.decoder.out.bias[vocab.end_id] -= 0.6
    return model.eval()


@pytest.fixture(scope="session")
def tiny_vocab() -> Vocabulary:
    return Vocabulary.build(TINY_CAPTIONS, min_freq=1)


@pytest.fixture(scope="session")
def tiny_bundle_dir(tmp_path_factory, tiny_vocab):
    path = tmp_path_factory.mktemp("weights") / "tiny_sat.test"
    info = BundleInfo(name="tiny_sat.test", version="0.0.1", metrics={"note": "random weights"},
                      decoding={"beam_size": 3})
    return save_bundle(path, make_tiny_model(tiny_vocab), tiny_vocab, info)


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
