"""How sure a caption is, and whether a photo is unlike anything the model was trained on.

A bundle may carry a calibration (``confidence.json``, fitted on half of each dev split by
``caption-calibrate``, data only) and a compact memory of its training photos
(``familiar.safetensors``: their unit semantic vectors, centred and projected on the top principal
directions, float16, and the content words of each one's reference captions). From what
decoding already computed for an image, the caption's :func:`features` are

- ``score``: its length-normalised log-probability (what the beam ranks by);
- ``familiarity``: the mean cosine similarity of the photo's semantic vector to its ``k`` nearest
  training photos (each one rebuilt from its projection: within 0.02 of the exact cosine);
- ``agreement``: the summed probability of the everyday tags its words name ("dog", "puppies";
  :mod:`captioning.everyday`);
- ``neighbour_words``: how much of its content the people who described those ``k`` nearest
  training photos said too (idf-weighted, so "surfboard" counts more than "man"; the mean share
  of neighbours whose references use each word);
- ``neighbour_any``: the idf-weighted share of its content words used for at least one of them;

and ``confidence`` = sigmoid(w . standardised features + b): the probability, on held-out dev
photos, that the caption's CIDEr-D is at least ``good_cider`` (0.2). The beam's margin over its
runner-up, the caption's length, the top tag's probability and the ImageNet entropy were tried and
added nothing on held-out photos (docs/experiments.md). A photo whose familiarity is below
``unfamiliar_below`` (what fewer than 1% of dev photos score) is flagged ``unfamiliar``.
Everything here is numpy (its BLAS on one thread: :mod:`captioning.blas`): no torch.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import blas
from .everyday import everyday_table, roll_up, synonym_words
from .vocab import DANGLING_WORDS, REPEATABLE_WORDS

CONFIDENCE_FILE = "confidence.json"  # the calibration, in a bundle folder
FAMILIAR_FILE = "familiar.safetensors"  # the training photos' vectors and words, in a bundle folder
FORMAT_VERSION = 3
FEATURES = ("score", "familiarity", "agreement", "neighbour_words", "neighbour_any")
SURE = 0.5  # confidence at or above which a caption reads "sure" (the UI and CLI words)
STOP_WORDS = REPEATABLE_WORDS | DANGLING_WORDS  # not content words: articles, prepositions, colours...


@functools.lru_cache(maxsize=1)
def _everyday_index() -> dict[str, int]:
    return {w: i for i, w in enumerate(everyday_table().words)}


def words_named(tokens: Sequence[str]) -> set[int]:
    """Indices of the everyday words a caption's tokens name: the word itself, its plural, or a
    WordNet synonym ("puppies", "doggy" -> dog)."""
    index = _everyday_index()
    named: set[int] = set()
    for token in tokens:
        for form in {token, token[:-1] if token.endswith("s") else token, token[:-3] + "y" if token.endswith("ies")
                     else token, token[:-2] if token.endswith("es") else token}:
            if form in index:
                named.add(index[form])
            named.update(index[w] for w in synonym_words(form) if w in index)
    return named


@dataclass(frozen=True)
class Familiarity:
    """The training photos, remembered compactly: where they lie and what people said of them."""
    center: np.ndarray  # (D,) mean unit semantic vector of the training photos
    components: np.ndarray  # (D, P) top principal directions
    train: np.ndarray  # (N, P) the training photos' unit vectors less the center, projected: a photo's unit
    #                    vector is about center + components @ its row
    k: int  # neighbours looked at
    words: tuple[str, ...] = ()  # the content words of the training references
    idf: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (len(words),) log((1 + N) / (1 + photos using it))
    indptr: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))  # (N + 1,) photo i's words are
    word_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # word_ids[indptr[i]:indptr[i+1]]

    def neighbours(self, pooled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, D) semantic vectors -> their k nearest training photos (B, k) and familiarity (B,),
        the mean cosine similarity to them (to the training photos as rebuilt from their projections)."""
        unit = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)  # (B, D)
        with blas.one_thread():
            sims = unit @ self.center[:, None] + (unit @ self.components) @ self.train.T  # (B, N) u . (c + P t)
        k = min(self.k, sims.shape[1])
        nearest = np.argpartition(sims, -k, axis=1)[:, -k:]  # (B, k)
        return nearest, np.take_along_axis(sims, nearest, axis=1).mean(axis=1)

    def __call__(self, pooled: np.ndarray) -> np.ndarray:
        """(B, D) semantic vectors -> (B,) familiarity."""
        return self.neighbours(pooled)[1]

    def word_agreement(self, tokens: Sequence[str], nearest: np.ndarray) -> tuple[float, float]:
        """(neighbour_words, neighbour_any) of one caption, given its photo's nearest training photos."""
        content = {w for w in tokens if w not in STOP_WORDS}
        if not content or len(self.indptr) < 2:
            return 0.0, 0.0
        index = self._word_index
        unseen = math.log(len(self.indptr))  # a word no training reference uses: log((1 + N) / 1)
        weight = {w: float(self.idf[index[w]]) if w in index else unseen for w in content}
        used: dict[int, int] = {}
        for n in nearest:
            for i in self.word_ids[self.indptr[n]:self.indptr[n + 1]].tolist():
                used[i] = used.get(i, 0) + 1
        share = {w: used.get(index[w], 0) / len(nearest) if w in index else 0.0 for w in content}
        total = sum(weight.values())
        return (sum(weight[w] * share[w] for w in content) / total,
                sum(weight[w] for w in content if share[w] > 0) / total)

    @functools.cached_property  # written to the instance's __dict__, which a frozen dataclass allows
    def _word_index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}


