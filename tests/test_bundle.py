"""Bundle round trip, hash verification, name resolution, no pickle in the load path, and
malformed manifests, vocabularies and weights refused at load with one BundleError line."""
from __future__ import annotations

import copy
import hashlib
import json
import os
import pickle
import shutil
import sys
from pathlib import Path

import pytest
import torch
from jsonschema import Draft202012Validator
from safetensors.torch import load_file, save_file

from captioning import BundleError, Captioner, NoDefaultBundleError, load_bundle
from captioning.bundle import (MANIFEST, MANIFEST_SCHEMA, VOCAB, WEIGHTS, WEIGHTS_DIR, attach_file, available_bundles,
                               read_manifest, record_evaluation, resolve_bundle)


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


def test_a_leading_part_of_several_archs_is_ambiguous(bundle_copy):
    """``lite0`` leads both ``lite0_sat`` and ``lite0_sat_x3``: ambiguous, not "no bundle";
    the exact arch ``lite0_sat`` still picks its bundle."""
    root = bundle_copy.parent
    for name in ("lite0_sat.flickr8k", "lite0_sat_x3.flickr8k"):
        shutil.copytree(bundle_copy, root / name)
    with pytest.raises(BundleError, match="'lite0' is ambiguous: matches lite0_sat.flickr8k, lite0_sat_x3.flickr8k"):
        resolve_bundle("lite0", weights_dir=root)
    assert resolve_bundle("lite0_sat", weights_dir=root) == root / "lite0_sat.flickr8k"
    assert resolve_bundle("lite0_sat_x3", weights_dir=root) == root / "lite0_sat_x3.flickr8k"
    with pytest.raises(BundleError, match="no bundle 'lite'"):  # a leading part is whole "_"-parts
        resolve_bundle("lite", weights_dir=root)


def test_no_default_bundle_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr("captioning.bundle.WEIGHTS_DIR", tmp_path)
    with pytest.raises(NoDefaultBundleError, match="no default model bundle"):
        Captioner.load()


# --- malformed bundles (issue #18): each problem is one BundleError line naming the file and the field ---

DELETE = object()  # as a value in an edit: remove the key


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / MANIFEST).read_text())


def _write_manifest(bundle: Path, manifest: object) -> None:
    (bundle / MANIFEST).write_text(json.dumps(manifest))


def _file_entry(file: Path) -> dict:
    """The manifest's files entry that makes ``file`` verify."""
    return {"sha256": hashlib.sha256(file.read_bytes()).hexdigest(), "size": file.stat().st_size}


def _edit(manifest: dict, keys: tuple, value: object) -> dict:
    """A copy of ``manifest`` with ``manifest[k0][k1]...`` set to ``value`` (or deleted)."""
    *parents, last = keys
    manifest = copy.deepcopy(manifest)
    target = manifest
    for key in parents:
        target = target[key]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return manifest


def _one_line_error(bundle: Path, file: str = MANIFEST) -> str:
    """The message of the BundleError load_bundle raises, without the "<bundle>/<file>: " prefix."""
    with pytest.raises(BundleError) as e:
        load_bundle(bundle)
    message, prefix = str(e.value), f"{bundle / file}: "
    assert "\n" not in message and message.startswith(prefix), message
    return message.removeprefix(prefix)


def test_manifest_not_an_object(bundle_copy):
    (bundle_copy / MANIFEST).write_text("[1]\n")
    assert _one_line_error(bundle_copy) == "expected an object, got [1]"


def test_file_entry_without_size(bundle_copy):
    _write_manifest(bundle_copy, _edit(_manifest(bundle_copy), ("files", VOCAB, "size"), DELETE))
    assert _one_line_error(bundle_copy) == "files['vocab.json'].size: missing"


def test_size_as_a_string(bundle_copy):
    """Named as the type it is, not compared with the file's size."""
    manifest = _manifest(bundle_copy)
    size = manifest["files"][WEIGHTS]["size"]
    _write_manifest(bundle_copy, _edit(manifest, ("files", WEIGHTS, "size"), str(size)))
    assert _one_line_error(bundle_copy) == f'files[\'model.safetensors\'].size: expected an integer, got "{size}"'


