"""Caption confidence and the unfamiliar-photo flag on every surface (issue #23): the API result,
caption-images records (--min-confidence, sidecars, XMP, resume of older files), the caption CLI,
the web UI and tag-video, with a tiny bundle carrying a synthetic calibration (confidence rises
with the beam score), next to the session's tiny bundle that has none."""
from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from captioning import Captioner
from captioning.bundle import attach_file, resolve_bundle, verified_manifest
from captioning.confidence import FEATURES, Calibration, Familiarity, load_calibration, save_calibration
from captioning.trust import UNFAMILIAR, confidence_words

PROJECTED = 4  # principal directions of the synthetic familiarity


def _photos(folder: Path) -> list[Path]:
    """Four different photos (their beam scores differ)."""
    cat = skimage.data.chelsea()
    images = {"cat": cat, "flipped": np.ascontiguousarray(cat[::-1]), "coffee": skimage.data.coffee(),
              "rocket": skimage.data.rocket()}
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, image in images.items():
        Image.fromarray(image).save(folder / f"{name}.png")
        paths.append(folder / f"{name}.png")
    return paths


def _calibration(scores: list[float], dim: int, *, unfamiliar_below: float = -2.0, seed: int = 0) -> Calibration:
    """Confidence = sigmoid(3 (score - median) / std): rises with the score, the other features weigh nothing;
    a familiarity of random unit training rows, k=2; nothing is unfamiliar below -2 (cosines are >= -1)."""
    rng = np.random.default_rng(seed)
    mean, scale, weights = np.zeros(len(FEATURES)), np.ones(len(FEATURES)), np.zeros(len(FEATURES))
    mean[0], scale[0], weights[0] = float(np.median(scores)), max(float(np.std(scores)), 1e-6), 3.0
    components = np.linalg.qr(rng.standard_normal((dim, PROJECTED)))[0].astype(np.float32)  # (D, P) orthonormal
    train = rng.standard_normal((6, PROJECTED))
    train /= np.linalg.norm(train, axis=1, keepdims=True)
    familiar = Familiarity(np.zeros(dim, np.float32), components, train.astype(np.float32), k=2,
                           words=("cat", "dog"), idf=np.array([1.0, 1.5]), indptr=np.array([0, 1, 1, 2, 2, 3, 3]),
                           word_ids=np.array([0, 1, 0]))
    return Calibration(mean, scale, weights, 0.0, unfamiliar_below, 0.2, familiar, {"note": "synthetic"})


def _calibrated_copy(source: Path, folder: Path, calibration: Calibration) -> Path:
    bundle = folder / source.name
    shutil.copytree(source, bundle)
    scratch = folder / "calibration"
    scratch.mkdir()
    for path in save_calibration(scratch, calibration):
        attach_file(bundle, path)
    return bundle


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    return _photos(tmp_path_factory.mktemp("confidence-photos"))


@pytest.fixture(scope="module")
def scores(captioner, photos) -> list[float]:
    return [r.score for r in captioner.decode(captioner.encode([str(p) for p in photos]))]


@pytest.fixture(scope="module")
def calibrated_dir(tmp_path_factory, tiny_bundle_dir, captioner, scores) -> Path:
    dim = captioner.encode([np.zeros((8, 8, 3), np.uint8)]).pooled.shape[1]
    return _calibrated_copy(tiny_bundle_dir, tmp_path_factory.mktemp("calibrated"), _calibration(scores, dim))


@pytest.fixture(scope="module")
def unfamiliar_dir(tmp_path_factory, tiny_bundle_dir, captioner, scores) -> Path:
    """Every photo is unfamiliar (a cosine is never above 2)."""
    dim = captioner.encode([np.zeros((8, 8, 3), np.uint8)]).pooled.shape[1]
    return _calibrated_copy(tiny_bundle_dir, tmp_path_factory.mktemp("unfamiliar"),
                            _calibration(scores, dim, unfamiliar_below=2.0))


