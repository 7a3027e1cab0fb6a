"""Random-weight bundles for tests and benchmarks: the real ImageNet encoder and a decoder of any
size with random weights, saved and loaded through the real bundle code.

    vocab = Vocabulary.build(TINY_CAPTIONS, min_freq=1)
    save_random_bundle(folder / "tiny_sat.test", vocab, BundleInfo("tiny_sat.test", "0.0.1"), **TINY)
    save_random_bundle(folder / "random_sat.bench", placeholder_vocabulary(PRODUCTION_VOCAB), info)  # real sizes
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .bundle import BundleInfo, save_bundle
from .decoder import DecoderConfig
from .encoder import DEFAULT_ARCH, load_pretrained_encoder
from .model import CaptionModel, ModelConfig
from .vocab import SPECIALS, Vocabulary

# Words in the shipped bundles' vocabulary: a random bundle of this size costs what they cost.
PRODUCTION_VOCAB = 2538
# Captions whose words make the tests' tiny vocabulary.
TINY_CAPTIONS = ["a dog runs on the grass", "a cat sits on a red sofa", "two people walk on the beach",
                 "a man rides a bike", "a child plays in the water", "a black dog jumps over a fence"]
# The tests' tiny model: :func:`random_model` options (captions of a few words, fast to decode).
TINY: dict[str, Any] = dict(embed_dim=16, hidden_dim=32, context_dim=24, attention_dim=8, dropout=0.1,
                            max_length=12, end_bias=-0.6, seed=0)


def placeholder_vocabulary(size: int) -> Vocabulary:
    """A vocabulary of ``size`` words: the special tokens and made-up words ``w0000``, ``w0001``..."""
    return Vocabulary([*SPECIALS, *(f"w{i:04d}" for i in range(size - len(SPECIALS)))])


def random_model(vocab: Vocabulary, *, seed: int | None = None, max_length: int = 20, end_bias: float = 0.0,
                 encoder: str = DEFAULT_ARCH, **decoder: Any) -> CaptionModel:
    """The ImageNet ``encoder`` (an arch name) and a random decoder for ``vocab`` (``decoder``:
    DecoderConfig sizes, default: production), in eval mode. ``seed`` seeds torch's global generator first;
    ``end_bias`` is added to the ``<end>`` logit's bias (negative: longer captions than random
    weights would write)."""
    if seed is not None:
        torch.manual_seed(seed)
    model = CaptionModel(ModelConfig(decoder=DecoderConfig(vocab_size=len(vocab), **decoder), encoder=encoder,
                                     max_length=max_length))
    model.encoder.load_state_dict(load_pretrained_encoder(encoder).state_dict())
    if end_bias:
        with torch.no_grad():
            model.decoder.out.bias[vocab.end_id] += end_bias
    return model.eval()


def tiny_model(vocab: Vocabulary, seed: int = 0, *, layers: int = 1) -> CaptionModel:
    """The tests' tiny model (:data:`TINY`) with a one- or two-layer decoder."""
    return random_model(vocab, **{**TINY, "seed": seed}, layers=layers)


def save_random_bundle(directory: str | Path, vocab: Vocabulary, info: BundleInfo, **options: Any) -> Path:
    """:func:`random_model` (``options``: its keywords) saved as a bundle in ``directory``."""
    return save_bundle(directory, random_model(vocab, **options), vocab, info)