def test_unknown_resample_fails_at_load(bundle_copy):
    """At load, not on the first image."""
    _write_manifest(bundle_copy, _edit(_manifest(bundle_copy), ("preprocessing", "resample"), "wobbly"))
    assert _one_line_error(bundle_copy).startswith('preprocessing.resample: expected one of "nearest", ')


@pytest.mark.parametrize("keys, value, expected", [
    (("format_version",), True, "format_version: expected an integer, got true"),
    (("format_version",), DELETE, "format_version: missing"),
    (("name",), 5, "name: expected a string, got 5"),
    (("version",), 1, "version: expected a string, got 1"),
    (("model",), "tiny", 'model: expected an object, got "tiny"'),
    (("model", "decoder", "hidden_dim"), "32", 'model.decoder.hidden_dim: expected an integer, got "32"'),
    (("model", "decoder", "dropout"), None, "model.decoder.dropout: expected a number, got null"),
    (("model", "membrs"), 2, "model: unknown field(s) 'membrs'"),
    (("preprocessing", "size"), 0, "preprocessing.size: expected at least 1, got 0"),
    (("preprocessing", "size"), 224.0, "preprocessing.size: expected an integer, got 224.0"),
    (("preprocessing", "std"), 0, "preprocessing.std: must not be 0"),
    (("preprocessing", "mean"), "127", 'preprocessing.mean: expected a number, got "127"'),
    (("preprocessing", "crop"), True, "preprocessing: unknown field(s) 'crop'"),
    (("vocabulary",), DELETE, "vocabulary: missing"),
    (("vocabulary", "file"), 3, "vocabulary.file: expected a string, got 3"),
    (("vocabulary", "size"), "13", 'vocabulary.size: expected an integer, got "13"'),
    (("files",), [], "files: expected an object, got []"),
    (("files", VOCAB), DELETE, "files['vocab.json']: missing"),
    (("files", VOCAB), "abc", "files['vocab.json']: expected an object, got \"abc\""),
    (("files", VOCAB, "sha256"), "ABC", "files['vocab.json'].sha256: expected a string matching"),
    (("files", VOCAB, "sha256"), 0, "files['vocab.json'].sha256: expected a string, got 0"),
    (("files", VOCAB, "size"), -1, "files['vocab.json'].size: expected at least 0, got -1"),
    (("files", VOCAB, "size"), True, "files['vocab.json'].size: expected an integer, got true"),  # bool is no int
    (("decoding",), [], "decoding: expected an object, got []"),
    (("decoding", "beam_size"), "3", 'decoding.beam_size: expected an integer, got "3"'),
    (("decoding", "no_repeat_words"), 1, "decoding.no_repeat_words: expected true or false, got 1"),
    (("metrics",), [], "metrics: expected an object, got []"),
    (("training",), "x", 'training: expected an object, got "x"'),
    (("encoder_source",), 1, "encoder_source: expected an object, got 1"),
])
def test_manifest_schema_names_the_field(bundle_copy, keys, value, expected):
    _write_manifest(bundle_copy, _edit(_manifest(bundle_copy), keys, value))
    assert _one_line_error(bundle_copy).startswith(expected)


@pytest.mark.parametrize("content, expected", [
    (lambda words: [1, 2], "expected an object, got [1, 2]"),
    (lambda words: {"words": " ".join(words)}, 'words: expected an array, got "<pad> <start> <end>'),
    (lambda words: {"words": [*words[:4], 5, *words[5:]]}, "words[4]: expected a string, got 5"),
    (lambda words: {"words": words[4:]}, "invalid vocabulary (vocabulary must start with"),
])
def test_vocabulary_content_names_vocab_json(bundle_copy, tiny_vocab, content, expected):
    """vocab.json replaced, with its sha256 and size in the manifest updated."""
    (bundle_copy / VOCAB).write_text(json.dumps(content(tiny_vocab.itos)))
    _write_manifest(bundle_copy, _edit(_manifest(bundle_copy), ("files", VOCAB), _file_entry(bundle_copy / VOCAB)))
    assert _one_line_error(bundle_copy, VOCAB).startswith(expected)


