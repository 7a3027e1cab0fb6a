"""Shot boundaries at the exact frame, from a cheap content signal of every decoded frame.

Each frame comes in as its luma plane subsampled to about 160 pixels wide
(:meth:`pipelines.video.io.DecodedFrame.luma`: nearly free, no colour conversion). Per frame the
detector keeps the mean and spread of that small picture, the mean absolute difference to the
previous one (``step``, 0-255) and their correlation, and finds three kinds of boundary:

- **cut** (hard cut, at the first frame of the new shot): the ``change`` of a frame, its step
  times (1 - correlation with the previous frame), i.e. the part of the difference that no
  brightness or contrast change of the previous frame explains, is at least ``cut_min_change``
  and ``cut_ratio`` times the largest change among the ``cut_window`` frames on each side
  (adaptive, like PySceneDetect's AdaptiveDetector, but against the neighbours' maximum rather
  than their mean: steady camera motion raises the bar, a jerky zoom's regular jumps too). A
  fade step or a flash is a brightness change (correlation ~1: change ~0); a flash to a flat
  white lasting up to ``cut_window`` frames has its other edge among the neighbours.
- **fade** (through black): a run of black frames (mean luma under ``black_level``, little
  contrast) with pictures on both sides is one boundary, at the middle of the run; hard cuts
  at its edges (a cut to black and back) are part of it, none is looked for inside.
- **dissolve**: over the last ``dissolve_seconds`` the picture changed by at least
  ``dissolve_min_change`` (mean absolute difference between the window's ends), and the
  frame-to-frame steps add up to that change (their monotony, the change over the steps' sum,
  is at least ``dissolve_monotony``; camera motion goes back and forth: about 0.1 on pans and
  zooms, a dissolve about 0.7) with no single step making most of it (that is a cut or a
  flash) and no black frame near (that is a fade). It is followed while the change grows, and
  the boundary is the first frame of the window that is closer to its end than to its start.

Boundaries closer than ``min_shot_frames`` to the previous one (or to the start or end of the
video) are dropped, so a transition is one boundary. Decisions are final after a lookahead of
about ``dissolve_seconds``: :meth:`CutDetector.push` returns the boundaries that became final,
in order, and :attr:`CutDetector.horizon` is the frame up to which no boundary can still come.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np

BLACK_SPREAD = 8.0  # luma standard deviation (0-255) under which a dark frame counts as black
FLAT = 1.0  # luma standard deviation under which a frame has no picture to correlate
SPIKE_SHARE = 0.6  # a window whose largest single step is this share of its change holds a cut, not a dissolve
Kind = Literal["cut", "fade", "dissolve"]


@dataclass(frozen=True)
class CutOptions:
    """The cut detector's parameters (see :mod:`pipelines.video.cuts`); ``tag-video``'s flags."""
    cut_ratio: float = 3.0  # a hard cut changes the picture this many times more than any frame around it
    cut_min_change: float = 6.0  # and by at least this: luma difference (0-255) not explained by brightness
    cut_window: int = 3  # frames on each side a cut is compared with (flashes up to this long never cut)
    dissolve_seconds: float = 1.0  # the window dissolves are looked for in (longer ones are found in part)
    dissolve_min_change: float = 20.0  # luma difference (0-255) across that window not explained by brightness
    dissolve_monotony: float = 0.45  # share of the frame-to-frame changes that must add up (pans: ~0.1)
    black_level: float = 24.0  # mean luma (0-255) under which a flat frame is black (studio black: 16)
    min_shot_frames: int = 8  # a boundary this close to the previous one or to either end is dropped

    def __post_init__(self) -> None:
        problems = [why for bad, why in (
            (not self.cut_ratio >= 1, "cut_ratio must be >= 1"),
            (not self.cut_min_change > 0, "cut_min_change must be > 0"),
            (self.cut_window < 1, "cut_window must be >= 1"),
            (not self.dissolve_seconds > 0, "dissolve_seconds must be > 0"),
            (not self.dissolve_min_change > 0, "dissolve_min_change must be > 0"),
            (not 0 < self.dissolve_monotony <= 1, "dissolve_monotony must be in (0, 1]"),
            (not 0 <= self.black_level <= 255, "black_level must be in [0, 255]"),
            (self.min_shot_frames < 1, "min_shot_frames must be >= 1"),
        ) if bad]
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class Boundary:
    frame: int  # index of the first frame of the new shot (0-based, in decoding order)
    time: float  # its presentation time in seconds
    kind: Kind  # "cut", "fade" (through black) or "dissolve"


@dataclass
class _Frame:
    index: int
    time: float
    luma: np.ndarray  # (h, w) float32 small luma picture
    mean: float
    spread: float  # standard deviation
    step: float = 0.0  # mean |luma - previous luma|
    change: float = 0.0  # step * (1 - correlation with the previous frame)
    black: bool = False


@dataclass(frozen=True)
class Update:
    final: list[Boundary]  # boundaries that became final with this frame, in order
    proposed: list[int]  # frames of new candidate boundaries (the frame just pushed is inside their shot)
    horizon: float  # no boundary at or before this frame will come any more (inf after the last frame)


def _correlation(a: _Frame, b: _Frame) -> float:
    """Pearson correlation of two small frames, clipped to [0, 1] (0 when either is flat)."""
    if a.spread <= FLAT or b.spread <= FLAT:
        return 0.0
    r = (float(a.luma @ b.luma) / a.luma.size - a.mean * b.mean) / (a.spread * b.spread)
    return min(max(r, 0.0), 1.0)


class CutDetector:
    """Online boundary detection over small luma frames; see the module docstring.

    >>> detector = CutDetector(CutOptions(), fps=25.0)
    >>> for frame in reader.frames():
    ...     boundaries = detector.push(frame.index, frame.time, frame.luma()).final
    >>> boundaries = detector.finish().final
    """

    def __init__(self, options: CutOptions = CutOptions(), *, fps: float):
        self.opt = options
        self.window = max(2, int(round(options.dissolve_seconds * fps)))  # dissolve window in frames
        self._recent: deque[_Frame] = deque(maxlen=self.window + options.cut_window + 2)
        self._steps: deque[float] = deque(maxlen=self.window)  # the last window's steps
        self._pending: list[Boundary] = []  # candidates not final yet, in frame order
        self._proposed: list[int] = []
        self._last = -1  # frame of the last final boundary (-1: none)
        self._dark: list[tuple[int, float]] | None = None  # (index, time) of the open run of black frames
        self._faded = (-1, -1)  # frames covered by the last fade: no cut inside
        self._after_dark = -10**9  # index of the last black frame seen
        self._track: tuple[int, float] | None = None  # dissolve followed: (frame it ends at so far, its change)
        self._scratch = np.empty(0, np.float32)
        self.horizon = -1  # no boundary at or before this frame will be reported any more

    # -- per frame -------------------------------------------------------------------
    def push(self, index: int, time: float, luma: np.ndarray) -> Update:
        """Add the next decoded frame; returns what became final and what was proposed."""
        f = self._features(index, time, luma)
        self._recent.append(f)
        self._proposed = []
        self._blacks(f)
        if len(self._recent) > self.opt.cut_window:  # the frame cut_window back has all its neighbours
            self._judge_cut(len(self._recent) - 1 - self.opt.cut_window)
        self._dissolves(f)
        return Update(self._release(self._horizon(f.index)), self._proposed, self.horizon)

    def finish(self) -> Update:
        """The remaining boundaries once the last frame was pushed."""
        self._proposed = []
        if not self._recent:
            return Update([], [], float("inf"))
        for k in range(max(len(self._recent) - self.opt.cut_window, 1), len(self._recent)):
            self._judge_cut(k)  # the last frames, with the neighbours they have
        if self._track is not None:
            self._end_dissolve()
        end = self._recent[-1].index
        self._pending = [b for b in self._pending if end - b.frame + 1 >= self.opt.min_shot_frames]
        return Update(self._release(end), self._proposed, float("inf"))

    def _features(self, index: int, time: float, luma: np.ndarray) -> _Frame:
        small = luma.astype(np.float32).ravel()  # (h * w,)
        n = small.size
        mean = float(small.sum()) / n
        spread = float(np.sqrt(max(float(small @ small) / n - mean * mean, 0.0)))
        f = _Frame(index, time, small, mean, spread, black=mean < self.opt.black_level and spread < BLACK_SPREAD)
        if self._recent:
            p = self._recent[-1]
            f.step = self._distance(small, p.luma)
            f.change = f.step * (1.0 - _correlation(f, p))
        self._steps.append(f.step)
        return f

    # -- the three rules -------------------------------------------------------------
    def _judge_cut(self, k: int) -> None:
        """Hard cut at the k-th recent frame?"""
        f, w = self._recent[k], self.opt.cut_window
        if f.change < self.opt.cut_min_change or self._faded[0] <= f.index <= self._faded[1]:
            return
        around = [self._recent[j].change for j in range(max(k - w, 0), min(k + w + 1, len(self._recent))) if j != k]
        if f.index > 0 and f.change >= self.opt.cut_ratio * max(around + [FLAT]):
            if self._dark is None or f.index < self._dark[0][0] - 1:  # else the fade takes it
                self._propose(Boundary(f.index, f.time, "cut"))

    def _blacks(self, f: _Frame) -> None:
        """Runs of black frames between pictures: one fade boundary at their middle."""
        if f.black:
            self._after_dark = f.index
            if self._dark is None:
                self._dark = []
            self._dark.append((f.index, f.time))
            return
        run, self._dark = self._dark, None
        if run is None:
            return
        first, last = run[0][0], run[-1][0]
        self._faded = (first - 1, last + 1)  # no cut into or out of the black
        self._pending = [b for b in self._pending if not (b.kind == "cut" and first - 1 <= b.frame <= last + 1)]
        if first == 0:
            return  # the video starts black: a fade in, nothing to cut from
        middle = run[len(run) // 2]
        self._propose(Boundary(middle[0], middle[1], "fade"))

    def _dissolves(self, f: _Frame) -> None:
        """Follow a gradual change over the last window; a boundary when it stops growing."""
        change = self._gradual(f) if len(self._recent) > self.window else None
        if change is not None and (self._track is None or change >= self._track[1]):
            self._track = (f.index, change)
            return
        if self._track is not None and (change is None or change < 0.9 * self._track[1]
                                        or f.index - self._track[0] > self.opt.cut_window):
            self._end_dissolve()

    def _end_dissolve(self) -> None:
        end, _ = self._track
        self._track = None
        if self._after_dark < end - 2 * self.window:  # else it ran into black frames: a fade, found as one
            self._propose(self._middle(end))

    def _gradual(self, f: _Frame) -> float | None:
        """The change across the window ending at ``f`` if it looks like a dissolve, else None."""
        start = self._recent[-1 - self.window]
        path = sum(self._steps)
        if path < self.opt.dissolve_min_change or f.index - 2 * self.window <= self._after_dark:
            return None  # cheap test first: the change is never more than the steps' sum
        difference = self._distance(f.luma, start.luma)
        if difference < self.opt.dissolve_min_change or difference < self.opt.dissolve_monotony * path:
            return None
        if max(self._steps) >= SPIKE_SHARE * difference or start.index <= self._last:
            return None  # one step does most of it (a cut, a flash), or it spans a boundary
        change = difference * (1.0 - _correlation(f, start))  # not a brightness change (or a slow pan)
        return change if change >= self.opt.dissolve_min_change else None

    def _distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """Mean absolute difference of two small frames (into a reused buffer: this runs per frame)."""
        if self._scratch.shape != a.shape:
            self._scratch = np.empty_like(a)
        np.subtract(a, b, out=self._scratch)
        return float(np.abs(self._scratch, out=self._scratch).sum()) / a.size

    def _middle(self, end: int) -> Boundary:
        """The first frame of the window ending at frame ``end`` closer to its end than to its start."""
        last_pos = len(self._recent) - 1 - (self._recent[-1].index - end)
        first, last = self._recent[last_pos - self.window], self._recent[last_pos]
        for k in range(last_pos - self.window + 1, last_pos + 1):
            f = self._recent[k]
            if self._distance(f.luma, last.luma) <= self._distance(f.luma, first.luma):
                return Boundary(f.index, f.time, "dissolve")
        return Boundary(last.index, last.time, "dissolve")

    # -- ordering --------------------------------------------------------------------
    def _propose(self, b: Boundary) -> None:
        if b.frame <= self.horizon or any(p.frame == b.frame for p in self._pending):
            return
        self._pending.append(b)
        self._pending.sort(key=lambda p: p.frame)
        self._proposed.append(b.frame)

    def _horizon(self, newest: int) -> int:
        """The last frame no rule can still put a boundary at (or that a fade may still take)."""
        limits = [newest - self.opt.cut_window - 1, newest - self.window - 1]
        if self._dark is not None:  # its fade will be at its middle, at least this far in (no cut at its edges)
            limits.append(self._dark[0][0] + len(self._dark) // 2 - 1)
        if self._track is not None:
            limits.append(self._track[0] - self.window)
        return min(limits)

    def _release(self, horizon: int) -> list[Boundary]:
        self.horizon = max(self.horizon, horizon)
        final = []
        while self._pending and self._pending[0].frame <= self.horizon:
            b = self._pending.pop(0)
            if b.frame - max(self._last, 0) >= self.opt.min_shot_frames:
                final.append(b)
                self._last = b.frame
        return final
