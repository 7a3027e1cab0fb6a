"""Tags over shots, scenes and the whole video, and the search index, from per-frame encoder outputs."""
from __future__ import annotations

import numpy as np

from captioning.results import CaptionResult, Tag
from captioning.imagenet import imagenet_categories
from captioning.everyday import EverydayOptions, EverydayTag, everyday_tags

from .results import CALIBRATED, WORD_PROBABILITY, FrameTags, Segment, Shot, ShotTag, merge_segments
from .words import caption_words

SUMMARY_TAGS = 10  # labels (and caption words) listed in the video summary
INDEXED_WORD = 0.1  # an everyday word enters a frame's search index from this summed probability: below it, its
# long weak tail ("dog 0.01" on every frame) would join a strong hit of the same caption word into one long segment


def caption_confidence(result: CaptionResult) -> float:
    """The caption's calibrated confidence (:mod:`captioning.confidence`) when it has one (a
    calibrated bundle, beam >= 2), else the geometric-mean probability of its words and end token."""
    if result.confidence is not None:
        return float(result.confidence)
    return float(np.exp(result.logprob / (len(result.tokens) + 1)))


def confidence_kind(captions: list[CaptionResult | None]) -> str:
    """What :func:`caption_confidence` gave for ``captions`` (one decoding, so all alike):
    :data:`CALIBRATED` or :data:`WORD_PROBABILITY` (also when there is no caption)."""
    return CALIBRATED if any(c is not None and c.confidence is not None for c in captions) else WORD_PROBABILITY


def word_tags(captions: list[CaptionResult]) -> list[ShotTag]:
    """The content words of ``captions``, each with the mean confidence of the captions using it."""
    found: dict[str, list[float]] = {}
    for c in captions:
        for w in caption_words(c.text):
            found.setdefault(w, []).append(caption_confidence(c))
    return [ShotTag(w, float(np.mean(p)), len(p), "caption") for w, p in found.items()]


def top_labels(mean_probs: np.ndarray, frame_tags: list[tuple[Tag, ...]], k: int) -> list[ShotTag]:
    """The k most probable ImageNet labels of ``mean_probs`` (1000,), each with the number of
    ``frame_tags`` (the frames' top-k) holding it."""
    names = imagenet_categories()
    counts: dict[str, int] = {}
    for tags in frame_tags:
        for t in tags:
            counts[t.label] = counts.get(t.label, 0) + 1
    top = np.argsort(-mean_probs, kind="stable")[:k]
    return [ShotTag(names[i], float(mean_probs[i]), counts.get(names[i], 0)) for i in top]


def everyday_labels(mean_probs: np.ndarray, frame_words: list[list[EverydayTag]], k: int,
                    options: EverydayOptions) -> list[ShotTag]:
    """The k top everyday tags of ``mean_probs`` (1000,) (source "everyday"), each with the number
    of ``frame_words`` (the frames' everyday tags) holding it."""
    counts: dict[str, int] = {}
    for words in frame_words:
        for w in words:
            counts[w.word] = counts.get(w.word, 0) + 1
    return [ShotTag(t.word, t.probability, counts.get(t.word, 0), "everyday")
            for t in everyday_tags(mean_probs, k=k, options=options)[0]]