@pytest.fixture(scope="module")
def calibrated(calibrated_dir) -> Captioner:
    return Captioner.load(calibrated_dir, device="cpu", backend="torch")


@pytest.fixture(scope="module")
def confidences(calibrated, photos) -> list[float]:
    return [r.confidence for r in calibrated.decode(calibrated.encode([str(p) for p in photos]))]


@pytest.fixture(scope="module")
def threshold(confidences) -> float:
    """A --min-confidence with photos on both sides of it."""
    low, high = sorted(confidences)[1:3]
    assert low < high
    return round((low + high) / 2, 6)


# -- the API and the calibration ------------------------------------------------------------
def test_api_result_carries_confidence_for_beam_decoding_only(calibrated, captioner, photos, scores, confidences):
    assert all(0.0 < c < 1.0 for c in confidences)
    order = np.argsort(scores)
    assert np.all(np.diff(np.asarray(confidences)[order]) >= 0)  # higher score, higher confidence
    result = calibrated.caption(str(photos[0]))
    assert result.unfamiliar is False and result.sure == (result.confidence >= 0.5)
    encoded = calibrated.encode([str(photos[0])])
    for kwargs in (dict(beam_size=1), dict(method="greedy")):
        r = calibrated.decode(encoded, **kwargs)[0]
        assert r.confidence is None and r.unfamiliar is None and r.sure is None
    plain = captioner.caption(str(photos[0]))  # the session bundle has no calibration
    assert plain.confidence is None and plain.unfamiliar is None


def test_calibration_is_monotone_in_score(calibrated, photos):
    encoded = calibrated.encode([str(photos[0])])
    r = calibrated.decode(encoded)[0]
    from captioning.confidence import features

    x = features([r.score], [r.tokens], encoded.pooled.float().numpy(), encoded.logits.float().softmax(-1).numpy(),
                 calibrated.calibration.familiar)
    rows = np.repeat(x, 9, axis=0)
    cal = calibrated.calibration
    rows[:, FEATURES.index("score")] = cal.mean[0] + cal.scale[0] * np.linspace(-3, 3, 9)  # only the score changes
    assert np.all(np.diff(cal.confidence(rows)) > 0)


def _one_way_familiarity() -> Familiarity:
    """Five training photos pointing one way in a 3-d space (projected as they are), whose references
    say "surfboard" (1, 2) and "man" (every one)."""
    train = np.tile(np.array([[1.0, 0.0, 0.0]], np.float32), (5, 1))
    return Familiarity(np.zeros(3, np.float32), np.eye(3, dtype=np.float32), train, k=3, words=("man", "surfboard"),
                       idf=np.log(6 / (1 + np.array([5, 2]))), indptr=np.array([0, 2, 4, 5, 6, 7]),
                       word_ids=np.array([0, 1, 0, 1, 0, 0, 0]))


def test_familiarity_flags_a_vector_far_from_the_training_photos():
    fam = _one_way_familiarity()
    near, far = np.array([[1.0, 0.1, 0.0]]), np.array([[-1.0, 0.2, 0.0]])
    assert fam(near)[0] > 0.99 and fam(far)[0] < -0.9
    cal = Calibration(np.zeros(len(FEATURES)), np.ones(len(FEATURES)), np.zeros(len(FEATURES)), 0.0, 0.5, 0.2, fam, {})
    assert cal.unfamiliar(fam(np.vstack([near, far]))).tolist() == [False, True]


