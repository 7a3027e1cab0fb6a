"""Results of video tagging: dataclasses, their JSON form, and search.

JSON schema (``format_version`` 1), written by ``tag-video --formats json`` and
``VideoTags.to_json()``; times are seconds from the start of the video, probabilities and
confidences are in 0..1, floats are rounded to 4 decimals::

    {
      "format_version": 1,                  # bumped on incompatible changes
      "video": {"path", "duration",         # duration: seconds actually decoded (container's if seeking)
                "fps", "frame_count",       # as the container reports them (0 = unknown)
                "width", "height",
                "sampled_fps",              # samples per second requested (null with every_n_frames)
                "sampled_frames"},          # number of frames tagged
      "model": {"name", "version"},         # the caption bundle used
      "options": {...},                     # fps, every_n_frames, shot_threshold, min_shot_seconds,
                                            # tags, caption_every_frame, and the decoding in effect:
                                            # beam_size, max_length, min_length, length_penalty,
                                            # no_repeat_ngram_size, no_repeat_words, no_dangling_end
      "partial": false,                     # true when part of the video could not be read
      "errors": ["..."],                    # what went wrong (empty when not partial)
      "summary": {"duration", "shot_count",
                  "tags": [{"label", "probability", "frames", "source"}]},
                                            # top ImageNet labels over the whole video (probability =
                                            # time-weighted mean) then top caption words
      "shots": [{"index", "start", "end",   # contiguous, non-overlapping, cover [0, duration]
                 "frames",                  # sampled frames in the shot
                 "keyframe_index", "keyframe_time",   # frame the caption describes
                 "caption", "caption_confidence",     # geometric-mean word probability
                 "tags": [{"label", "probability", "frames", "source"}]}],
                                            # source "imagenet": mean probability over the shot's
                                            # frames, frames = frames with the label in their top-k;
                                            # source "caption": a content word of the caption,
                                            # probability = caption confidence
      "frames": [{"index", "time", "shot",  # index: 0-based number among the decoded frames
                  "tags": [{"label", "probability"}],   # top-k ImageNet labels
                  "caption"}],              # null unless every frame is captioned
      "index": {"<tag>": [{"start", "end", "confidence"}]},
                                            # where each ImageNet label / caption word (lower-case,
                                            # singular) is seen, in time order; each sampled frame
                                            # stands for the time nearest to it; confidence = the
                                            # time-weighted mean probability (words: caption confidence)
      "timings": {"decode", "encode", "caption", "total"}   # seconds spent
    }
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

from captioning.api import Tag

from .words import matches

FORMAT_VERSION = 1
_DIGITS = 4  # decimals kept for floats in the JSON


@dataclass(frozen=True)
class Segment:
    start: float  # seconds
    end: float  # seconds (> start)
    confidence: float  # mean probability of the tag over the segment (caption words: caption confidence)
    labels: tuple[str, ...] = ()  # the tags that matched (search results only)


@dataclass(frozen=True)
class ShotTag:
    label: str  # ImageNet class name, or a content word of the caption
    probability: float  # mean probability over the frames (caption words: the caption's confidence)
    frames: int  # frames with the label in their top-k (caption words: captioned frames using it)
    source: str = "imagenet"  # "imagenet" or "caption"


@dataclass(frozen=True)
class FrameTags:
    index: int  # 0-based frame number in the decoded stream
    time: float  # presentation time in seconds
    tags: tuple[Tag, ...]  # top-k ImageNet labels, most probable first
    shot: int = 0  # index of the shot the frame belongs to
    caption: str | None = None  # caption of this frame (only with caption_every_frame)


@dataclass(frozen=True)
class Shot:
    index: int  # 0-based shot number
    start: float  # seconds; the first shot starts at 0
    end: float  # seconds; equals the next shot's start, the last shot ends at the duration
    frames: int  # number of sampled frames in the shot
    keyframe_index: int  # frame number of the keyframe (the frame most central in semantic space)
    keyframe_time: float  # its time in seconds
    caption: str  # caption of the keyframe
    caption_confidence: float  # geometric-mean word probability of the caption
    tags: tuple[ShotTag, ...]  # ImageNet labels aggregated over the shot, then caption words


@dataclass(frozen=True)
class VideoMeta:
    path: str  # the video file as given
    duration: float  # seconds
    fps: float  # container frame rate (0 = unknown)
    frame_count: int  # container frame count (0 = unknown)
    width: int  # pixels
    height: int  # pixels
    sampled_fps: float | None  # requested samples per second (None when sampling every N frames)
    sampled_frames: int  # frames tagged


@dataclass(frozen=True)
class Summary:
    duration: float  # seconds
    shot_count: int  # number of shots
    tags: tuple[ShotTag, ...]  # top ImageNet labels (time-weighted mean probability), then caption words


@dataclass(frozen=True)
class VideoTags:
    video: VideoMeta  # what was read
    frames: tuple[FrameTags, ...]  # every sampled frame, in time order
    shots: tuple[Shot, ...]  # shots in time order
    summary: Summary  # video-level overview
    index: dict[str, tuple[Segment, ...]]  # tag -> where it is seen, in time order
    partial: bool = False  # True when part of the video could not be read
    errors: tuple[str, ...] = ()  # what went wrong
    model: dict[str, str] = field(default_factory=dict)  # bundle name and version
    options: dict[str, Any] = field(default_factory=dict)  # tagging options used
    timings: dict[str, float] = field(default_factory=dict)  # seconds: decode, encode, caption, total
    format_version: int = FORMAT_VERSION  # version of the JSON layout (see the module docstring)

    def to_dict(self) -> dict[str, Any]:
        out = {"format_version": self.format_version}
        for f in fields(self):
            if f.name == "index":
                out["index"] = {k: [_segment_dict(s) for s in v] for k, v in self.index.items()}
            elif f.name != "format_version":
                out[f.name] = _plain(getattr(self, f.name))
        return out

    def to_json(self, *, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VideoTags":
        if d.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format_version {d.get('format_version')!r} is not supported (expected {FORMAT_VERSION})")
        shot_tags = lambda items: tuple(ShotTag(**t) for t in items)  # noqa: E731
        return cls(
            video=VideoMeta(**d["video"]),
            frames=tuple(FrameTags(f["index"], f["time"], tuple(Tag(**t) for t in f["tags"]), f["shot"],
                                   f.get("caption")) for f in d["frames"]),
            shots=tuple(Shot(**{**s, "tags": shot_tags(s["tags"])}) for s in d["shots"]),
            summary=Summary(d["summary"]["duration"], d["summary"]["shot_count"], shot_tags(d["summary"]["tags"])),
            index={k: tuple(Segment(**s) for s in v) for k, v in d["index"].items()},
            partial=d.get("partial", False), errors=tuple(d.get("errors", ())), model=d.get("model", {}),
            options=d.get("options", {}), timings=d.get("timings", {}))

    def search(self, query: str, *, min_confidence: float = 0.0) -> list[Segment]:
        """Segments where a tag matching ``query`` is seen, merged when they touch or overlap.

        Case-insensitive; matches ImageNet labels and caption words, whole label or every query
        word among the label's words (so "cat" finds "tiger cat"); plurals fold ("dogs" = "dog").
        """
        hits = [Segment(s.start, s.end, s.confidence, (label,))
                for label, segments in self.index.items() if matches(label, query)
                for s in segments if s.confidence >= min_confidence]
        return merge_segments(hits)


def merge_segments(segments: list[Segment], *, gap: float = 1e-3) -> list[Segment]:
    """Sort and merge segments that overlap or are less than ``gap`` apart; the merged
    confidence is the highest one, labels are united."""
    merged: list[Segment] = []
    for s in sorted(segments, key=lambda s: (s.start, s.end)):
        if merged and s.start <= merged[-1].end + gap:
            last = merged[-1]
            labels = last.labels + tuple(x for x in s.labels if x not in last.labels)
            merged[-1] = Segment(last.start, max(last.end, s.end), max(last.confidence, s.confidence), labels)
        else:
            merged.append(s)
    return merged


def _segment_dict(s: Segment) -> dict[str, float]:
    return {"start": round(s.start, _DIGITS), "end": round(s.end, _DIGITS), "confidence": round(s.confidence, _DIGITS)}


def _plain(value: Any) -> Any:
    """Dataclasses/tuples -> dicts/lists with floats rounded, for JSON."""
    if is_dataclass(value):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return round(value, _DIGITS)
    return value