def test_vocabulary_file_and_size_agree_with_the_manifest(bundle_copy, tiny_vocab):
    manifest = _manifest(bundle_copy)
    _write_manifest(bundle_copy, _edit(manifest, ("vocabulary", "file"), "words.json"))
    assert _one_line_error(bundle_copy) == "vocabulary.file: 'words.json' is not listed in files"
    n = len(tiny_vocab)
    _write_manifest(bundle_copy, _edit(manifest, ("vocabulary", "size"), n + 1))
    assert _one_line_error(bundle_copy, VOCAB) == f"{n} words, manifest says vocabulary.size {n + 1}"


@pytest.mark.parametrize("prefix, dtype", [("decoder.", torch.int8), ("encoder.", torch.float16)])
def test_weights_of_the_wrong_dtype_refused(bundle_copy, prefix, dtype):
    """A bundle stores float32 tensors, and float16 only for the decoder (save_bundle's half_decoder)."""
    state = load_file(str(bundle_copy / WEIGHTS))
    save_file({k: v.to(dtype) if k.startswith(prefix) else v for k, v in state.items()}, str(bundle_copy / WEIGHTS))
    _write_manifest(bundle_copy, _edit(_manifest(bundle_copy), ("files", WEIGHTS), _file_entry(bundle_copy / WEIGHTS)))
    message = _one_line_error(bundle_copy, WEIGHTS)
    assert message.startswith(f"tensor '{prefix}") and f"is {str(dtype).removeprefix('torch.')} " in message


# --- files the manifest names stay inside the bundle folder ---

_touched: list[str] | None = None  # real paths opened or stat-ed while a test records them (see `touched`)


def _record_open(event: str, args: tuple) -> None:
    if event == "open" and _touched is not None and isinstance(args[0], (str, bytes, os.PathLike)):
        _touched.append(os.path.realpath(args[0]))


@pytest.fixture(scope="module")
def _open_audit_hook():
    sys.addaudithook(_record_open)  # cannot be removed: it records nothing while _touched is None


