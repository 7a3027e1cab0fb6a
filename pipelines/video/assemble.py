""":class:`VideoTags` from what one pass over a video gathered: the tagged frames' encoder
outputs, the shots (their boundaries and keyframes) and the keyframe captions."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from captioning.results import CaptionResult, Tag
from captioning.everyday import EverydayOptions, everyday_tags

from .aggregate import (build_index, caption_confidence, confidence_kind, everyday_labels, summary_tags, top_labels,
                        weighted_mean, word_tags)
from .cuts import Boundary
from .io import VideoInfo
from .results import FrameTags, Scene, Shot, Summary, VideoMeta, VideoTags
from .shots import RawShot, frame_spans, group_scenes, most_central
from .timecode import is_drop_frame, nominal_rate, timecode


@dataclass(frozen=True)
class Tagged:
    """What the encoder said about the tagged frames, in frame order (F frames)."""
    indices: np.ndarray  # (F,) frame numbers
    times: np.ndarray  # (F,) presentation times
    sampled: np.ndarray  # (F,) bool: a sample (False: a shot's first frames)
    tags: list[tuple[Tag, ...]]  # top-k ImageNet labels per frame
    vectors: np.ndarray  # (F, D) unit semantic vectors
    probs: np.ndarray  # (F, 1000) ImageNet probabilities
    captions: list[CaptionResult | None] | None  # per frame, with caption_every_frame (None: a blank frame)
    blank: np.ndarray | None = None  # (F,) bool: near-uniform frames, no tags nor caption (None: none is)


@dataclass(frozen=True)
class Stream:
    """What the reader saw."""
    info: VideoInfo  # the container's facts
    duration: float  # end of the last frame decoded
    frames_decoded: int  # frames decoded
    errors: tuple[str, ...]  # problems met (partial results)


def assemble(stream: Stream, tagged: Tagged, shots: list[tuple[Boundary | None, RawShot]],
             captions: list[CaptionResult | None], *, k: int, scene_threshold: float, scene_span: int,
             sampled_fps: float | None, extra: dict[str, Any], everyday: EverydayOptions = EverydayOptions()
             ) -> VideoTags:
    """The result of one video; ``shots`` in order, each with the boundary it starts at (None
    for the first) and ``captions[i]`` its keyframe's caption (None: a blank shot); ``extra``: model,
    options, timings; ``everyday``: which everyday tags (k of them) the shots, the summary and the
    index get. Blank frames (``tagged.blank``) count for no tag, caption word or keyframe."""
    rate = nominal_rate(stream.info.rate)
    tc = lambda t: timecode(t, rate)  # noqa: E731
    duration = max(stream.duration, float(tagged.times[-1]))
    starts = [float(tagged.times[0]) if b is None else b.time for b, _ in shots]
    frames_at = [0 if b is None else b.frame for b, _ in shots] + [stream.frames_decoded]
    bounds = np.array(starts + [duration])  # (S + 1,)
    shot_of = np.concatenate([np.full(raw.stop - raw.first, n) for n, (_, raw) in enumerate(shots)])  # (F,)
    span_starts, span_ends = frame_spans(tagged.times, shot_of, bounds)
    blank = np.zeros(len(tagged.times), bool) if tagged.blank is None else tagged.blank  # (F,)
    weights = (span_ends - span_starts) * ~blank  # the time each frame stands for in tags: none when blank
    seen = [np.flatnonzero(~blank[raw.first:raw.stop]) + raw.first for _, raw in shots]  # each shot's non-blank
    means = np.stack([tagged.vectors[own if len(own) else slice(raw.first, raw.stop)].mean(0)
                      for own, (_, raw) in zip(seen, shots)])  # (S, D)
    scenes = group_scenes(means, threshold=scene_threshold, span=scene_span)
    scene_of = {s: n for n, members in enumerate(scenes) for s in members}
    frames = [FrameTags(int(i), float(t), tc(t), int(shot_of[p]), bool(tagged.sampled[p]), tuple(tagged.tags[p]),
                        tagged.captions[p].text if tagged.captions and tagged.captions[p] else None, bool(blank[p]))
              for p, (i, t) in enumerate(zip(tagged.indices, tagged.times))]
    frame_words = [[] if b else words for b, words in zip(blank, everyday_tags(tagged.probs, k=k, options=everyday))]
    shot_list = []
    for n, ((b, raw), caption, own) in enumerate(zip(shots, captions, seen)):
        key = frames[raw.keyframe]
        said = [c for c in ([tagged.captions[p] for p in own] if tagged.captions else [caption]) if c is not None]
        labels = []
        if len(own):
            mean = tagged.probs[own].mean(0)
            labels = top_labels(mean, [frames[p].tags for p in own], k)
            labels += everyday_labels(mean, [frame_words[p] for p in own], k, everyday)
        shot_list.append(Shot(n, scene_of[n], float(bounds[n]), float(bounds[n + 1]), frames_at[n], frames_at[n + 1],
                              tc(bounds[n]), tc(bounds[n + 1]), None if b is None else b.kind, raw.stop - raw.first,
                              key.index, key.time, None if caption is None else caption.text,
                              None if caption is None else caption_confidence(caption),
                              tuple(labels + word_tags(said)), not len(own)))
    scene_list = [_scene(n, members, shots, shot_list, tagged, weights, frames, k) for n, members in enumerate(scenes)]
    v = stream.info
    width, height = v.display_size
    meta = VideoMeta(v.path, duration, float(tagged.times[0]), v.fps, v.frame_count, stream.frames_decoded,
                     width, height, v.width, v.height, f"{v.sample_aspect.numerator}:{v.sample_aspect.denominator}",
                     v.rotation, str(rate), is_drop_frame(rate), sampled_fps, len(frames))
    summary = Summary(duration, len(shot_list), len(scene_list),
                      tuple(summary_tags(frames, shot_list, tagged.probs, weights, duration, frame_words, everyday)))
    index = build_index(frames, shot_list, span_starts, span_ends, tagged.captions, frame_words)
    kind = confidence_kind([*captions, *(tagged.captions or [])])
    return VideoTags(meta, tuple(frames), tuple(shot_list), tuple(scene_list), summary, index,
                     bool(stream.errors), stream.errors, **extra, confidence_kind=kind)


def _scene(n: int, members: list[int], shots: list[tuple[Boundary | None, RawShot]], shot_list: list[Shot],
           tagged: Tagged, weights: np.ndarray, frames: list[FrameTags], k: int) -> Scene:
    """Scene ``n`` of the shots ``members``: its keyframe is the shot keyframe closest to the scene's mean vector."""
    first, last = shot_list[members[0]], shot_list[members[-1]]
    lo, hi = shots[members[0]][1].first, shots[members[-1]][1].stop
    pictured = [s for s in members if not shot_list[s].blank] or members  # blank shots only if all are
    own = np.concatenate([np.arange(shots[s][1].first, shots[s][1].stop) for s in pictured])
    centre = tagged.vectors[own].mean(0)
    best = most_central(pictured, lambda s: float(tagged.vectors[shots[s][1].keyframe] @ centre))
    labels = top_labels(weighted_mean(tagged.probs[lo:hi], weights[lo:hi]), [f.tags for f in frames[lo:hi]], k) \
        if weights[lo:hi].sum() > 0 else []
    return Scene(n, first.start, last.end, first.start_frame, last.end_frame, first.start_timecode,
                 last.end_timecode, members[0], len(members), shot_list[best].keyframe_index,
                 shot_list[best].keyframe_time, shot_list[best].caption, tuple(labels))
