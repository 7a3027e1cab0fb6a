"""Shots, tag aggregation and the search index, all from per-frame encoder outputs.

Shot detection uses the encoder's semantic vectors (the same ones that are tagged): a cut
is placed between consecutive sampled frames whose cosine distance exceeds a threshold.
Measured on 300 Flickr8k photos with the encoder every shipped bundle uses (pooled
EfficientNet-Lite0 features; another encoder would need these measured again):

- the same photo after ~1 s of ordinary camera motion (pan 10%, zoom 5%): distance
  median 0.05, 99th percentile 0.11; after a strong pan + zoom (80% -> 60% crop moved
  across the frame): median 0.17, 95th percentile 0.25, 99th 0.32; a 40% brightness drop: < 0.09;
- two different photos (44 850 pairs, many of them dogs on grass): 1st percentile
  0.48; 3 pairs below 0.3, none below 0.25;
- videos: the generated test clips (scikit-image photos, slow pan + zoom, 1 fps): cuts
  0.71-0.89, within shots <= 0.05; 12 Flickr8k photos made into a 720p clip with fast
  pans and zooms: cuts 0.50-0.76, within shots 0.07-0.21.

So a threshold of 0.3 (the default :attr:`TagOptions.shot_threshold`) misses almost no cut
between different scenes and tolerates fast camera motion. Shots shorter than
``min_seconds`` (flashes, dissolves) are merged into their most similar neighbour, and
neighbouring shots whose mean vectors are closer than the threshold are joined again.

Each sampled frame stands for the stretch of time nearest to it (from half-way to the
previous sample to half-way to the next), so shot boundaries fall half-way between the
last frame of one shot and the first of the next: within half a sampling period of the
true cut when the cut is detected.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from captioning.api import CaptionResult, Tag
from captioning.encoder import imagenet_categories

from .results import FrameTags, Segment, Shot, ShotTag, Summary, merge_segments
from .words import caption_words

SUMMARY_TAGS = 10  # labels (and caption words) listed in the video summary
MAX_STORED = 64  # keyframe candidates kept in memory for the open segment


@dataclass(frozen=True)
class RawSegment:
    first: int  # position (in sampled frames) of the segment's first frame
    stop: int  # position after its last frame
    keyframe: int  # position of its keyframe: the stored frame closest to the segment's mean vector
    payload: Any  # what the caller stored for the keyframe (e.g. its encoder rows)


class ShotTracker:
    """Online cut detection over unit-length semantic vectors.

    For the open segment it keeps a bounded, evenly spaced subset of frames (every frame
    up to ``max_stored``, then every 2nd, 4th...) with a caller payload, so memory stays
    constant however long a shot is; when a segment closes, :meth:`add` returns it with its
    keyframe's payload.
    """

    def __init__(self, *, threshold: float, max_stored: int = MAX_STORED):
        self.threshold = threshold
        self.max_stored = max_stored
        self._n = 0  # frames seen
        self._first = 0  # first position of the open segment
        self._prev: np.ndarray | None = None
        self._sum: np.ndarray | None = None  # sum of the open segment's vectors
        self._stored: dict[int, tuple[np.ndarray, Any]] = {}  # position -> (vector, payload)
        self._stride = 1

    def add(self, vector: np.ndarray, payload: Callable[[], Any]) -> RawSegment | None:
        closed = None
        if self._prev is not None and 1.0 - float(vector @ self._prev) > self.threshold:
            closed = self._close()
        offset = self._n - self._first
        if offset % self._stride == 0:
            self._stored[self._n] = (vector, payload())
            if len(self._stored) > self.max_stored:  # thin out: keep every other stored frame
                self._stride *= 2
                self._stored = {p: v for p, v in self._stored.items() if (p - self._first) % self._stride == 0}
        self._sum = vector.astype(np.float64) if self._sum is None else self._sum + vector
        self._prev = vector
        self._n += 1
        return closed

    def finish(self) -> RawSegment | None:
        return self._close() if self._n > self._first else None

    def _close(self) -> RawSegment:
        key = most_central(sorted(self._stored), lambda p: float(self._stored[p][0] @ self._sum))
        segment = RawSegment(self._first, self._n, key, self._stored[key][1])
        self._first, self._sum, self._stored, self._stride = self._n, None, {}, 1
        return segment


CENTRAL_TOLERANCE = 1e-4  # relative: similarities this close are a tie (float noise, e.g. other thread counts)


def most_central(candidates: list[int], similarity: Callable[[int], float]) -> int:
    """The first of ``candidates`` (in their order) whose similarity to a centre is within
    CENTRAL_TOLERANCE of the best one's, so near-identical frames do not let the float noise
    of one machine or thread count pick the keyframe."""
    scores = [similarity(c) for c in candidates]
    best = max(scores)
    return next(c for c, score in zip(candidates, scores) if score >= best - CENTRAL_TOLERANCE * abs(best))


def frame_spans(times: np.ndarray, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of the stretch of time each sampled frame stands for."""
    mids = (times[1:] + times[:-1]) / 2
    starts = np.concatenate([[0.0], mids])
    ends = np.concatenate([mids, [max(duration, float(times[-1]) + 1e-3)]])
    return starts, ends


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def group_segments(raw: list[RawSegment], vectors: np.ndarray, starts: np.ndarray, ends: np.ndarray, *,
                   threshold: float, min_seconds: float) -> list[list[int]]:
    """Final shots as lists of raw segment numbers: short shots merged into the more similar
    neighbour, then neighbours whose mean vectors are within ``threshold`` joined."""
    groups = [[i] for i in range(len(raw))]
    span = lambda g: (raw[g[0]].first, raw[g[-1]].stop)  # noqa: E731
    mean = lambda g: _unit(vectors[slice(*span(g))].mean(0))  # noqa: E731
    length = lambda g: float(ends[span(g)[1] - 1] - starts[span(g)[0]])  # noqa: E731
    while len(groups) > 1:
        lengths = [length(g) for g in groups]
        i = int(np.argmin(lengths))
        if lengths[i] >= min_seconds - 1e-6:
            break
        neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(groups)]
        j = max(neighbours, key=lambda j: float(mean(groups[j]) @ mean(groups[i])))
        a, b = min(i, j), max(i, j)
        groups[a:b + 1] = [groups[a] + groups[b]]
    i = 0
    while i < len(groups) - 1:
        if 1.0 - float(mean(groups[i]) @ mean(groups[i + 1])) <= threshold:
            groups[i:i + 2] = [groups[i] + groups[i + 1]]
            i = max(i - 1, 0)
        else:
            i += 1
    return groups


