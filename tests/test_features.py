"""Feature cache: hits, invalidation by image content and by encoder, crash-safe tail."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from captioning.encoder import load_pretrained_encoder
from captioning.training.features import FeatureCache, encoder_fingerprint
from captioning.images import Preprocessing


@pytest.fixture(scope="module")
def encoder():
    return load_pretrained_encoder()


def _images(folder, n):
    paths = []
    for i in range(n):
        p = folder / f"img{i}.png"
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(p)
        paths.append(p)
    return paths


def test_hits_and_order(tmp_path, encoder):
    paths = _images(tmp_path, 3)
    cache = FeatureCache(tmp_path / "c", encoder, Preprocessing())
    first = np.array(cache.grids(paths, progress=False))
    assert first.shape == (3, 49, 1280) and first.dtype == np.float16
    with torch.inference_mode():
        direct = encoder(Preprocessing().to_tensor([Image.open(p).convert("RGB") for p in paths])).grid
    assert np.allclose(first.astype(np.float32), direct.numpy(), atol=1e-2)
    reopened = FeatureCache(tmp_path / "c", encoder, Preprocessing())
    reversed_grids = reopened.grids(paths[::-1], progress=False)
    assert np.array_equal(reversed_grids, first[::-1]) and len(reopened.index) == 3


def test_changed_image_is_a_miss(tmp_path, encoder):
    paths = _images(tmp_path, 2)
    cache = FeatureCache(tmp_path / "c", encoder, Preprocessing())
    before = np.array(cache.grids(paths, progress=False))
    Image.fromarray(np.full((32, 32, 3), 250, np.uint8)).save(paths[0])  # same name, new pixels
    after = np.array(cache.grids(paths, progress=False))
    assert len(cache.index) == 3
    assert not np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])


def test_changed_encoder_or_preprocessing_uses_another_folder(tmp_path, encoder):
    a = FeatureCache(tmp_path / "c", encoder, Preprocessing())
    b = FeatureCache(tmp_path / "c", encoder, Preprocessing(resample="bicubic"))
    other = load_pretrained_encoder()
    with torch.no_grad():
        other._fc.bias.add_(1.0)
    c = FeatureCache(tmp_path / "c", other, Preprocessing())
    assert len({a.dir, b.dir, c.dir}) == 3


def test_unindexed_tail_of_a_killed_run_is_dropped(tmp_path, encoder):
    paths = _images(tmp_path, 2)
    cache = FeatureCache(tmp_path / "c", encoder, Preprocessing())
    good = np.array(cache.grids(paths, progress=False))
    with open(cache.dir / "grids.f16", "ab") as f:  # half a row written, never indexed
        f.write(b"\0" * 1000)
    reopened = FeatureCache(tmp_path / "c", encoder, Preprocessing())
    assert (reopened.dir / "grids.f16").stat().st_size == 2 * 49 * 1280 * 2
    assert np.array_equal(reopened.grids(paths, progress=False), good)


def test_mirrored_view_is_the_grid_of_the_mirrored_photo(tmp_path, encoder):
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    photo[:, :80] = 0  # asymmetric, so the mirrored grid differs from the plain one
    Image.fromarray(photo).save(tmp_path / "photo.png")
    Image.fromarray(np.ascontiguousarray(photo[:, ::-1])).save(tmp_path / "mirrored.png")
    plain = FeatureCache(tmp_path / "c", encoder, Preprocessing())
    flipped = FeatureCache(tmp_path / "c", encoder, Preprocessing(), hflip=True)
    assert flipped.dir != plain.dir
    assert plain.dir.name == "c982ae2ec463e1c3"  # adding views kept the plain view's existing cache key
    view = np.array(flipped.grids([tmp_path / "photo.png"], progress=False))
    mirrored, original = np.array(plain.grids([tmp_path / "mirrored.png", tmp_path / "photo.png"], progress=False))
    as_f32 = lambda a: a.astype(np.float32)  # noqa: E731
    assert np.allclose(as_f32(view[0]), as_f32(mirrored), atol=1e-2)  # batches of 1 and 2: fp16 rounding apart
    assert not np.allclose(as_f32(view[0]), as_f32(original), atol=1e-1)


def test_activations_entering_a_block_are_cached_apart(tmp_path, encoder):
    """stop=15 caches what block 15 receives; the encoder's tail turns it into the usual grid."""
    paths = _images(tmp_path, 2)
    grids = FeatureCache(tmp_path / "c", encoder, Preprocessing())
    acts = FeatureCache(tmp_path / "c", encoder, Preprocessing(), stop=15)
    assert acts.dir != grids.dir and acts.row_shape == (192, 7, 7)
    a = np.array(acts.grids(paths, progress=False))
    assert a.shape == (2, 192, 7, 7) and a.dtype == np.float16
    with torch.inference_mode():
        from_acts = encoder.tail(torch.from_numpy(a).float(), start=15).grid.numpy()
    assert np.allclose(from_acts, grids.grids(paths, progress=False).astype(np.float32), atol=5e-2)
    reopened = FeatureCache(tmp_path / "c", encoder, Preprocessing(), stop=15)
    assert np.array_equal(reopened.grids(paths, progress=False), a)


def test_tuning_the_last_blocks_keeps_the_key_of_their_input(encoder):
    """Cached activations entering block k depend on the blocks before k only: tuning block 15
    leaves the stop=14 key (so a fine-tuned bundle reuses it) but changes the grids' key."""
    def key(e, **view):
        return encoder_fingerprint(e, Preprocessing(), **view)

    tuned = copy.deepcopy(encoder)
    with torch.no_grad():
        tuned._blocks[15]._project_conv.weight.mul_(1.01)
    assert key(tuned, stop=14) == key(encoder, stop=14) and key(tuned) != key(encoder)
    with torch.no_grad():
        tuned._blocks[13]._project_conv.weight.mul_(1.01)
    assert key(tuned, stop=14) != key(encoder, stop=14)
