"""Caption metrics: standard COCO scores (via pycocoevalcap) and a fast CIDEr-D for SCST rewards.

All text is tokenised with :func:`captioning.vocab.tokenize` (no Java PTBTokenizer); tokens are
joined with single spaces before being handed to the pycocoevalcap scorers.
"""
from __future__ import annotations

import math
import shutil
import threading
import warnings
from typing import Hashable, Mapping, Sequence, TypeVar, Union

import numpy as np

from ..vocab import tokenize

K = TypeVar("K", bound=Hashable)
Caption = Union[str, Sequence[str]]  # raw caption string or pre-tokenised words


# ----------------------------------------------------------------------------- COCO metrics
def _joined(caption: str) -> str:
    return " ".join(tokenize(caption))


def diversity(captions: Sequence[str]) -> dict[str, int]:
    """How varied a model's captions of a split are: ``distinct_captions`` (different captions)
    and ``distinct_words`` (different words used over all of them)."""
    return {"distinct_captions": len(set(captions)), "distinct_words": len({w for c in captions for w in c.split()})}


def coco_scores(candidates: Mapping[K, str], references: Mapping[K, Sequence[str]], *,
                meteor: bool = False) -> dict[str, float]:
    """Standard COCO-caption metrics computed with pycocoevalcap's scorers.

    Keys: ``BLEU-1``..``BLEU-4`` (corpus-level, closest reference length), ``ROUGE-L``, ``CIDEr-D``
    (pycocoevalcap's ``Cider``, unscaled) and ``METEOR`` only when ``meteor=True`` and ``java`` is on
    PATH (omitted with a warning if the Java scorer fails).
    """
    # pycocoevalcap is an optional dependency (pip install .[train]): only these scores need it
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
        from pycocoevalcap.meteor.meteor import Meteor  # optional, as in coco_scores

        scorer = Meteor()
        return float(scorer.compute_score(gts, res)[0])
    except Exception as exc:  # noqa: BLE001 - any Java/IO failure just drops the metric
        warnings.warn(f"METEOR skipped: {type(exc).__name__}: {exc}")
        return None
    finally:
        if scorer is not None:
            proc = scorer.meteor_p
            proc.kill()
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
            scorer.lock = threading.Lock()  # a failed compute_score leaves the lock held; __del__ needs it


# ----------------------------------------------------------------------------- fast CIDEr-D
_BITS = 16  # bits per word id in a packed n-gram code; ids start at 1 so k-gram codes are distinct
_MAX_WORDS = (1 << _BITS) - 2  # so the all-ones code can serve as a sentinel
_SENTINEL = np.iinfo(np.uint64).max


def _words(caption: Caption) -> tuple[str, ...]:
    return tuple(tokenize(caption)) if isinstance(caption, str) else tuple(caption)


