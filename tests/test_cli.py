"""``caption IMAGE...``: text and JSON output, decoding flags, bad files and bad bundles."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from captioning.bundle import BundleInfo, save_bundle
from captioning.cli import main
from conftest import make_tiny_model


@pytest.fixture(scope="module")
def photos(tmp_path_factory, photo):
    root = tmp_path_factory.mktemp("photos")
    Image.fromarray(photo).save(root / "cat.jpg")
    Image.fromarray(photo[::-1]).save(root / "upside_down.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


@pytest.fixture(scope="module")
def dog_bundle(tmp_path_factory, tiny_vocab):
    """A bundle that would say "dog dog dog ...", recording no_repeat_words."""
    model = make_tiny_model(tiny_vocab)
    with torch.no_grad():
        model.decoder.out.bias[tiny_vocab.stoi["dog"]] += 100.0
    info = BundleInfo(name="tiny_sat.dog", version="0.0.1", decoding={"beam_size": 3, "no_repeat_words": True})
    return save_bundle(tmp_path_factory.mktemp("weights") / "tiny_sat.dog", model, tiny_vocab, info)


def test_text_output_one_line_per_image(photos, tiny_bundle_dir, capsys):
    paths = [str(photos / "cat.jpg"), str(photos / "upside_down.png")]
    assert main([*paths, "--weights", str(tiny_bundle_dir), "--device", "cpu", "--n-best", "2", "--tags", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    captions = [line.split("\t") for line in out if not line.startswith("\t")]
    assert [c[0] for c in captions] == paths and all(c[1] for c in captions)
    assert sum(line.startswith("\t  tags: ") for line in out) == 2


def test_json_output_and_decoding_flags(photos, dog_bundle, capsys):
    """The bundle's recorded decoding is the default; a flag overrides it."""
    def run(*flags: str) -> dict:
        assert main([str(photos / "cat.jpg"), "--weights", str(dog_bundle), "--device", "cpu", "--json", *flags]) == 0
        return json.loads(capsys.readouterr().out)

    default = run("--n-best", "3")
    assert default["caption"].split().count("dog") == 1 and len(default["n_best"]) == 3
    assert [a["score"] for a in default["n_best"]] == sorted((a["score"] for a in default["n_best"]), reverse=True)
    assert run("--no-repeat-words", "0")["caption"].split().count("dog") > 1
    assert len(run("--no-repeat-words", "0", "--max-length", "4")["caption"].split()) == 4


def test_bad_file_is_one_line_and_the_rest_goes_on(photos, tiny_bundle_dir, capsys):
    args = [str(photos / "broken.jpg"), str(photos / "cat.jpg"), "--weights", str(tiny_bundle_dir), "--device", "cpu"]
    assert main(args) == 0  # as every tool: failures reported, exit 0; --strict makes them count
    out, err = capsys.readouterr()
    assert out.startswith(str(photos / "cat.jpg") + "\t")
    assert len(err.strip().splitlines()) == 1 and "broken.jpg" in err
    assert main(args + ["--strict"]) == 1


def test_tags_by_default_and_sampling_flags(photos, tiny_bundle_dir, capsys):
    path = str(photos / "cat.jpg")
    assert main([path, "--weights", str(tiny_bundle_dir), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("\t  everyday tags: ") and lines[2].startswith("\t  tags: ")  # --tags 5, as caption-images

    def sampled(*flags: str) -> str:
        assert main([path, "--weights", str(tiny_bundle_dir), "--device", "cpu", "--json", "--tags", "0",
                     "--method", "sample", "--seed", "7", *flags]) == 0
        return json.loads(capsys.readouterr().out)["caption"]

    assert sampled() == sampled()  # seeded
    assert main([path, "--weights", str(tiny_bundle_dir), "--device", "cpu", "--json", "--method", "greedy"]) == 0
    greedy = json.loads(capsys.readouterr().out)["caption"]
    assert sampled("--top-p", "0.0001") == greedy  # nucleus of one word: the argmax at every step


def test_bad_bundle_and_bad_flag(photos, tmp_path, capsys):
    assert main([str(photos / "cat.jpg"), "--weights", str(tmp_path / "nowhere"), "--device", "cpu"]) == 2
    assert "nowhere" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(photos / "cat.jpg"), "--no-dangling-end", "yes"])
    assert "expected 0 or 1" in capsys.readouterr().err
