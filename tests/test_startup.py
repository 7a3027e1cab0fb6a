"""The tools' model load out of the garbage collector's way (captioning.startup)."""
from __future__ import annotations

import gc
import weakref

import pytest

from captioning.startup import model_loading


@pytest.fixture
def unfrozen():
    yield
    gc.unfreeze()  # hand the test process's objects back to the collector


class _Node:
    pass


def test_the_load_runs_without_the_collector_then_its_garbage_is_freed_and_the_rest_frozen(unfrozen):
    assert gc.isenabled()
    keep = _Node()
    with model_loading():
        assert not gc.isenabled()
        cycle = _Node()
        cycle.me = cycle  # garbage once dropped: only the collector frees a cycle
        dead = weakref.ref(cycle)
        del cycle
    assert gc.isenabled() and dead() is None  # collected, not frozen with the living
    assert gc.get_freeze_count() > 0 and keep is not None


def test_a_failed_load_still_restores_the_collector(unfrozen):
    with pytest.raises(RuntimeError), model_loading():
        raise RuntimeError("no such bundle")
    assert gc.isenabled()
    gc.disable()
    try:
        with model_loading():
            pass
        assert not gc.isenabled()  # as it was
    finally:
        gc.enable()


def test_the_caption_tool_loads_its_model_that_way(tiny_bundle_dir, photo, tmp_path, capsys, unfrozen):
    from PIL import Image

    from captioning.cli import main

    path = tmp_path / "cat.jpg"
    Image.fromarray(photo).save(path)
    gc.unfreeze()
    assert main([str(path), "--weights", str(tiny_bundle_dir), "--backend", "torch"]) == 0
    assert gc.get_freeze_count() > 0 and gc.isenabled()
