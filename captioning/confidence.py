"""How sure a caption is, and whether a photo is unlike anything the model was trained on.

A bundle may carry a calibration (``confidence.json``, fitted on half of each dev split by
``scripts/fit_confidence.py``, data only) and a compact memory of its training photos
(``familiar.safetensors``: their semantic vectors projected on the top principal directions,
unit length, float16). From what decoding already computed for an image, the caption's
:func:`features` are

- ``score``: its length-normalised log-probability (what the beam ranks by);
- ``margin``: how far ahead of the beam's second hypothesis it is;
- ``words``: its length;
- ``familiarity``: the mean cosine similarity of the photo's projected semantic vector to its
  ``k`` nearest training photos;
- ``top_tag``: the probability of its most probable everyday tag (:mod:`captioning.everyday`);
- ``agreement``: the summed probability of the everyday tags its words name ("dog", "puppies");
- ``entropy``: of the ImageNet distribution, in nats;

and ``confidence`` = sigmoid(w . standardised features + b): the probability, on held-out dev
photos, that the caption's CIDEr-D is at least ``good_cider`` (0.2). A photo whose familiarity is
below ``unfamiliar_below`` (what fewer than 1% of dev photos score) is flagged ``unfamiliar``.
Everything here is numpy: no torch.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .everyday import everyday_table, roll_up, synonym_words

CONFIDENCE_FILE = "confidence.json"  # the calibration, in a bundle folder
FAMILIAR_FILE = "familiar.safetensors"  # the projected training vectors, in a bundle folder
FORMAT_VERSION = 1
FEATURES = ("score", "margin", "words", "familiarity", "top_tag", "agreement", "entropy")
SURE = 0.5  # confidence at or above which a caption reads "sure" (the UI and CLI words)


def words_named(tokens: Sequence[str]) -> set[int]:
    """Indices of the everyday words a caption's tokens name: the word itself, its plural, or a
    WordNet synonym ("puppies", "doggy" -> dog)."""
    table = everyday_table()
    index = {w: i for i, w in enumerate(table.words)}
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
    """The training photos, remembered compactly."""
    center: np.ndarray  # (D,) mean unit semantic vector of the training photos
    components: np.ndarray  # (D, P) top principal directions
    train: np.ndarray  # (N, P) the training photos' projections, unit rows
    k: int  # neighbours averaged

    def __call__(self, pooled: np.ndarray) -> np.ndarray:
        """(B, D) semantic vectors -> (B,) mean cosine similarity to the k nearest training photos."""
        unit = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)  # (B, D)
        proj = (unit - self.center) @ self.components  # (B, P)
        proj /= np.maximum(np.linalg.norm(proj, axis=1, keepdims=True), 1e-12)
        sims = proj @ self.train.T  # (B, N)
        k = min(self.k, sims.shape[1])
        return np.sort(np.partition(sims, -k, axis=1)[:, -k:], axis=1).mean(axis=1)


def features(scores: Sequence[float], margins: Sequence[float], tokens: Sequence[Sequence[str]],
             familiarity: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(B, len(FEATURES)) in FEATURES order; ``probs`` (B, 1000) ImageNet probabilities."""
    probs = np.asarray(probs, dtype=np.float64)
    sums = roll_up(probs)  # (B, W) everyday words
    agreement = [float(sums[i, sorted(words_named(t))].sum()) if words_named(t) else 0.0
                 for i, t in enumerate(tokens)]
    entropy = -(probs * np.log(np.clip(probs, 1e-12, 1.0))).sum(axis=1)
    return np.column_stack([scores, margins, [len(t) for t in tokens], familiarity, sums.max(axis=1), agreement,
                            entropy]).astype(np.float64)


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
    save_file({"center": fam.center.astype(np.float32), "components": fam.components.astype(np.float32),
               "train": fam.train.astype(np.float16)}, str(folder / FAMILIAR_FILE))
    data = {"format_version": FORMAT_VERSION, "features": list(FEATURES), "mean": calibration.mean.tolist(),
            "scale": calibration.scale.tolist(), "weights": calibration.weights.tolist(), "bias": calibration.bias,
            "unfamiliar_below": calibration.unfamiliar_below, "good_cider": calibration.good_cider, "k": fam.k,
            "metrics": calibration.metrics}
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
                           arrays["train"].astype(np.float32), int(data["k"]))
    vector = lambda key: np.asarray(data[key], dtype=np.float64)  # noqa: E731
    if not all(len(vector(key)) == len(FEATURES) for key in ("mean", "scale", "weights")) \
            or not math.isfinite(data["bias"]):
        raise ValueError(f"{folder / CONFIDENCE_FILE}: malformed calibration")
    return Calibration(vector("mean"), vector("scale"), vector("weights"), float(data["bias"]),
                       float(data["unfamiliar_below"]), float(data["good_cider"]), familiar, data.get("metrics", {}))
