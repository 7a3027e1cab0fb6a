"""The Captioner API on the tiny bundle."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from captioning import ImageError


def test_all_input_kinds_give_the_same_caption(captioner, photo, tmp_path):
    path = tmp_path / "cat.png"
    Image.fromarray(photo).save(path)
    texts = {captioner.caption(src, beam_size=2).text
             for src in (path, str(path), path.read_bytes(), Image.fromarray(photo), photo)}
    assert len(texts) == 1


def test_result_fields(captioner, photo):
    r = captioner.caption(photo, beam_size=3)
    assert r.text == " ".join(r.tokens)
    assert r.attention.shape == (len(r.tokens), 7, 7)
    assert np.allclose(r.attention.sum(axis=(1, 2)), 1.0, atol=1e-4)
    assert len(r.alternatives) == 3 and r.alternatives[0].text == r.text
    assert [a.score for a in r.alternatives] == sorted((a.score for a in r.alternatives), reverse=True)
    assert r.score == pytest.approx(r.alternatives[0].score) and r.logprob <= 0


def test_batch_equals_single(captioner, photo):
    import skimage.data

    images = [photo, skimage.data.coffee(), skimage.data.astronaut(), skimage.data.camera()]
    batch = captioner.caption_batch(images, batch_size=3)
    assert [r.text for r in batch] == [captioner.caption(im).text for im in images]


def test_methods(captioner, photo):
    greedy = captioner.caption(photo, method="greedy")
    assert captioner.caption(photo, beam_size=1).text == greedy.text
    a = captioner.caption(photo, method="sample", seed=3, temperature=0.8, top_p=0.9)
    b = captioner.caption(photo, method="sample", seed=3, temperature=0.8, top_p=0.9)
    assert a.text == b.text
    assert len(captioner.caption(photo, max_length=3).tokens) <= 3
    with pytest.raises(ValueError, match="unknown decoding method"):
        captioner.caption(photo, method="magic")


def test_tags_are_pretrained_imagenet(captioner, photo):
    tags = captioner.tags(photo, k=5)
    assert len(tags) == 5 and tags[0].label in {"tabby", "tiger cat", "Egyptian cat"}
    probs = [t.probability for t in tags]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


def test_embed(captioner, photo):
    import skimage.data

    vecs = captioner.embed([photo, photo, skimage.data.coffee()])
    assert vecs.shape == (3, 1280) and vecs.dtype == np.float32
    assert np.allclose(vecs[0], vecs[1]) and not np.allclose(vecs[0], vecs[2])


def test_bad_image_is_a_clear_error(captioner):
    with pytest.raises(ImageError, match="not an image"):
        captioner.caption(b"definitely not a jpeg")
    buf = io.BytesIO()
    Image.new("RGB", (10, 10)).save(buf, format="PNG")
    assert captioner.caption(buf.getvalue()).text is not None


def test_compile_option_uses_the_compiled_encoder(tiny_bundle_dir, photo, monkeypatch):
    """compile=True warms up and then encodes through torch.compile's result (here a stand-in that
    records its calls, so the test does not depend on a compiler toolchain)."""
    import torch

    from captioning import Captioner

    calls = []

    def fake_compile(module, **kw):
        def compiled(x):
            calls.append(tuple(x.shape))
            return module(x)
        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    cap = Captioner.load(tiny_bundle_dir, device="cpu", compile=True)
    assert calls == [(1, 3, 224, 224)]  # the warm-up
    assert cap.caption(photo).text == Captioner.load(tiny_bundle_dir, device="cpu").caption(photo).text
    assert calls[-1] == (1, 3, 224, 224) and len(calls) == 2


def test_no_repeat_words_comes_from_the_bundle(tiny_vocab, photo, tmp_path):
    """A bundle recording ``no_repeat_words`` decodes that way by default; an explicit option wins."""
    import torch

    from captioning import Captioner
    from captioning.bundle import BundleInfo, save_bundle
    from conftest import make_tiny_model

    model = make_tiny_model(tiny_vocab)
    with torch.no_grad():
        model.decoder.out.bias[tiny_vocab.stoi["dog"]] += 100.0  # it would say "dog dog dog ..."
    info = BundleInfo(name="tiny_sat.norepeat", version="0.0.1", decoding={"beam_size": 3, "no_repeat_words": True})
    cap = Captioner.load(save_bundle(tmp_path / "tiny_sat.norepeat", model, tiny_vocab, info), device="cpu")
    for beam_size in (1, 3):
        assert cap.caption(photo, beam_size=beam_size).tokens.count("dog") == 1
        assert cap.caption(photo, beam_size=beam_size, no_repeat_words=False).tokens.count("dog") > 1


def test_no_dangling_end_comes_from_the_bundle(tiny_vocab, photo, tmp_path):
    """A bundle recording ``no_dangling_end`` never stops on "a" by default (beam 1 and 3); an
    explicit option wins; a manifest naming an unknown decoding option fails to load."""
    import json

    import torch

    from captioning import Captioner
    from captioning.bundle import BundleError, BundleInfo, save_bundle
    from conftest import make_tiny_model

    model = make_tiny_model(tiny_vocab)
    with torch.no_grad():  # it would say "a" and stop
        for word, bias in (("<end>", 100.0), ("a", 80.0), ("dog", 60.0)):
            model.decoder.out.bias[tiny_vocab.stoi[word]] += bias
    info = BundleInfo(name="tiny_sat.ends", version="0.0.1", decoding={"beam_size": 3, "no_dangling_end": True})
    path = save_bundle(tmp_path / "tiny_sat.ends", model, tiny_vocab, info)
    cap = Captioner.load(path, device="cpu")
    assert cap.caption(photo, min_length=1).text in ("dog", "a dog")
    assert cap.caption(photo, beam_size=1, min_length=1).text.split()[-1] == "a"  # greedy can't look ahead:
    assert len(cap.caption(photo, beam_size=1, min_length=1).tokens) == 12  # "a a ... a" up to max_length
    for beam_size in (1, 3):
        assert cap.caption(photo, beam_size=beam_size, min_length=1, no_dangling_end=False).text == "a"
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["decoding"]["beam_width"] = 3
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="beam_width"):
        Captioner.load(path, device="cpu")
