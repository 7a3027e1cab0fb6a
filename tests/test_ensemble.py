"""Ensembles: the step is the mean of the members' distributions; decoding invariants hold;
an ensemble bundle (float16 decoders) round-trips; caption-ensemble checks its members."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from captioning import Captioner, load_bundle, save_bundle
from captioning.bundle import BundleInfo
from captioning.decoding import beam_search, greedy
from captioning.decoder import EnsembleDecoder
from captioning.training.ensembling import main
from captioning.model import CaptionModel
from captioning.vocab import Vocabulary

from conftest import TINY_CAPTIONS, make_tiny_model


@pytest.fixture(scope="module")
def inputs():
    torch.manual_seed(0)
    grid = torch.rand(3, 49, 1280) * 3  # (B, 49, 1280)
    return grid, grid.mean(dim=1)


@pytest.fixture(scope="module")
def members(tiny_vocab):
    return [make_tiny_model(tiny_vocab, seed=s).decoder for s in (0, 1)]


@torch.inference_mode()
def test_step_is_the_mean_of_the_members_distributions(members, inputs, tiny_vocab):
    ens = EnsembleDecoder(members).eval()
    tokens = torch.full((3,), tiny_vocab.start_id)
    logprobs, _, alpha = ens.step(tokens, ens.init_state(*inputs))
    probs = [m.step(tokens, m.init_state(*inputs))[0].softmax(-1) for m in members]
    assert torch.allclose(logprobs.exp(), (probs[0] + probs[1]) / 2, atol=1e-6)
    assert torch.allclose(logprobs.exp().sum(-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(alpha.sum(-1), torch.ones(3), atol=1e-5)


@torch.inference_mode()
def test_one_member_or_two_copies_decode_like_the_single_model(members, inputs, tiny_vocab):
    single = beam_search(members[0], *inputs, vocab=tiny_vocab, beam_size=3, max_length=10)
    for ens in (EnsembleDecoder(members[:1]), EnsembleDecoder([members[0], members[0]])):
        got = beam_search(ens.eval(), *inputs, vocab=tiny_vocab, beam_size=3, max_length=10)
        assert [[h.tokens for h in nb] for nb in got] == [[h.tokens for h in nb] for nb in single]
        assert [h.score for nb in got for h in nb] == pytest.approx([h.score for nb in single for h in nb], abs=1e-4)


@torch.inference_mode()
def test_ensemble_decoding_invariants(members, inputs, tiny_vocab):
    ens = EnsembleDecoder(members).eval()
    g = greedy(ens, *inputs, vocab=tiny_vocab, max_length=10)
    b = beam_search(ens, *inputs, vocab=tiny_vocab, beam_size=1, max_length=10)
    assert [h.tokens for h in g] == [nb[0].tokens for nb in b]  # beam 1 = greedy
    batch = beam_search(ens, *inputs, vocab=tiny_vocab, beam_size=3, max_length=4)
    for i, nbest in enumerate(batch):
        assert [h.score for h in nbest] == sorted((h.score for h in nbest), reverse=True)
        assert all(len(h.tokens) <= 4 for h in nbest)
        (alone,) = beam_search(ens, inputs[0][i:i + 1], inputs[1][i:i + 1], vocab=tiny_vocab, beam_size=3,
                               max_length=4)
        assert [h.tokens for h in alone] == [h.tokens for h in nbest]  # batch of one = single


def test_members_must_share_a_configuration(tiny_vocab):
    other = Vocabulary.build(TINY_CAPTIONS[:2], min_freq=1)
    with pytest.raises(ValueError, match="one decoder configuration"):
        EnsembleDecoder([make_tiny_model(tiny_vocab).decoder, make_tiny_model(other).decoder])


def test_ensemble_bundle_round_trip_float16(members, tiny_vocab, tmp_path, photo):
    model = CaptionModel(dataclasses.replace(make_tiny_model(tiny_vocab).config, members=2))
    model.encoder.load_state_dict(make_tiny_model(tiny_vocab).encoder.state_dict())
    for slot, m in zip(model.decoder.members, members):
        slot.load_state_dict(m.state_dict())
    path = save_bundle(tmp_path / "tiny_sat2.test", model, tiny_vocab, BundleInfo("tiny_sat2.test", "0.0.1"),
                       half_decoder=True)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format_version"] == 2 and manifest["model"]["members"] == 2
    loaded = load_bundle(path)
    assert isinstance(loaded.model.decoder, EnsembleDecoder) and len(loaded.model.decoder.members) == 2
    w, w16 = members[1].out.weight, loaded.model.decoder.members[1].out.weight
    assert w16.dtype == torch.float32 and torch.equal(w16, w.half().float())
    assert torch.equal(loaded.model.encoder.state_dict()["_conv_stem.weight"],
                       model.encoder.state_dict()["_conv_stem.weight"])  # encoder stays float32
    result = Captioner.load(path, device="cpu").caption(photo)
    assert result.text and result.attention.shape[1:] == (7, 7)


def test_caption_ensemble_cli(tiny_bundle_dir, tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    rows = []
    for i, caption in enumerate(TINY_CAPTIONS[:3]):
        Image.new("RGB", (64, 64), (40 * i, 90, 200)).save(root / "images" / f"{i}.jpg")
        rows.append(f"{i}.jpg,{caption}")
    (root / "captions.csv").write_text("image,caption\n" + "\n".join(rows) + "\n")
    (root / "dev.txt").write_text("0.jpg\n1.jpg\n2.jpg\n")
    out = tmp_path / "tiny_sat2.test"
    args = ["--members", str(tiny_bundle_dir), str(tiny_bundle_dir), "--data", str(root / "captions.csv"),
            "--name", "tiny_sat2.test", "--out", str(out), "--cache", str(tmp_path / "cache"), "--half",
            "--no-repeat-ngram-size", "2"]
    assert main(args) == 0
    assert "CIDEr-D" in capsys.readouterr().out
    m = json.loads((out / "manifest.json").read_text())
    assert [e["name"] for e in m["training"]["ensemble_of"]] == ["tiny_sat.test"] * 2
    assert m["decoding"]["no_repeat_ngram_size"] == 2 and m["training"]["command"].startswith("caption-ensemble")
    assert math.isfinite(m["metrics"]["CIDEr-D"])
    cap = Captioner.load(out, device="cpu")
    assert cap.decoding.no_repeat_ngram_size == 2  # the flag's
    assert cap.decoding.beam_size == load_bundle(tiny_bundle_dir).decoding["beam_size"]  # the first member's


def test_caption_ensemble_refuses_different_vocabularies(tiny_bundle_dir, tmp_path, capsys):
    other = Vocabulary.build(TINY_CAPTIONS[:2], min_freq=1)
    odd = save_bundle(tmp_path / "odd_sat.test", make_tiny_model(other), other, BundleInfo("odd_sat.test", "0.0.1"))
    (tmp_path / "captions.csv").write_text("image,caption\n")
    rc = main(["--members", str(tiny_bundle_dir), str(odd), "--data", str(tmp_path / "captions.csv"),
               "--name", "x.y", "--out", str(tmp_path / "out")])
    assert rc == 2 and "differ in vocabulary" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_caption_ensemble_refuses_a_fine_tuned_encoder(tiny_bundle_dir, tiny_vocab, tmp_path, capsys):
    """Even with the captioning weights unchanged, a bundle whose encoder is set up as fine-tuned
    (ImageNet copies for the tags) is another encoder: the members would not share one."""
    from captioning.encoder import load_pretrained_encoder

    base = make_tiny_model(tiny_vocab)
    tuned = CaptionModel(dataclasses.replace(base.config, encoder_tuned_blocks=2))
    tuned.load_state_dict(base.state_dict(), strict=False)
    tuned.encoder.keep_imagenet_head(load_pretrained_encoder())
    path = save_bundle(tmp_path / "tuned_sat.test", tuned, tiny_vocab, BundleInfo("tuned_sat.test", "0.0.1"))
    (tmp_path / "captions.csv").write_text("image,caption\n")
    rc = main(["--members", str(tiny_bundle_dir), str(path), "--data", str(tmp_path / "captions.csv"),
               "--name", "x.y", "--out", str(tmp_path / "out")])
    assert rc == 2 and "differ in encoder weights" in capsys.readouterr().err


def test_caption_ensemble_refuses_a_name_of_another_arch(tiny_bundle_dir, tmp_path, capsys):
    """--name lite2_... over Lite0 members is one line on stderr, before anything is scored or written."""
    rc = main(["--members", str(tiny_bundle_dir), str(tiny_bundle_dir), "--data", str(tmp_path / "captions.csv"),
               "--name", "lite2_sat.x", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "says efficientnet_lite2 but model.encoder is 'efficientnet_lite0'" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