def _ragged_arange(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each (s, c)."""
    offsets = np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(starts, counts) + (np.arange(int(counts.sum())) - offsets)


class CiderD:
    """Fast CIDEr-D for SCST rewards, numerically matching pycocoevalcap's ``Cider``.

    Document frequencies come once from ``corpus_refs`` (one list of references per image; strings
    or pre-tokenised word lists). ``score`` is vectorised with numpy: n-grams are packed into uint64
    codes (up to 65534 distinct words, n <= 4), so no per-reference cache is needed.
    """

    def __init__(self, corpus_refs: Sequence[Sequence[Caption]], *, n: int = 4, sigma: float = 6.0,
                 chunk: int = 10000):
        if not corpus_refs:
            raise ValueError("corpus_refs is empty")
        if not 1 <= n <= 64 // _BITS:
            raise ValueError(f"n must be in 1..{64 // _BITS}")
        self.n, self.sigma = n, sigma
        self._ids: dict[str, int] = {}
        self.ref_len = math.log(float(len(corpus_refs)))
        per_image = []  # distinct n-gram codes of each chunk's images (document = image)
        for lo in range(0, len(corpus_refs), chunk):
            images = corpus_refs[lo:lo + chunk]
            sents = [_words(r) for refs in images for r in refs]
            image = np.repeat(np.arange(len(images)), [len(refs) for refs in images])
            codes, sent = self._ngrams(sents, grow=True)
            rank_codes, rank = np.unique(codes, return_inverse=True)
            width = max(len(rank_codes), 1)
            per_image.append(rank_codes[np.unique(image[sent] * width + rank) % width])
        codes, df = np.unique(np.concatenate(per_image), return_counts=True)
        codes, df = codes[df > 1], df[df > 1]  # log(max(1, df)) is 0 for df 0 and 1 alike
        # sorted codes and their idf weights, plus a sentinel so every lookup lands in range
        self._df_codes = np.append(codes, np.uint64(_SENTINEL))
        self._idf = np.append(self.ref_len - np.log(np.maximum(1.0, df)), self.ref_len)

    def _ngrams(self, sents: Sequence[tuple[str, ...]], grow: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Packed codes of every 1..n-gram occurrence and the index of its sentence.

        Unknown words join the vocabulary when ``grow`` (corpus), else get call-local ids."""
        try:
            flat = [self._ids[w] for words in sents for w in words]
        except KeyError:
            ids = self._ids if grow else dict(self._ids)
            flat = [ids.setdefault(w, len(ids) + 1) for words in sents for w in words]
            if len(ids) > _MAX_WORDS:
                raise ValueError(f"CiderD supports at most {_MAX_WORDS} distinct words") from None
        lens = np.fromiter(map(len, sents), dtype=np.int64, count=len(sents))
        ids_arr = np.array(flat, dtype=np.uint64)
        sent = np.repeat(np.arange(len(sents)), lens)
        left = np.repeat(lens, lens) - (np.arange(len(flat)) - np.repeat(np.cumsum(lens) - lens, lens))
        code = np.zeros(len(flat), dtype=np.uint64)
        codes, owners = [], []
        for k in range(min(self.n, len(flat))):  # extend every (k)-gram by one word
            code[:len(flat) - k] = (code[:len(flat) - k] << np.uint64(_BITS)) | ids_arr[k:]
            valid = left > k
            codes.append(code[valid])
            owners.append(sent[valid])
        if not codes:
            return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
        return np.concatenate(codes), np.concatenate(owners)

    def score(self, candidates: Sequence[Caption], references: Sequence[Sequence[Caption]]) -> np.ndarray:
        """Per-candidate CIDEr-D; ``references[i]`` are the reference captions for ``candidates[i]``."""
        if len(candidates) != len(references):
            raise ValueError(f"{len(candidates)} candidates but {len(references)} reference lists")
        n_cand, n = len(candidates), self.n
        groups: dict[tuple, int] = {}  # identical reference lists are processed once
        group_of = np.array([groups.setdefault(_key(refs), len(groups)) for refs in references], dtype=np.int64)
        if any(not g for g in groups):
            raise ValueError("every candidate needs at least one reference")
        ref_sents = [_words(r) for g in groups for r in g]
        sents = [_words(c) for c in candidates] + ref_sents
        n_refs = np.array([len(g) for g in groups], dtype=np.int64)
        ref_start = n_cand + np.cumsum(n_refs) - n_refs  # sentence index of each group's first ref

        # distinct (sentence, n-gram) entries with term frequency, order and idf weight
        codes, sent = self._ngrams(sents)
        if len(codes) == 0:  # every caption is empty
            return np.zeros(n_cand)
        uniq_codes, rank = np.unique(codes, return_inverse=True)
        n_codes = max(len(uniq_codes), 1)
        keys, tf = np.unique(sent * n_codes + rank, return_counts=True)
        e_sent, e_rank = keys // n_codes, keys % n_codes
        pos = np.searchsorted(self._df_codes, uniq_codes)  # absent: df 0 or 1, weight ref_len
        weight = np.where(self._df_codes[pos] == uniq_codes, self._idf[pos], self.ref_len)[e_rank]
        order = sum((uniq_codes >= np.uint64(1 << (_BITS * m))).astype(np.int64) for m in range(1, n))
        e_order = np.asarray(order)[e_rank] if n > 1 else np.zeros(len(keys), dtype=np.int64)

        norms = np.sqrt(np.bincount(e_sent * n + e_order, weights=(tf * weight) ** 2,
                                    minlength=len(sents) * n)).reshape(len(sents), n)  # (sentences, n)
        lengths = np.maximum(np.array([len(s) for s in sents]) - 1, 0) if n >= 2 else np.zeros(len(sents))

        # (candidate, reference) pairs; each pair looks up its candidate's n-grams in its reference
        pair_counts = n_refs[group_of]
        pair_cand = np.repeat(np.arange(n_cand), pair_counts)
        pair_ref = _ragged_arange(ref_start[group_of], pair_counts)
        cand_entries = np.bincount(e_sent[e_sent < n_cand], minlength=n_cand)  # entries sorted by sentence
        reps = cand_entries[pair_cand]
        entry = _ragged_arange((np.cumsum(cand_entries) - cand_entries)[pair_cand], reps)
        pair = np.repeat(np.arange(len(pair_cand)), reps)
        ref_key = pair_ref[pair] * n_codes + e_rank[entry]  # sorted runs: fast searchsorted
        hit = np.minimum(np.searchsorted(keys, ref_key), len(keys) - 1)
        tf_ref = np.where(keys[hit] == ref_key, tf[hit], 0)
        clipped = np.minimum(tf[entry], tf_ref) * tf_ref * weight[entry] ** 2  # min(h, r) * r
        dot = np.bincount(pair * n + e_order[entry], weights=clipped,
                          minlength=len(pair_cand) * n).reshape(-1, n).astype(np.float64)  # (pairs, n)

        denom = norms[pair_cand] * norms[pair_ref]  # where 0, dot is 0 too (pycocoevalcap skips dividing)
        sim = np.divide(dot, denom, out=np.zeros_like(dot), where=denom != 0)
        delta = (lengths[pair_cand] - lengths[pair_ref]).astype(np.float64)
        per_pair = sim.sum(axis=1) * np.exp(-(delta ** 2) / (2 * self.sigma ** 2))
        return np.bincount(pair_cand, weights=per_pair, minlength=n_cand) / n / pair_counts * 10.0


class CiderDPerCorpus:
    """CIDEr-D whose document frequencies are each image's own dataset's (``corpora``: per dataset, one
    list of references per image), as each dev split is scored; a pooled corpus would weigh the smaller
    dataset's common n-grams as rare ones. ``score`` has :class:`CiderD`'s signature: an image's
    references say which corpus it belongs to (the first one holding that exact list; ``extra``: further
    reference lists, such as the mirrored photos' captions, each with the index of its corpus)."""

    def __init__(self, corpora: Sequence[Sequence[Sequence[Caption]]],
                 extra: Sequence[tuple[Sequence[Caption], int]] = (), **cider: float):
        self.ciders = [CiderD(refs, **cider) for refs in corpora]  # type: ignore[arg-type]
        self._corpus: dict[tuple, int] = {}
        for refs, c in [(r, c) for c, rs in enumerate(corpora) for r in rs] + list(extra):
            self._corpus.setdefault(_key(refs), c)

    def score(self, candidates: Sequence[Caption], references: Sequence[Sequence[Caption]]) -> np.ndarray:
        if len(candidates) != len(references):
            raise ValueError(f"{len(candidates)} candidates but {len(references)} reference lists")
        try:
            corpus = np.array([self._corpus[_key(r)] for r in references], dtype=np.int64)
        except KeyError:
            raise ValueError("references that belong to none of the corpora") from None
        out = np.zeros(len(candidates))
        for c in np.unique(corpus):
            rows = np.flatnonzero(corpus == c)
            out[rows] = self.ciders[c].score([candidates[i] for i in rows], [references[i] for i in rows])
        return out


def _key(refs: Sequence[Caption]) -> tuple:
    """A list of references as a dict key (strings or word lists)."""
    return tuple(r if isinstance(r, str) else tuple(r) for r in refs)