@pytest.fixture
def touched(_open_audit_hook, monkeypatch):
    """Real paths of every file opened (the interpreter's "open" audit event: builtins.open,
    io.open, os.open, Path.open) or os.stat-ed while the test runs."""
    global _touched
    _touched = paths = []
    real_stat = os.stat

    def recording_stat(path, *args, **kwargs):
        if isinstance(path, (str, bytes, os.PathLike)):
            paths.append(os.path.realpath(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", recording_stat)
    yield paths
    _touched = None


@pytest.fixture
def outside_file(bundle_copy):
    """A file beside the bundle folder; its right sha256 and size would make it verify."""
    secret = bundle_copy.parent.parent / "secret.txt"
    secret.write_text("not part of any bundle\n")
    return secret


def _name_in_manifest(bundle: Path, name: str, file: Path) -> None:
    _write_manifest(bundle, _edit(_manifest(bundle), ("files", name), _file_entry(file)))


@pytest.mark.parametrize("kind", ["absolute", "dotdot"])
def test_manifest_names_a_file_outside_the_bundle(bundle_copy, outside_file, touched, kind):
    """Refused before it is opened, even with its right sha256 and size in the manifest."""
    name = str(outside_file) if kind == "absolute" else "../../secret.txt"
    outside = os.path.realpath(outside_file)
    assert os.path.realpath(bundle_copy / name) == outside
    _name_in_manifest(bundle_copy, name, outside_file)
    touched.clear()
    problem = _one_line_error(bundle_copy)
    assert os.path.realpath(bundle_copy / MANIFEST) in touched and outside not in touched
    assert problem.startswith(f"files[{name!r}]: " + ("an absolute path" if kind == "absolute" else "a '..' component"))


def test_manifest_names_a_symlink_to_outside_the_bundle(bundle_copy, outside_file, touched):
    try:
        os.symlink(outside_file, bundle_copy / "link.txt")
    except (OSError, NotImplementedError, AttributeError) as e:
        pytest.skip(f"no symlinks here ({e})")
    outside = os.path.realpath(outside_file)
    _name_in_manifest(bundle_copy, "link.txt", outside_file)
    touched.clear()
    problem = _one_line_error(bundle_copy)
    assert os.path.realpath(bundle_copy / MANIFEST) in touched and outside not in touched
    assert problem == f"files['link.txt']: resolves to {outside}, outside the bundle folder"


def test_a_symlink_inside_the_bundle_still_loads(bundle_copy, tiny_vocab):
    (bundle_copy / "words.json").write_bytes((bundle_copy / VOCAB).read_bytes())
    try:
        os.symlink("words.json", bundle_copy / "alias.json")
    except (OSError, NotImplementedError, AttributeError) as e:
        pytest.skip(f"no symlinks here ({e})")
    manifest = _edit(_manifest(bundle_copy), ("files", "alias.json"), _file_entry(bundle_copy / "words.json"))
    _write_manifest(bundle_copy, _edit(manifest, ("vocabulary", "file"), "alias.json"))
    assert load_bundle(bundle_copy).vocab == tiny_vocab


# --- record_evaluation reads and writes manifests through the same checks ---

def test_record_evaluation_validates_the_manifest(bundle_copy, outside_file):
    _name_in_manifest(bundle_copy, "../../secret.txt", outside_file)
    before = (bundle_copy / MANIFEST).read_text()
    with pytest.raises(BundleError, match=r"manifest\.json: files\['\.\./\.\./secret\.txt'\]: a '\.\.' component"):
        record_evaluation(bundle_copy, metrics={"BLEU-4": 0.1}, decoding={"beam_size": 3})
    assert (bundle_copy / MANIFEST).read_text() == before


def test_record_evaluation_never_writes_an_invalid_manifest(bundle_copy):
    before = (bundle_copy / MANIFEST).read_text()
    with pytest.raises(BundleError, match=r"manifest\.json: decoding: unknown field\(s\) 'beam_width'"):
        record_evaluation(bundle_copy, metrics={"BLEU-4": 0.1}, decoding={"beam_width": 3})
    assert (bundle_copy / MANIFEST).read_text() == before
    record_evaluation(bundle_copy, metrics={"BLEU-4": 0.1}, decoding={"beam_size": 2}, version="0.0.2")
    assert load_bundle(bundle_copy).default_decoding.beam_size == 2


def test_a_recorded_entry_keeps_the_bundle_loadable(bundle_copy):
    from captioning.bundle import record_entry

    record_entry(bundle_copy, "confidence", {"held_out": {"pooled": {"auroc": 0.75}}})
    assert load_bundle(bundle_copy).manifest["confidence"]["held_out"]["pooled"]["auroc"] == 0.75
    with pytest.raises(BundleError):  # a manifest load_bundle would refuse is never written
        record_entry(bundle_copy, "recipe", 3)


def test_an_attached_model_card_is_listed_and_verified(bundle_copy, tmp_path):
    card = tmp_path / "MODEL_CARD.md"
    card.write_text("# tiny\nIntended use: tests.\n")
    attach_file(bundle_copy, card)
    entry = _manifest(bundle_copy)["files"]["MODEL_CARD.md"]
    assert entry["size"] == card.stat().st_size and (bundle_copy / "MODEL_CARD.md").read_text() == card.read_text()
    record_evaluation(bundle_copy, metrics={"BLEU-4": 0.1}, decoding={"beam_size": 2})  # the listing survives
    assert "MODEL_CARD.md" in load_bundle(bundle_copy).manifest["files"]
    with pytest.raises(BundleError, match="a bundle's own file"):
        attach_file(bundle_copy, bundle_copy / "vocab.json")
    (bundle_copy / "MODEL_CARD.md").write_text("# tiny\nIntended use: anything.\n")
    with pytest.raises(BundleError, match=r"MODEL_CARD\.md: s"):  # size or sha256: edited after release
        load_bundle(bundle_copy)


# --- the schema itself ---

def test_schema_is_valid_json_schema():
    Draft202012Validator.check_schema(MANIFEST_SCHEMA)


@pytest.mark.parametrize("name", available_bundles())
def test_shipped_manifests_fit_the_schema(name):
    assert read_manifest(WEIGHTS_DIR / name)["name"] == name


def _rewrite(folder: Path, **changes) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest.update(changes)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_a_bundle_without_an_encoder_name_is_lite0(bundle_copy):
    """Manifests written before Lite1/2 may lack model.encoder: they mean efficientnet_lite0."""
    manifest = json.loads((bundle_copy / MANIFEST).read_text())
    del manifest["model"]["encoder"]
    (bundle_copy / MANIFEST).write_text(json.dumps(manifest))
    assert load_bundle(bundle_copy).model.config.encoder == "efficientnet_lite0"


@pytest.mark.parametrize("name, encoder, expected", [
    ("lite2_sat.coco_flickr8k", "efficientnet_lite0",
     "name 'lite2_sat.coco_flickr8k' says efficientnet_lite2 but model.encoder is 'efficientnet_lite0'"),
    ("lite7_sat.test", "efficientnet_lite0", "name 'lite7_sat.test': unknown arch 'lite7' (known: lite0, lite1, lite2)"),
    ("lite0_sat.test", "efficientnet_lite7", "unknown encoder 'efficientnet_lite7' (known: efficientnet_lite0,"),
])
def test_a_name_that_disagrees_with_the_encoder_fails_in_one_line(bundle_copy, name, encoder, expected):
    """A bundle's name is "<arch>.<tag>": its arch part's leading lite<N> must be the model's encoder,
    and a known one; loading refuses otherwise, and so does writing."""
    manifest = json.loads((bundle_copy / MANIFEST).read_text())
    manifest["model"]["encoder"] = encoder
    _rewrite(bundle_copy, name=name, model=manifest["model"])
    with pytest.raises(BundleError) as info:
        load_bundle(bundle_copy)
    assert expected in str(info.value) and "\n" not in str(info.value) and MANIFEST in str(info.value)


def test_save_bundle_refuses_a_name_of_another_arch(tiny_bundle, tmp_path):
    from captioning.bundle import BundleInfo, save_bundle

    with pytest.raises(ValueError, match="says efficientnet_lite2 but model.encoder is 'efficientnet_lite0'"):
        save_bundle(tmp_path / "b", tiny_bundle.model, tiny_bundle.vocab, BundleInfo("lite2_sat.x", "1.0.0"))


def test_a_lite2_bundle_loads_with_its_encoder_and_gets_its_own_graph(tiny_vocab, tiny_bundle, tmp_path):
    """A bundle naming efficientnet_lite2 is built with Lite2's blocks from the manifest alone; its
    encoder's ONNX graph key (captioning.runtime) differs from the Lite0 bundle's."""
    from captioning.bundle import BundleInfo
    from captioning.encoder import load_pretrained_encoder
    from captioning.runtime import graph_key
    from captioning.testing import TINY, save_random_bundle

    path = save_random_bundle(tmp_path / "lite2_sat.test", tiny_vocab, BundleInfo("lite2_sat.test", "0.0.1"),
                              encoder="efficientnet_lite2", **TINY)
    lite2 = load_bundle(path)
    assert lite2.manifest["model"]["encoder"] == "efficientnet_lite2" and len(lite2.model.encoder._blocks) == 21
    pretrained = load_pretrained_encoder("efficientnet_lite2").state_dict()
    assert all(torch.equal(v, pretrained[k]) for k, v in lite2.model.encoder.state_dict().items())
    assert graph_key(lite2.model.encoder, 224) != graph_key(tiny_bundle.model.encoder, 224)
    text = Captioner(lite2, device="cpu", backend="torch").caption(torch.zeros(64, 64, 3, dtype=torch.uint8).numpy())
    assert text.attention.shape[1:] == (7, 7)