def test_neighbour_words_weigh_what_people_said_of_the_nearest_photos():
    fam = _one_way_familiarity()
    nearest, _ = fam.neighbours(np.array([[1.0, 0.0, 0.0]]))
    said = {int(i) for i in nearest[0]}
    share = sum(1 for i in said if i in (0, 1)) / 3  # neighbours whose references say "surfboard"
    words, anyone = fam.word_agreement(["a", "man", "on", "a", "surfboard"], nearest[0])
    idf = dict(zip(fam.words, fam.idf))
    assert words == pytest.approx((idf["man"] * 1.0 + idf["surfboard"] * share) / (idf["man"] + idf["surfboard"]))
    assert anyone == pytest.approx(1.0 if share else idf["man"] / (idf["man"] + idf["surfboard"]))
    assert fam.word_agreement(["a", "giraffe"], nearest[0]) == (0.0, 0.0)  # no one said it
    assert fam.word_agreement(["a", "the"], nearest[0]) == (0.0, 0.0)  # no content words


def test_a_saved_calibration_reads_back_the_same(tmp_path):
    """Every array, whatever its memory layout (the PCA components are a transposed view)."""
    from captioning.confidence import features

    rng = np.random.default_rng(1)
    components = np.linalg.svd(rng.standard_normal((40, 12)), full_matrices=False)[2][:5].T  # (12, 5), F-ordered
    train = rng.standard_normal((7, 5))
    fam = Familiarity(rng.standard_normal(12).astype(np.float32), components,
                      (train / np.linalg.norm(train, axis=1, keepdims=True)).astype(np.float16).astype(np.float32),
                      k=3, words=("cat", "dog", "surfboard"), idf=np.array([1.0, 0.5, 2.0]),
                      indptr=np.array([0, 1, 2, 2, 3, 5, 6, 6]), word_ids=np.array([0, 1, 2, 0, 2, 1]))
    assert not components.flags["C_CONTIGUOUS"]
    cal = Calibration(rng.standard_normal(len(FEATURES)), np.ones(len(FEATURES)), rng.standard_normal(len(FEATURES)),
                      0.3, 0.1, 0.2, fam, {"note": "round trip"})
    bundle = tmp_path / "b"
    bundle.mkdir()
    save_calibration(bundle, cal)
    back = load_calibration(bundle, {"files": {"confidence.json": {}, "familiar.safetensors": {}}})
    pooled = rng.standard_normal((4, 12)).astype(np.float32)
    probs = np.full((4, 1000), 1e-3)
    tokens = [["a", "dog", "on", "a", "surfboard"], ["a", "cat"], ["two", "dogs"], ["the"]]
    np.testing.assert_allclose(features([-1.0] * 4, tokens, pooled, probs, back.familiar),
                               features([-1.0] * 4, tokens, pooled, probs, fam), rtol=1e-6)
    np.testing.assert_allclose(back.familiar.components, components, rtol=1e-6)


def test_the_shipped_calibration_is_monotone_in_score_when_there_is_one():
    path = resolve_bundle(None)
    calibration = load_calibration(path, verified_manifest(path))
    if calibration is None:
        pytest.skip(f"{path.name} carries no calibration yet")
    rows = np.repeat(calibration.mean[None, :], 9, axis=0)
    rows[:, FEATURES.index("score")] = calibration.mean[0] + calibration.scale[0] * np.linspace(-3, 3, 9)
    assert np.all(np.diff(calibration.confidence(rows)) > 0)


def test_a_vector_far_from_the_training_photos_is_unfamiliar(calibrated, photos, monkeypatch):
    fam = calibrated.calibration.familiar
    direction = np.zeros(PROJECTED, np.float32)
    direction[0] = 1.0
    one_way = replace(fam, train=np.repeat(direction[None, :], 5, axis=0))  # every training photo one way
    near, far = fam.components @ direction, -(fam.components @ direction)  # (D,) along it, and opposite
    sims = one_way(np.stack([near, far]))
    assert sims[0] == pytest.approx(1.0, abs=1e-5) and sims[1] == pytest.approx(-1.0, abs=1e-5)
    flagged = replace(calibrated.calibration, familiar=one_way, unfamiliar_below=0.0)
    assert flagged.unfamiliar(sims).tolist() == [False, True]

    encoded = calibrated.encode([str(photos[0])])
    unit = encoded.pooled.float().numpy()[0]
    proj = (unit / np.linalg.norm(unit)) @ fam.components
    for rows, expected in ((proj, False), (-proj, True)):  # the photo's own direction, or its opposite
        stored = replace(fam, train=np.repeat((rows / np.linalg.norm(rows))[None, :].astype(np.float32), 3, axis=0))
        monkeypatch.setattr(calibrated, "calibration", replace(flagged, familiar=stored))
        assert calibrated.decode(encoded)[0].unfamiliar is expected


