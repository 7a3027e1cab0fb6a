"""Caption metrics: standard COCO scores (via pycocoevalcap) and a fast CIDEr-D for SCST rewards.

All text is tokenised with :func:`captioning.vocab.tokenize` (no Java PTBTokenizer); tokens are
joined with single spaces before being handed to the pycocoevalcap scorers.
"""
from __future__ import annotations

import functools
import math
import shutil
import threading
import warnings
from collections import Counter
from collections import _count_elements  # C helper behind Counter
from typing import Hashable, Mapping, Sequence, TypeVar, Union

import numpy as np

from .vocab import tokenize

K = TypeVar("K", bound=Hashable)
Caption = Union[str, Sequence[str]]  # raw caption string or pre-tokenised words
Ngram = tuple[str, ...]
_MAX_DELTA = 64  # length differences with a precomputed gaussian penalty


# ----------------------------------------------------------------------------- COCO metrics
def _joined(caption: str) -> str:
    return " ".join(tokenize(caption))


def coco_scores(candidates: Mapping[K, str], references: Mapping[K, Sequence[str]], *,
                meteor: bool = False) -> dict[str, float]:
    """Standard COCO-caption metrics computed with pycocoevalcap's scorers.

    Keys: ``BLEU-1``..``BLEU-4`` (corpus-level, closest reference length), ``ROUGE-L``, ``CIDEr-D``
    (pycocoevalcap's ``Cider``, unscaled) and ``METEOR`` only when ``meteor=True`` and ``java`` is on
    PATH (omitted with a warning if the Java scorer fails).
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if not candidates:
        raise ValueError("no candidates to score")
    if set(candidates) != set(references):
        raise ValueError("candidates and references must have the same keys")
    keys = list(candidates)
    res = {k: [_joined(candidates[k])] for k in keys}
    gts = {k: [_joined(r) for r in references[k]] for k in keys}
    if any(not refs for refs in gts.values()):
        raise ValueError("every candidate needs at least one reference")

    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores = {f"BLEU-{i + 1}": float(b) for i, b in enumerate(bleu)}
    scores["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    scores["CIDEr-D"] = float(Cider().compute_score(gts, res)[0])
    if meteor:
        value = _meteor(gts, res)
        if value is not None:
            scores["METEOR"] = value
    return scores


def _meteor(gts: dict, res: dict) -> float | None:
    """METEOR via pycocoevalcap's Java wrapper; ``None`` (with a warning) if unavailable or failing."""
    if shutil.which("java") is None:
        warnings.warn("METEOR skipped: `java` not found on PATH")
        return None
    scorer = None
    try:
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()
        return float(scorer.compute_score(gts, res)[0])
    except Exception as exc:  # noqa: BLE001 - any Java/IO failure just drops the metric
        warnings.warn(f"METEOR skipped: {type(exc).__name__}: {exc}")
        return None
    finally:
        if scorer is not None:
            scorer.meteor_p.kill()
            scorer.meteor_p.wait()
            scorer.lock = threading.Lock()  # a failed compute_score leaves the lock held; __del__ needs it


# ----------------------------------------------------------------------------- fast CIDEr-D
def _words(caption: Caption) -> tuple[str, ...]:
    return tuple(tokenize(caption)) if isinstance(caption, str) else tuple(caption)


def _ngram_counts(words: tuple[str, ...], n: int) -> dict[Ngram, int]:
    """Counts of all 1..n-grams as word tuples (pycocoevalcap ``precook``)."""
    counts: dict[Ngram, int] = {}
    size = len(words)
    _count_elements(counts, [words[i:i + k] for k in range(1, n + 1) for i in range(size - k + 1)])
    return counts


def _inverse(x: float) -> float:
    """1/x, or 0 for a zero norm (its clipped dot product is then 0 too, as in pycocoevalcap)."""
    return 1.0 / x if x != 0 else 0.0


def _length(words: tuple[str, ...], n: int) -> int:
    """Length used by pycocoevalcap's penalty: it counts *bigram* occurrences (its ``n == 1`` index)."""
    return max(len(words) - 1, 0) if n >= 2 else 0


