"""Metrics agree with pycocoevalcap's scorers on small hand-written inputs."""
from __future__ import annotations

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from captioning.training.metrics import CiderD, CiderDPerCorpus, coco_scores, diversity
from captioning.vocab import tokenize

REFERENCES = {
    "dog": ["A dog runs on the green grass.", "A brown dog running across a lawn.",
            "The dog is running in a park.", "A puppy plays on the grass."],
    "cat": ["A cat sits on a red sofa.", "A black cat sitting on the couch.",
            "A cat is resting on a red couch.", "A small cat lies on a sofa."],
    "beach": ["Two people walk on the beach.", "A couple walking along the sandy shore.",
              "Two people strolling by the ocean.", "People walking on a beach at sunset."],
    "bike": ["A man rides a bike down the street.", "A man riding a bicycle on a road.",
             "A cyclist rides along a city street.", "A person on a bike in traffic."],
    "child": ["A child plays in the water.", "A little girl splashing in a pool.",
              "A kid swimming in the water.", "A young child playing in a fountain."],
    "fence": ["A black dog jumps over a fence.", "A dog leaping over a wooden fence.",
              "A black dog jumping a hurdle.", "The dog jumps over the fence in a yard."],
    "pizza": ["A pizza with cheese on a table.", "A large pizza sitting on a wooden table.",
              "A cheese pizza on a plate.", "A pizza topped with tomatoes and cheese."],
    "train": ["A train pulls into the station.", "A red train at a railway station.",
              "A passenger train stopped at a platform.", "A train traveling down the tracks."],
}
CANDIDATES = {
    "dog": "A dog runs on the green grass.",                 # perfect match of a reference
    "cat": "a cat sitting on a red couch",
    "beach": "a plate of broccoli and carrots",              # totally wrong
    "bike": "",                                              # empty candidate
    "child": "a child a child a child in the water water",   # repeated words
    "fence": "a black dog jumps over a wooden fence",
    "pizza": "a pizza on a table",
    "train": "a train at the station with a train",
}
KEYS = list(REFERENCES)


def _pycoco_inputs(candidates: dict[str, str]) -> tuple[dict, dict]:
    gts = {k: [" ".join(tokenize(r)) for r in REFERENCES[k]] for k in KEYS}
    res = {k: [" ".join(tokenize(candidates[k]))] for k in KEYS}
    return gts, res


def test_cider_d_matches_pycocoevalcap_per_image():
    gts, res = _pycoco_inputs(CANDIDATES)
    expected_mean, expected = Cider().compute_score(gts, res)
    scorer = CiderD([REFERENCES[k] for k in KEYS])
    got = scorer.score([CANDIDATES[k] for k in KEYS], [REFERENCES[k] for k in KEYS])
    np.testing.assert_allclose(got, expected, atol=5e-5, rtol=0)
    assert got.mean() == pytest.approx(expected_mean, abs=5e-5)
    # sanity: perfect > partial > wrong/empty
    scores = dict(zip(KEYS, got))
    assert scores["dog"] > scores["cat"] > scores["beach"] == 0.0
    assert scores["bike"] == 0.0


def test_cider_d_scst_batch_matches_pycocoevalcap_per_candidate_set():
    # SCST layout: several candidates per image, references repeated per candidate
    second = {k: REFERENCES[k][-1] if i % 2 else "a dog on a table" for i, k in enumerate(KEYS)}
    scorer = CiderD([REFERENCES[k] for k in KEYS])
    batch = [(c[k], REFERENCES[k]) for k in KEYS for c in (CANDIDATES, second)]
    got = scorer.score([c for c, _ in batch], [r for _, r in batch])
    expected = np.stack([Cider().compute_score(*_pycoco_inputs(c))[1] for c in (CANDIDATES, second)], axis=1)
    np.testing.assert_allclose(got, expected.ravel(), atol=5e-5, rtol=0)
    single = [scorer.score([c], [r])[0] for c, r in batch]  # one at a time == batched
    np.testing.assert_allclose(got, single, atol=1e-12, rtol=0)