# -- caption-images ---------------------------------------------------------------------------
def test_records_hold_confidence_and_min_confidence_withholds(calibrated, captioner, photos, confidences, threshold):
    from pipelines import caption_images
    from pipelines.images.records import FIELDS, RECORD_FORMAT

    records = list(caption_images(photos, calibrated, n_best=2))
    assert RECORD_FORMAT == 4 and {"confidence", "unfamiliar", "note"} <= set(FIELDS)
    assert [r["confidence"] for r in records] == [round(c, 4) for c in confidences]
    assert all(r["unfamiliar"] is False and r["note"] is None and r["caption"] is not None for r in records)
    assert all(r["options"]["min_confidence"] == 0.0 for r in records)
    kept = list(caption_images(photos, calibrated, n_best=2, min_confidence=threshold))
    for r, c in zip(kept, confidences):
        assert r["confidence"] == round(c, 4) and r["tags"] and r["error"] is None
        if c < threshold:
            assert r["caption"] is None and r["n_best"] is None and "below min_confidence" in r["note"]
        else:
            assert r["caption"] and len(r["n_best"]) == 2 and r["note"] is None
    assert sum(r["caption"] is None for r in kept) == 2
    plain = next(caption_images(photos[:1], captioner))
    assert plain["confidence"] is None and plain["unfamiliar"] is None
    with pytest.raises(ValueError, match="no confidence calibration"):
        next(caption_images(photos[:1], captioner, min_confidence=0.5))
    with pytest.raises(ValueError, match="beam of 2 or more"):
        next(caption_images(photos[:1], calibrated, min_confidence=0.5, beam_size=1))
    with pytest.raises(ValueError, match="min_confidence"):
        next(caption_images(photos[:1], calibrated, min_confidence=1.5))


def test_cli_min_confidence_writes_no_caption_sidecar_below_it(calibrated_dir, photos, confidences, threshold,
                                                              tmp_path, capsys):
    from pipelines.images.cli import main

    folder = tmp_path / "photos"
    folder.mkdir()
    for p in photos:
        shutil.copy(p, folder / p.name)
    out = tmp_path / "c.jsonl"
    args = [str(folder), "--out", str(out), "--sidecar", ".txt", "--xmp", "--weights", str(calibrated_dir),
            "--min-confidence", str(threshold), "--backend", "torch"]
    assert main(args) == 0
    err = capsys.readouterr().err
    records = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    unsure = sum(c < 0.5 for c in confidences)
    assert f"captioned 4 ({unsure} unsure, 2 captions withheld under --min-confidence {threshold:g})" in err
    for p, c in zip(photos, confidences):
        r, xmp = records[p.name], (folder / (p.name + ".xmp")).read_text()
        assert r["options"]["min_confidence"] == threshold
        if c < threshold:
            assert r["caption"] is None and not (folder / f"{p.stem}.txt").exists()
            assert "dc:description" not in xmp and "dc:subject" in xmp  # the tags still go in
        else:
            assert (folder / f"{p.stem}.txt").read_text().strip() == r["caption"]
            assert "dc:description" in xmp
    assert main(args) == 0  # resume: all done, withheld ones too
    assert "captioned 0 " in capsys.readouterr().err
    assert main(args[:-4] + ["--backend", "torch"]) == 2  # another threshold: refused, naming it
    assert "options.min_confidence" in capsys.readouterr().err


