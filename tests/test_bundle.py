"""Bundle round trip, hash verification, name resolution, and no pickle in the load path."""
from __future__ import annotations

import json
import pickle
import shutil

import pytest
import torch

from captioning import BundleError, Captioner, NoDefaultBundleError, load_bundle
from captioning.bundle import MANIFEST, VOCAB, WEIGHTS, resolve_bundle


@pytest.fixture
def bundle_copy(tiny_bundle_dir, tmp_path):
    dst = tmp_path / "weights" / tiny_bundle_dir.name
    shutil.copytree(tiny_bundle_dir, dst)
    return dst


def test_round_trip_same_tensors_and_manifest(tiny_bundle_dir, tiny_vocab):
    from tests.conftest import make_tiny_model

    original = make_tiny_model(tiny_vocab)
    bundle = load_bundle(tiny_bundle_dir)
    for k, v in original.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, bundle.model.state_dict()[k]), k
    assert bundle.vocab == tiny_vocab
    m = bundle.manifest
    assert m["format_version"] == 2 and m["name"] == "tiny_sat.test" and m["version"] == "0.0.1"
    assert set(m["files"]) == {WEIGHTS, VOCAB}
    assert all(len(f["sha256"]) == 64 and f["size"] > 0 for f in m["files"].values())
    assert m["preprocessing"]["size"] == 224


def test_load_never_unpickles(tiny_bundle_dir, monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("pickle used while loading a bundle")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    assert load_bundle(tiny_bundle_dir).name == "tiny_sat.test"


def test_tampered_weights_detected(bundle_copy):
    data = bytearray((bundle_copy / WEIGHTS).read_bytes())
    data[-10] ^= 0xFF
    (bundle_copy / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model\.safetensors: sha256 does not match"):
        load_bundle(bundle_copy)


def test_truncated_weights_detected(bundle_copy):
    data = (bundle_copy / WEIGHTS).read_bytes()
    (bundle_copy / WEIGHTS).write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match=r"model\.safetensors: size .*\(truncated"):
        load_bundle(bundle_copy)


def test_missing_files_detected(bundle_copy):
    (bundle_copy / VOCAB).unlink()
    with pytest.raises(BundleError, match=r"vocab\.json: missing"):
        load_bundle(bundle_copy)
    (bundle_copy / MANIFEST).unlink()
    with pytest.raises(BundleError, match=r"manifest\.json: missing"):
        load_bundle(bundle_copy)


def test_incompatible_manifest_detected(bundle_copy):
    manifest = json.loads((bundle_copy / MANIFEST).read_text())
    (bundle_copy / MANIFEST).write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(BundleError, match="format_version 99 is not supported"):
        load_bundle(bundle_copy)
    manifest["model"]["decoder"]["hidden_dim"] = 64
    (bundle_copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="shapes do not fit"):
        load_bundle(bundle_copy)
    manifest["model"]["encoder"] = "resnet50"
    (bundle_copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="unknown encoder 'resnet50'"):
        load_bundle(bundle_copy)
    (bundle_copy / MANIFEST).write_text("{not json")
    with pytest.raises(BundleError, match="manifest.json: not valid JSON"):
        load_bundle(bundle_copy)


def test_name_resolution(bundle_copy):
    root = bundle_copy.parent
    assert resolve_bundle("tiny_sat.test", weights_dir=root) == bundle_copy
    assert resolve_bundle("tiny_sat", weights_dir=root) == bundle_copy  # unique arch prefix
    shutil.copytree(bundle_copy, root / "tiny_sat.other")
    with pytest.raises(BundleError, match="ambiguous"):
        resolve_bundle("tiny_sat", weights_dir=root)
    with pytest.raises(BundleError, match="no bundle 'nope'"):
        resolve_bundle("nope", weights_dir=root)
    (root / "DEFAULT").write_text("tiny_sat.other\n")
    assert resolve_bundle(None, weights_dir=root) == root / "tiny_sat.other"


def test_no_default_bundle_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr("captioning.bundle.WEIGHTS_DIR", tmp_path)
    with pytest.raises(NoDefaultBundleError, match="no default model bundle"):
        Captioner.load()