def weighted_mean(probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(F, C) probabilities averaged with (F,) weights (the time each frame stands for)."""
    return (probs * weights[:, None]).sum(0) / max(float(weights.sum()), 1e-12)


def build_index(frames: list[FrameTags], shots: list[Shot], starts: np.ndarray, ends: np.ndarray,
                frame_captions: list[CaptionResult | None] | None, frame_words: list[list[EverydayTag]] | None = None
                ) -> dict[str, tuple[Segment, ...]]:
    """tag -> segments: runs of consecutive frames with the label (or everyday word, from
    ``frame_words``, at least :data:`INDEXED_WORD`) in their top-k (confidence = time-weighted mean
    probability), and caption words over their shots less their blank frames (or over captioned frames)."""
    hits: dict[str, list[tuple[int, float]]] = {}  # label -> (position, probability)
    for pos, f in enumerate(frames):
        for t in f.tags:
            hits.setdefault(t.label, []).append((pos, t.probability))
        for w in frame_words[pos] if frame_words else ():
            if w.probability >= INDEXED_WORD:
                hits.setdefault(w.word, []).append((pos, w.probability))
        if frame_captions is not None and frame_captions[pos] is not None:  # None: a blank frame
            for w in caption_words(frame_captions[pos].text):
                hits.setdefault(w, []).append((pos, caption_confidence(frame_captions[pos])))
    index: dict[str, list[Segment]] = {}
    for label, items in hits.items():
        runs: list[list[tuple[int, float]]] = []
        for pos, p in items:
            if runs and runs[-1][-1][0] == pos - 1:
                runs[-1].append((pos, p))
            elif not (runs and runs[-1][-1][0] == pos):  # a word twice in one caption
                runs.append([(pos, p)])
        for run in runs:
            w = np.array([ends[pos] - starts[pos] for pos, _ in run])
            conf = float(np.dot(w, [p for _, p in run]) / max(w.sum(), 1e-12))
            index.setdefault(label, []).append(Segment(float(starts[run[0][0]]), float(ends[run[-1][0]]), conf))
    if frame_captions is None:  # a keyframe's caption words: over its shot, less the shot's blank frames
        pictured: dict[int, list[int]] = {}
        for pos, f in enumerate(frames):
            if not f.blank:
                pictured.setdefault(f.shot, []).append(pos)
        for s in shots:
            spans = _pictured_spans(pictured.get(s.index, []), starts, ends)
            for t in s.tags:
                if t.source == "caption":
                    index.setdefault(t.label, []).extend(Segment(a, b, t.probability) for a, b in spans)
    return {label: tuple(merge_segments(segs, gap=0.0)) for label, segs in sorted(index.items())}


def _pictured_spans(positions: list[int], starts: np.ndarray, ends: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) of each run of consecutive ``positions`` (a shot's frames that are not blank): the
    whole shot when none of its frames is blank."""
    runs: list[list[int]] = []
    for pos in positions:
        if runs and runs[-1][-1] == pos - 1:
            runs[-1].append(pos)
        else:
            runs.append([pos])
    return [(float(starts[r[0]]), float(ends[r[-1]])) for r in runs]


def summary_tags(frames: list[FrameTags], shots: list[Shot], probs: np.ndarray, weights: np.ndarray,
                 duration: float, frame_words: list[list[EverydayTag]] | None = None,
                 everyday: EverydayOptions = EverydayOptions()) -> list[ShotTag]:
    """Top labels over the whole video (time-weighted mean probability), its top everyday tags (the
    same, rolled up; with ``frame_words``) and top caption words (caption confidence times the share
    of the video their shots cover). ``weights`` are 0 for blank frames: a video of blank frames only
    has no label."""
    mean = weighted_mean(probs, weights)
    labels = top_labels(mean, [f.tags for f in frames], SUMMARY_TAGS) if weights.sum() > 0 else []
    if frame_words is not None and weights.sum() > 0:
        labels += everyday_labels(mean, frame_words, SUMMARY_TAGS, everyday)
    words: dict[str, list[float]] = {}
    for s in shots:
        for t in s.tags:
            if t.source == "caption":
                words.setdefault(t.label, [0.0, 0])
                words[t.label][0] += t.probability * (s.end - s.start) / max(duration, 1e-12)
                words[t.label][1] += t.frames
    ranked = sorted(words.items(), key=lambda kv: (-kv[1][0], kv[0]))[:SUMMARY_TAGS]
    return labels + [ShotTag(w, p, int(n), "caption") for w, (p, n) in ranked]