def test_xmp_of_a_withheld_caption_has_the_tags_and_keeps_an_existing_description():
    from pipelines.images.xmp import merge_xmp

    written, _ = merge_xmp(None, "a cat on a sofa", ["cat"])
    merged, added = merge_xmp(written, None, ["cat", "sofa"])
    assert b"a cat on a sofa" in merged and b"<rdf:li>sofa</rdf:li>" in merged and added == ["sofa"]
    new, _ = merge_xmp(None, None, ["dog"])
    assert b"description" not in new and b"<rdf:li>dog</rdf:li>" in new


def test_cli_min_confidence_needs_a_calibrated_bundle(tiny_bundle_dir, photos, tmp_path, capsys):
    from pipelines.images.cli import main

    assert main([str(photos[0]), "--out", str(tmp_path / "c.csv"), "--weights", str(tiny_bundle_dir),
                 "--min-confidence", "0.4"]) == 2
    err = capsys.readouterr().err
    assert f"{tiny_bundle_dir}: this bundle has no confidence calibration" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit):
        main([str(photos[0]), "--weights", str(tiny_bundle_dir), "--min-confidence", "2"])


def test_older_record_files_resume_or_are_refused_by_name(tiny_bundle_dir, photos, tmp_path, capsys):
    from pipelines.images.cli import main
    from pipelines.images.outputs import OutputError, open_output
    from pipelines.images.records import FIELDS

    out = tmp_path / "c.jsonl"
    assert main([str(photos[0]), "--out", str(out), "--weights", str(tiny_bundle_dir)]) == 0
    record = json.loads(out.read_text())
    old = {k: v for k, v in record.items() if k not in ("confidence", "unfamiliar", "note")}
    old["format_version"] = 3
    old["options"] = {k: v for k, v in old["options"].items() if k != "min_confidence"}
    out.write_text(json.dumps(old) + "\n")  # as caption-images wrote it before format 4
    capsys.readouterr()
    assert main([str(photos[0]), str(photos[1]), "--out", str(out), "--weights", str(tiny_bundle_dir)]) == 0
    assert "captioned 1, skipped 1" in capsys.readouterr().err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["format_version"] for r in lines] == [3, 4] and lines[1]["confidence"] is None
    old_csv = tmp_path / "old.csv"
    old_csv.write_text(",".join(f for f in FIELDS if f not in ("confidence", "unfamiliar", "note")) + "\n")
    with pytest.raises(OutputError, match="record format 3"):
        open_output(str(old_csv)).close()


def test_csv_records_hold_confidence(calibrated_dir, photos, tmp_path):
    from pipelines.images.cli import main

    out = tmp_path / "c.csv"
    assert main([str(photos[0]), "--out", str(out), "--weights", str(calibrated_dir), "--backend", "torch"]) == 0
    row = next(csv.DictReader(out.open()))
    assert 0 < float(row["confidence"]) < 1 and row["unfamiliar"] == "false" and row["note"] == ""


