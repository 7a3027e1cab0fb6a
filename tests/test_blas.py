"""numpy's BLAS runs on one thread where the toolkit multiplies matrices (captioning.blas): its idle
threads would otherwise spin beside the encoder and the decoder."""
from __future__ import annotations

import contextlib

import numpy as np
from threadpoolctl import threadpool_info

from captioning import blas, confidence, everyday


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_one_thread_limits_numpys_blas_inside_the_block_only():
    before = _blas_threads()
    assert before, "numpy's BLAS is not visible to threadpoolctl"
    with blas.one_thread():
        assert _blas_threads() == [1] * len(before)
    assert _blas_threads() == before


def test_the_confidence_products_run_on_one_blas_thread(monkeypatch):
    entered = []

    @contextlib.contextmanager
    def recording():
        entered.append(True)
        yield

    monkeypatch.setattr(blas, "one_thread", recording)
    rng = np.random.default_rng(0)
    fam = confidence.Familiarity(center=np.zeros(8, np.float32), components=np.eye(8, 4, dtype=np.float32),
                                 train=rng.standard_normal((20, 4)).astype(np.float32), k=3)
    probs = rng.dirichlet(np.ones(1000), size=2)  # (2, 1000)
    everyday.roll_up(probs)
    assert len(entered) == 1
    x = confidence.features([-0.5, -1.0], [["a", "dog"], ["a", "cat"]], rng.standard_normal((2, 8)), probs, fam)
    assert x.shape == (2, len(confidence.FEATURES))
    assert len(entered) == 3  # the roll-up and the neighbours