def features(scores: Sequence[float], tokens: Sequence[Sequence[str]], pooled: np.ndarray, probs: np.ndarray,
             familiar: Familiarity) -> np.ndarray:
    """(B, len(FEATURES)) in FEATURES order; ``pooled`` (B, D) semantic vectors, ``probs`` (B, 1000)
    ImageNet probabilities."""
    sums = roll_up(np.asarray(probs, dtype=np.float64))  # (B, W) everyday words
    agreement = [float(sums[i, sorted(words_named(t))].sum()) for i, t in enumerate(tokens)]
    nearest, familiarity = familiar.neighbours(np.asarray(pooled, dtype=np.float32))
    neighbour = np.array([familiar.word_agreement(t, n) for t, n in zip(tokens, nearest)]).reshape(-1, 2)
    return np.column_stack([scores, familiarity, agreement, neighbour]).astype(np.float64)


@dataclass(frozen=True)
class Calibration:
    """A bundle's confidence model (see the module docstring)."""
    mean: np.ndarray  # (F,) feature means on the fitting half of dev
    scale: np.ndarray  # (F,) their standard deviations
    weights: np.ndarray  # (F,) logistic weights on the standardised features
    bias: float  # logistic intercept
    unfamiliar_below: float  # familiarity under which a photo is unfamiliar
    good_cider: float  # the CIDEr-D a caption reaching which counts as good
    familiar: Familiarity  # the training photos
    metrics: dict[str, Any]  # what the fit measured on the held-out half (AUROC...), for the record

    def confidence(self, x: np.ndarray) -> np.ndarray:
        """(B, F) features -> (B,) probability that the caption is good."""
        z = ((x - self.mean) / self.scale) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-z))

    def unfamiliar(self, familiarity: np.ndarray) -> np.ndarray:
        return familiarity < self.unfamiliar_below


def save_calibration(folder: str | Path, calibration: Calibration) -> tuple[Path, Path]:
    """Write ``confidence.json`` and ``familiar.safetensors`` into ``folder`` (then attach both to
    a bundle with :func:`captioning.bundle.attach_file`)."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    fam = calibration.familiar
    arrays = {"center": fam.center.astype(np.float32), "components": fam.components.astype(np.float32),
              "train": fam.train.astype(np.float16), "idf": fam.idf.astype(np.float32),
              "indptr": fam.indptr.astype(np.int32), "word_ids": fam.word_ids.astype(np.int32)}
    # C order: safetensors.numpy writes an array's memory as it lies, so a transposed view would come
    # back scrambled (seen with safetensors 0.8.0: the PCA components, a view of V transposed)
    save_file({name: np.ascontiguousarray(a) for name, a in arrays.items()}, str(folder / FAMILIAR_FILE))
    data = {"format_version": FORMAT_VERSION, "features": list(FEATURES), "mean": calibration.mean.tolist(),
            "scale": calibration.scale.tolist(), "weights": calibration.weights.tolist(), "bias": calibration.bias,
            "unfamiliar_below": calibration.unfamiliar_below, "good_cider": calibration.good_cider, "k": fam.k,
            "words": list(fam.words), "metrics": calibration.metrics}
    (folder / CONFIDENCE_FILE).write_text(json.dumps(data, indent=1) + "\n")
    return folder / CONFIDENCE_FILE, folder / FAMILIAR_FILE


def load_calibration(folder: Path, manifest: dict[str, Any]) -> Calibration | None:
    """The calibration of a verified bundle folder, or None when its manifest lists none. Raises
    ValueError for one that does not fit this code."""
    files = manifest.get("files", {})
    if CONFIDENCE_FILE not in files or FAMILIAR_FILE not in files:
        return None
    from safetensors.numpy import load_file

    data = json.loads((folder / CONFIDENCE_FILE).read_text())
    if data.get("format_version") != FORMAT_VERSION or tuple(data.get("features", ())) != FEATURES:
        raise ValueError(f"{folder / CONFIDENCE_FILE}: a calibration of another format or other features")
    arrays = load_file(str(folder / FAMILIAR_FILE))
    familiar = Familiarity(arrays["center"].astype(np.float32), arrays["components"].astype(np.float32),
                           arrays["train"].astype(np.float32), int(data["k"]), tuple(data["words"]),
                           arrays["idf"].astype(np.float64), arrays["indptr"].astype(np.int64),
                           arrays["word_ids"].astype(np.int64))
    vector = lambda key: np.asarray(data[key], dtype=np.float64)  # noqa: E731
    if not all(len(vector(key)) == len(FEATURES) for key in ("mean", "scale", "weights")) \
            or not math.isfinite(data["bias"]) or len(familiar.indptr) != len(familiar.train) + 1 \
            or len(familiar.idf) != len(familiar.words):
        raise ValueError(f"{folder / CONFIDENCE_FILE}: malformed calibration")
    return Calibration(vector("mean"), vector("scale"), vector("weights"), float(data["bias"]),
                       float(data["unfamiliar_below"]), float(data["good_cider"]), familiar, data.get("metrics", {}))