# -- the caption CLI ----------------------------------------------------------------------------
def test_caption_cli_says_how_sure_it_is(calibrated_dir, unfamiliar_dir, tiny_bundle_dir, photos, confidences, capsys):
    from captioning.cli import main

    base = [str(photos[0]), "--backend", "torch", "--tags", "3"]
    assert main([*base, "--weights", str(calibrated_dir)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith(f"  ({confidence_words(confidences[0])})") and first.startswith(f"{photos[0]}\t")
    assert confidence_words(0.83) == "sure, 0.83" and confidence_words(0.4999) == "unsure, 0.49"
    assert confidence_words(0.83, unfamiliar=True) == "unsure, 0.83"
    assert main([*base, "--weights", str(calibrated_dir), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["confidence"] == round(confidences[0], 4) and record["unfamiliar"] is False

    assert main([*base, "--weights", str(unfamiliar_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{photos[0]}\teveryday tags: cat ")  # leads with the tags
    assert lines[1] == f"\t  {UNFAMILIAR}" and lines[2].startswith("\t  caption: ")

    assert main([*base, "--weights", str(tiny_bundle_dir)]) == 0
    out = capsys.readouterr().out
    assert "sure, " not in out and UNFAMILIAR not in out  # no calibration: nothing extra
    assert main([*base, "--weights", str(tiny_bundle_dir), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["confidence"] is None and record["unfamiliar"] is None


# -- the web UI -----------------------------------------------------------------------------------
def test_ui_shows_confidence_in_words_and_sorts_the_batch_by_it(calibrated, unfamiliar_dir, photos, confidences):
    import gradio as gr

    import app

    handlers = app.Handlers(calibrated)
    *_, trust = handlers.caption_image(str(photos[0]))
    word, number = confidence_words(confidences[0]).split(", ")
    assert trust == f"Caption: **{word}** ({number})"
    rows, _, jsonl = handlers.caption_batch([str(p) for p in photos])
    assert [r[2] for r in rows] == [round(c, 2) for c in confidences]
    assert [r[3] for r in rows] == [("sure" if c >= 0.5 else "unsure") for c in confidences]
    assert all(json.loads(line)["confidence"] is not None for line in open(jsonl))

    strange = app.Handlers(Captioner.load(unfamiliar_dir, device="cpu", backend="torch"))
    *_, trust = strange.caption_image(str(photos[0]))
    assert trust.startswith("Tags: **cat**") and UNFAMILIAR[1:] in trust and trust.endswith(f"({number})")
    assert "Caption: **unsure**" in trust  # an unfamiliar photo's caption is never called sure
    rows, _, _ = strange.caption_batch([str(photos[0])])
    assert rows[0][3].startswith("unsure — unfamiliar photo: trust its tags (cat")

    demo = app.build_demo(calibrated)
    table = next(c for c in demo.blocks.values() if isinstance(c, gr.Dataframe) and c.elem_id == "batch-table")
    assert table.headers == app.BATCH_COLUMNS and table.datatype[app.BATCH_COLUMNS.index("confidence")] == "number"


# -- tag-video ------------------------------------------------------------------------------------
def test_video_caption_confidence_is_the_calibrated_one(calibrated, captioner, tmp_path):
    from captioning.results import CaptionResult
    from pipelines import tag_video
    from pipelines.video.aggregate import caption_confidence
    from pipelines.video.results import CALIBRATED, FORMAT_VERSION, WORD_PROBABILITY, VideoTags
    from test_video_clips import make_clip

    said = CaptionResult("a cat", ["a", "cat"], score=-0.5, logprob=-1.5)
    assert caption_confidence(said) == pytest.approx(np.exp(-1.5 / 3))  # geometric mean without a calibration
    said.confidence = 0.77
    assert caption_confidence(said) == 0.77

    clip = make_clip(tmp_path / "clip.avi", shots=(("chelsea", 2.0), ("coffee", 2.0)))
    tags, plain = tag_video(clip, calibrated, fps=1.0), tag_video(clip, captioner, fps=1.0)
    assert tags.confidence_kind == CALIBRATED and plain.confidence_kind == WORD_PROBABILITY and FORMAT_VERSION == 4
    assert [s.caption for s in tags.shots] == [s.caption for s in plain.shots]  # the same decoder
    assert all(0 < s.caption_confidence < 1 for s in tags.shots)
    assert [s.caption_confidence for s in tags.shots] != [s.caption_confidence for s in plain.shots]
    d = tags.to_dict()
    assert d["format_version"] == 4 and d["confidence_kind"] == CALIBRATED and VideoTags.from_dict(d).to_dict() == d
    older = {k: v for k, v in plain.to_dict().items() if k != "confidence_kind"}
    assert VideoTags.from_dict({**older, "format_version": 3}).confidence_kind == WORD_PROBABILITY
