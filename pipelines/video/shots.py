"""Shots and scenes from the cut detector's boundaries and the encoder's semantic vectors.

Shot boundaries come from :mod:`pipelines.video.cuts` (exact frames); the encoder runs on the
tagged frames only (the samples, plus a shot's first frames when no sample falls in it), and
their unit-length semantic vectors do the rest:

- each shot's **keyframe** is, among a bounded, evenly spaced subset of its tagged frames
  (:class:`OpenShot`: memory stays constant however long a shot is), the one closest to the
  shot's mean vector; it is captioned. Blank frames (near-uniform: black, grey, a fade's darkest)
  are neither candidates nor in the mean; a shot of blank frames only is blank: its first frame
  is its keyframe, and it gets no caption;
- **scenes** join consecutive shots: a scene ends between two shots unless some pair of similar
  shots (cosine distance of their mean vectors at most ``threshold``, at most ``span`` shots
  apart) straddles that point, so a shot / reverse-shot dialogue (A B A B) stays one scene
  while a new place starts a new one. With the encoder every shipped bundle uses, the same
  photo under strong camera motion stays within 0.32 of itself (99th percentile), two different
  photos are 0.48 apart or more (1st percentile), hence the default 0.3.

Each tagged frame stands for the stretch of its shot nearest to it (from half-way to the
previous tagged frame of the shot to half-way to the next; the shot's first and last ones
reach its ends), so tag segments begin and end at the cuts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

MAX_STORED = 64  # keyframe candidates kept in memory for the open shot
CENTRAL_TOLERANCE = 1e-4  # relative: similarities this close are a tie (float noise, e.g. other thread counts)


@dataclass(frozen=True)
class RawShot:
    first: int  # position (among the tagged frames) of the shot's first tagged frame
    stop: int  # position after its last one
    keyframe: int  # position of its keyframe: the stored frame closest to the shot's mean vector
    payload: Any  # what the caller stored for the keyframe (e.g. its encoder rows; None for a blank shot)
    blank: bool = False  # every tagged frame of the shot is blank (its keyframe: its first frame)


class OpenShot:
    """The tagged frames of the shot being read: a bounded, evenly spaced subset of them (every
    frame up to ``max_stored``, then every 2nd, 4th...) kept with a caller payload as keyframe
    candidates (blank frames are not); :meth:`close` picks the keyframe."""

    def __init__(self, first: int, *, max_stored: int = MAX_STORED):
        self.first, self.max_stored = first, max_stored
        self._n = first  # next position
        self._sum: np.ndarray | None = None  # sum of the shot's vectors
        self._stored: dict[int, tuple[np.ndarray, Any]] = {}  # position -> (vector, payload)
        self._stride = 1

    def add(self, vector: np.ndarray, payload: Callable[[], Any], *, blank: bool = False) -> None:
        """The shot's next tagged frame: its unit vector, its payload (called if it is kept) and
        whether it is blank (then it is only counted)."""
        if blank:
            self._n += 1
            return
        if (self._n - self.first) % self._stride == 0 or not self._stored:
            self._stored[self._n] = (vector, payload())
            if len(self._stored) > self.max_stored:  # thin out: keep every other stored frame
                self._stride *= 2
                kept = {p: v for p, v in self._stored.items() if (p - self.first) % self._stride == 0}
                self._stored = kept or dict([min(self._stored.items())])
        self._sum = vector.astype(np.float64) if self._sum is None else self._sum + vector
        self._n += 1

    def __len__(self) -> int:
        return self._n - self.first

    def close(self) -> RawShot:
        if not self._stored:
            return RawShot(self.first, self._n, self.first, None, blank=True)
        key = most_central(sorted(self._stored), lambda p: float(self._stored[p][0] @ self._sum))
        return RawShot(self.first, self._n, key, self._stored[key][1])


def most_central(candidates: list[int], similarity: Callable[[int], float]) -> int:
    """The first of ``candidates`` (in their order) whose similarity to a centre is within
    CENTRAL_TOLERANCE of the best one's, so near-identical frames do not let the float noise
    of one machine or thread count pick the keyframe."""
    scores = [similarity(c) for c in candidates]
    best = max(scores)
    return next(c for c, score in zip(candidates, scores) if score >= best - CENTRAL_TOLERANCE * abs(best))


def frame_spans(times: np.ndarray, shot_of: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of the stretch of time each tagged frame stands for: half-way to its shot's
    neighbouring tagged frames, its shot's start/end at the shot's first/last tagged frame.
    ``shot_of`` (F,) is each frame's shot; ``bounds`` (S + 1,) the shots' start times and the end."""
    same_prev = np.concatenate([[False], shot_of[1:] == shot_of[:-1]])  # (F,)
    mids = (times[1:] + times[:-1]) / 2  # (F - 1,)
    starts = np.where(same_prev, np.concatenate([[0.0], mids]), bounds[shot_of])
    same_next = np.concatenate([shot_of[1:] == shot_of[:-1], [False]])
    ends = np.where(same_next, np.concatenate([mids, [0.0]]), bounds[shot_of + 1])
    return starts, ends


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def group_scenes(shot_vectors: np.ndarray, *, threshold: float, span: int) -> list[list[int]]:
    """Scenes as lists of consecutive shot numbers; ``shot_vectors`` (S, D) the shots' mean vectors.
    Shots i < j (j - i <= span) within ``threshold`` (cosine distance) are linked, and a scene
    ends between shots m and m + 1 when no link crosses it."""
    units = np.stack([_unit(v) for v in shot_vectors]) if len(shot_vectors) else np.zeros((0, 1))
    reach = list(range(len(units)))  # reach[i]: the furthest shot linked to shot i or before
    for i in range(len(units)):
        for j in range(i + 1, min(i + span, len(units) - 1) + 1):
            if 1.0 - float(units[i] @ units[j]) <= threshold:
                reach[i] = j
        if i:
            reach[i] = max(reach[i], reach[i - 1])
    scenes: list[list[int]] = []
    for i in range(len(units)):
        if scenes and reach[i - 1] >= i:
            scenes[-1].append(i)
        else:
            scenes.append([i])
    return scenes