class CiderD:
    """Fast CIDEr-D for SCST rewards, numerically matching pycocoevalcap's ``Cider``.

    Document frequencies come once from ``corpus_refs`` (one list of references per image; strings
    or pre-tokenised word lists). ``score`` then rates many candidates against their references;
    cooked reference sets are cached (LRU, keyed by the references as given).
    """

    def __init__(self, corpus_refs: Sequence[Sequence[Caption]], *, n: int = 4, sigma: float = 6.0,
                 cache_size: int = 8192):
        if not corpus_refs:
            raise ValueError("corpus_refs is empty")
        self.n = n
        self.sigma = sigma
        df: Counter = Counter()
        for refs in corpus_refs:
            df.update({g for ref in refs for g in _ngram_counts(_words(ref), n)})
        self.ref_len = math.log(float(len(corpus_refs)))
        # idf weight per n-gram; n-grams unseen in the corpus get the full ``ref_len``
        self._idf: dict[Ngram, float] = {g: self.ref_len - math.log(max(1.0, c)) for g, c in df.items()}
        self._penalty = [math.exp(-(d * d) / (2 * sigma ** 2)) for d in range(_MAX_DELTA)]
        self._cook_refs = functools.lru_cache(maxsize=cache_size)(self._cook_refs_uncached)

    def _cook_refs_uncached(self, refs: tuple[Caption, ...]):
        """Per reference set: {n-gram: (order, idf^2, [(ref index, tf)])}, 1/|ref| per order, lengths."""
        idf_get, ref_len, n = self._idf.get, self.ref_len, self.n
        index: dict[Ngram, tuple[int, float, list[tuple[int, int]]]] = {}
        index_get = index.get
        inv_norms: list[list[float]] = []
        lengths: list[int] = []
        for j, ref in enumerate(refs):
            words = _words(ref)
            sq = [0.0] * n
            for ngram, tf in _ngram_counts(words, n).items():
                entry = index_get(ngram)
                if entry is None:
                    w = idf_get(ngram, ref_len)
                    entry = index[ngram] = (len(ngram) - 1, w * w, [])
                sq[entry[0]] += tf * tf * entry[1]
                entry[2].append((j, tf))
            inv_norms.append([_inverse(math.sqrt(x)) for x in sq])
            lengths.append(_length(words, n))
        return index, inv_norms, lengths

    def _score_one(self, words: tuple[str, ...], refs: tuple[Caption, ...]) -> float:
        """sum_order sum_ref penalty * clip(hyp, ref) . ref / (|hyp| |ref|), averaged and times 10."""
        index, inv_norms, ref_lengths = self._cook_refs(refs)
        idf_get, index_get, ref_len, n = self._idf.get, index.get, self.ref_len, self.n
        length = _length(words, n)
        penalty = [self._gauss(length - rlen) for rlen in ref_lengths]
        # factor[k][j] = length penalty of ref j / |ref j| at order k
        factor = [[p * inv[k] for p, inv in zip(penalty, inv_norms)] for k in range(n)]
        dot = [0.0] * n  # per order: sum over refs of factor * clipped dot product
        sq = [0.0] * n   # per order: squared candidate norm
        for ngram, tf in _ngram_counts(words, n).items():
            hit = index_get(ngram)
            if hit is None:
                sq[len(ngram) - 1] += (tf * idf_get(ngram, ref_len)) ** 2
                continue
            k, w2, postings = hit
            sq[k] += tf * tf * w2
            f = factor[k]
            acc = 0.0
            for j, tf_ref in postings:
                # min(tf*w, tf_ref*w) * tf_ref*w: the CIDEr-D clipped numerator (w^2 applied below)
                acc += (tf if tf < tf_ref else tf_ref) * tf_ref * f[j]
            dot[k] += acc * w2
        total = sum(d * _inverse(math.sqrt(x)) for d, x in zip(dot, sq))
        return total / n / len(refs) * 10.0

    def _gauss(self, delta: int) -> float:
        """Gaussian length penalty exp(-delta^2 / (2 sigma^2)), tabulated for small |delta|."""
        delta = abs(delta)
        if delta < _MAX_DELTA:
            return self._penalty[delta]
        return math.exp(-(delta * delta) / (2 * self.sigma ** 2))

    def score(self, candidates: Sequence[Caption], references: Sequence[Sequence[Caption]]) -> np.ndarray:
        """Per-candidate CIDEr-D; ``references[i]`` are the reference captions for ``candidates[i]``."""
        if len(candidates) != len(references):
            raise ValueError(f"{len(candidates)} candidates but {len(references)} reference lists")
        out = np.empty(len(candidates), dtype=np.float64)
        for i, (cand, refs) in enumerate(zip(candidates, references)):
            if not refs:
                raise ValueError(f"candidate {i} has no references")
            key = tuple(r if isinstance(r, str) else tuple(r) for r in refs)
            out[i] = self._score_one(_words(cand), key)
        return out