def caption_confidence(result: CaptionResult) -> float:
    """Geometric-mean probability of the caption's words and its end token."""
    return float(np.exp(result.logprob / (len(result.tokens) + 1)))


def _word_tags(captions: list[CaptionResult]) -> list[ShotTag]:
    found: dict[str, list[float]] = {}
    for c in captions:
        for w in caption_words(c.text):
            found.setdefault(w, []).append(caption_confidence(c))
    return [ShotTag(w, float(np.mean(p)), len(p), "caption") for w, p in found.items()]


def _top_labels(mean_probs: np.ndarray, frame_tags: list[list[Tag]], k: int) -> list[ShotTag]:
    names = imagenet_categories()
    counts: dict[str, int] = {}
    for tags in frame_tags:
        for t in tags:
            counts[t.label] = counts.get(t.label, 0) + 1
    top = np.argsort(-mean_probs, kind="stable")[:k]
    return [ShotTag(names[i], float(mean_probs[i]), counts.get(names[i], 0)) for i in top]


def build_shots(raw: list[RawSegment], groups: list[list[int]], *, vectors: np.ndarray, probs: np.ndarray,
                starts: np.ndarray, ends: np.ndarray, frames: list[FrameTags],
                raw_captions: list[CaptionResult], frame_captions: list[CaptionResult] | None,
                k: int) -> list[Shot]:
    """Shots from grouped raw segments. The keyframe of a shot is, among its raw segments'
    keyframes, the one closest to the shot's mean vector; ``raw_captions`` are their captions."""
    shots = []
    for n, g in enumerate(groups):
        first, stop = raw[g[0]].first, raw[g[-1]].stop
        centre = vectors[first:stop].mean(0)
        best = most_central(g, lambda r: float(vectors[raw[r].keyframe] @ centre))
        key = raw[best].keyframe
        tags = _top_labels(probs[first:stop].mean(0), [list(f.tags) for f in frames[first:stop]], k)
        captioned = frame_captions[first:stop] if frame_captions is not None else [raw_captions[best]]
        shots.append(Shot(n, float(starts[first]), float(ends[stop - 1]), stop - first, frames[key].index,
                          frames[key].time, raw_captions[best].text, caption_confidence(raw_captions[best]),
                          tuple(tags + _word_tags(captioned))))
    return shots


def build_index(frames: list[FrameTags], shots: list[Shot], starts: np.ndarray, ends: np.ndarray,
                frame_captions: list[CaptionResult] | None) -> dict[str, tuple[Segment, ...]]:
    """tag -> segments: runs of consecutive frames with the label in their top-k (confidence =
    time-weighted mean probability), and caption words over their shots (or captioned frames)."""
    hits: dict[str, list[tuple[int, float]]] = {}  # label -> (position, probability)
    for pos, f in enumerate(frames):
        for t in f.tags:
            hits.setdefault(t.label, []).append((pos, t.probability))
        if frame_captions is not None:
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
    if frame_captions is None:
        for s in shots:
            for t in s.tags:
                if t.source == "caption":
                    index.setdefault(t.label, []).append(Segment(s.start, s.end, t.probability))
    return {label: tuple(merge_segments(segs, gap=0.0)) for label, segs in sorted(index.items())}


def summarize(frames: list[FrameTags], shots: list[Shot], probs: np.ndarray, starts: np.ndarray,
              ends: np.ndarray, duration: float) -> Summary:
    """Top labels over the whole video (time-weighted mean probability) and top caption words
    (caption confidence times the share of the video their shots cover)."""
    weights = ends - starts
    mean = (probs * weights[:, None]).sum(0) / max(float(weights.sum()), 1e-12)
    labels = _top_labels(mean, [list(f.tags) for f in frames], SUMMARY_TAGS)
    words: dict[str, list[float]] = {}
    for s in shots:
        for t in s.tags:
            if t.source == "caption":
                words.setdefault(t.label, [0.0, 0])
                words[t.label][0] += t.probability * (s.end - s.start) / max(duration, 1e-12)
                words[t.label][1] += t.frames
    ranked = sorted(words.items(), key=lambda kv: (-kv[1][0], kv[0]))[:SUMMARY_TAGS]
    return Summary(duration, len(shots), tuple(labels + [ShotTag(w, p, int(n), "caption") for w, (p, n) in ranked]))