def test_cider_d_accepts_pre_tokenised_input():
    refs = [REFERENCES[k] for k in KEYS]
    refs_tokens = [[tokenize(r) for r in rs] for rs in refs]
    from_str = CiderD(refs).score([CANDIDATES[k] for k in KEYS], refs)
    scorer = CiderD(refs_tokens)  # pre-tokenised corpus
    from_tokens = scorer.score([tokenize(CANDIDATES[k]) for k in KEYS], refs_tokens)
    np.testing.assert_allclose(from_tokens, from_str, atol=1e-12, rtol=0)
    mixed = scorer.score([CANDIDATES[k] for k in KEYS], refs)  # str candidates and references
    np.testing.assert_allclose(mixed, from_str, atol=1e-12, rtol=0)


def test_cider_d_per_corpus_scores_each_image_with_its_own_corpus():
    """Two corpora (the first four photos, the last four): an image's reward is its own corpus's CIDEr-D,
    whatever the order of a mixed batch; a mirrored photo's references count as its corpus's."""
    first, second = KEYS[:4], KEYS[4:]
    mirrored = ["A dog leaping over a fence on the left."]
    scorer = CiderDPerCorpus([[REFERENCES[k] for k in first], [REFERENCES[k] for k in second]], [(mirrored, 1)])
    batch = [KEYS[i] for i in (5, 0, 6, 1, 7, 2, 4, 3)]
    got = scorer.score([CANDIDATES[k] for k in batch], [REFERENCES[k] for k in batch])
    own = {k: CiderD([REFERENCES[j] for j in (first if k in first else second)]).score([CANDIDATES[k]], [REFERENCES[k]])[0]
           for k in KEYS}
    np.testing.assert_allclose(got, [own[k] for k in batch], atol=1e-12, rtol=0)
    pooled = CiderD([REFERENCES[k] for k in KEYS]).score([CANDIDATES[k] for k in batch], [REFERENCES[k] for k in batch])
    assert not np.allclose(got, pooled)  # the document frequencies do differ
    np.testing.assert_allclose(scorer.score(["a dog jumps over a fence"], [mirrored]),
                               CiderD([REFERENCES[k] for k in second]).score(["a dog jumps over a fence"], [mirrored]))
    with pytest.raises(ValueError, match="none of the corpora"):
        scorer.score(["a dog"], [["a dog on a sofa"]])


def test_cider_d_rejects_mismatched_lengths():
    scorer = CiderD([REFERENCES[k] for k in KEYS])
    with pytest.raises(ValueError):
        scorer.score(["a dog"], [])


def test_coco_scores_match_direct_scorers():
    scores = coco_scores(CANDIDATES, REFERENCES)
    gts, res = _pycoco_inputs(CANDIDATES)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for i in range(4):
        assert scores[f"BLEU-{i + 1}"] == pytest.approx(bleu[i], abs=1e-12)
    assert scores["ROUGE-L"] == pytest.approx(Rouge().compute_score(gts, res)[0], abs=1e-12)
    assert scores["CIDEr-D"] == pytest.approx(Cider().compute_score(gts, res)[0], abs=1e-12)
    assert "METEOR" not in scores
    assert set(scores) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr-D"}
    for key in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L"):
        assert 0.0 < scores[key] < 1.0 and isinstance(scores[key], float)
    assert scores["BLEU-1"] >= scores["BLEU-2"] >= scores["BLEU-3"] >= scores["BLEU-4"]
    assert 0.0 < scores["CIDEr-D"] < 10.0


def test_coco_scores_perfect_candidates():
    perfect = {k: refs[0] for k, refs in REFERENCES.items()}
    scores = coco_scores(perfect, REFERENCES)
    for i in range(1, 5):
        assert scores[f"BLEU-{i}"] == pytest.approx(1.0, abs=1e-6)
    assert scores["ROUGE-L"] == pytest.approx(1.0)
    assert scores["CIDEr-D"] > coco_scores(CANDIDATES, REFERENCES)["CIDEr-D"]


def test_coco_scores_rejects_key_mismatch():
    with pytest.raises(ValueError):
        coco_scores({"dog": "a dog"}, REFERENCES)


def test_coco_scores_meteor_skipped_without_java(monkeypatch):
    monkeypatch.setattr("captioning.training.metrics.shutil.which", lambda name: None)
    with pytest.warns(UserWarning, match="METEOR skipped"):
        scores = coco_scores(CANDIDATES, REFERENCES, meteor=True)
    assert "METEOR" not in scores and "CIDEr-D" in scores


def test_diversity_counts_different_captions_and_words():
    assert diversity(["a dog runs", "a dog runs", "a cat", ""]) == {"distinct_captions": 3, "distinct_words": 4}
