"""Results of video tagging: dataclasses, their JSON form, and search.

JSON schema (``format_version`` 4), written by ``tag-video --formats json`` and
``VideoTags.to_json()``. Times are seconds on the player's clock (time 0 = the start of the
file, see :mod:`pipelines.video.io`), frame numbers count decoded frames from 0, timecodes are
``HH:MM:SS:FF`` at ``video.timecode_rate`` (``HH:MM:SS;FF`` drop-frame at 29.97 and 59.94 fps,
see :mod:`pipelines.video.timecode`); probabilities and confidences are in 0..1; floats are
rounded to 4 decimals::

    {
      "format_version": 4,                  # bumped on incompatible changes (2: frame-exact shots,
                                            # scenes, timecodes, display size; 3: blank frames and
                                            # shots, null captions; 4: caption_confidence may be
                                            # calibrated, confidence_kind says which)
      "video": {"path",
                "duration",                 # end of the last frame decoded (its time + its duration)
                "start",                    # time of the first frame (0 unless the video starts late)
                "fps", "frame_count",       # as the container reports them (0 = unknown)
                "frames_decoded",           # frames actually decoded
                "width", "height",          # the picture as shown (display aspect, rotation applied)
                "stored_width", "stored_height",   # pixels as coded in the stream
                "sample_aspect_ratio",      # "16:11" for PAL 16:9; "1:1" square pixels
                "rotation",                 # degrees counter-clockwise applied for display
                "timecode_rate", "drop_frame",     # "30000/1001", true: the timecodes' rate and kind
                "sampled_fps",              # samples per second requested (null with every_n_frames)
                "sampled_frames"},          # frames tagged (samples + shot first frames)
      "model": {"name", "version"},         # the caption bundle used
      "options": {...},                     # fps, every_n_frames, scene_threshold, scene_span, tags,
                                            # caption_every_frame, blank_spread, cuts: {the cut detector's options},
                                            # everyday: {min_tag_probability, exclude_tags},
                                            # and the decoding in effect: beam_size, max_length,
                                            # min_length, length_penalty, no_repeat_ngram_size,
                                            # no_repeat_words, no_dangling_end
      "partial": false,                     # true when part of the video could not be read
      "errors": ["..."],                    # what went wrong (empty when not partial)
      "summary": {"duration", "shot_count", "scene_count",
                  "tags": [{"label", "probability", "frames", "source"}]},
                                            # top ImageNet labels over the whole video (probability =
                                            # time-weighted mean), top everyday tags (the same rolled
                                            # up, captioning.everyday), then top caption words
      "scenes": [{"index", "start", "end", "start_frame", "end_frame", "start_timecode", "end_timecode",
                  "first_shot", "shot_count",
                  "keyframe_index", "keyframe_time",   # the shot keyframe most central to the scene
                  "caption",                # that keyframe's caption (null: every shot of the scene is blank)
                  "tags": [{"label", "probability", "frames", "source"}]}],   # ImageNet, time-weighted
      "shots": [{"index", "scene",
                 "start", "end",            # contiguous, non-overlapping, cover [video.start, duration]
                 "start_frame", "end_frame",  # end_frame: one past the last frame (= next start_frame)
                 "start_timecode", "end_timecode",
                 "transition",              # how the shot begins: "cut", "fade" (through black, the
                                            # boundary in the middle of the black), "dissolve" (at its
                                            # middle); null for the first shot
                 "frames",                  # tagged frames in the shot
                 "keyframe_index", "keyframe_time",   # frame the caption describes (never a blank one
                                            # unless the shot is blank: then its first tagged frame)
                 "caption", "caption_confidence",     # as confidence_kind says: the calibrated
                                            # probability that the caption is good, or the
                                            # geometric-mean word probability (both null for a
                                            # blank shot)
                 "tags": [{"label", "probability", "frames", "source"}],
                                            # (over the shot's frames that are not blank)
                 "blank"}],                 # true: every tagged frame of the shot is blank, so it
                                            # has no caption and no tags
                                            # source "imagenet": mean probability over the shot's
                                            # frames, frames = frames with the label in their top-k;
                                            # source "everyday": the same rolled up into an everyday
                                            # word ("dog"), frames = frames with it in their top-k;
                                            # source "caption": a content word of the caption,
                                            # probability = caption confidence
      "frames": [{"index", "time", "timecode", "shot",
                  "sampled",                # false: a shot's first frames, tagged because no sample
                                            # falls in that shot
                  "tags": [{"label", "probability"}],   # top-k ImageNet labels ([] when blank)
                  "caption",                # null unless every frame is captioned (and when blank)
                  "blank"}],                # near-uniform (black, grey, a flat colour, a fade's
                                            # darkest frames: its small luma picture's standard
                                            # deviation under options.blank_spread): no tags, no
                                            # caption, not in the index, the summary or a keyframe
      "index": {"<tag>": [{"start", "end", "confidence"}]},
                                            # where each ImageNet label / everyday word (from a summed
                                            # probability of 0.1) / caption word (lower-case, singular)
                                            # is seen, in time order; each tagged frame
                                            # stands for the time of its shot nearest to it;
                                            # confidence = the time-weighted mean probability
                                            # (words: caption confidence)
      "timings": {"decode", "encode", "caption", "total"},  # seconds spent (decode: decoding every
                                            # frame, cut detection and converting the tagged ones)
      "confidence_kind": "calibrated"       # what every caption confidence above (shots, caption
                                            # words' probability, their index confidence) is:
                                            # "calibrated" (the bundle's calibration, beam >= 2,
                                            # captioning.confidence: the probability that the caption
                                            # is good) or "word_probability" (the geometric-mean word
                                            # probability; files of format 2 and 3 are all this)
    }
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

from captioning.results import Tag

from .options import SORTS, SearchOptions  # SORTS: others import it from here too
from .words import matches, synonym_targets

FORMAT_VERSION = 4
READ_VERSIONS = (2, 3, 4)  # format_version from_dict reads (2: as 3 with no frame blank; 2, 3: word_probability)
CALIBRATED, WORD_PROBABILITY = "calibrated", "word_probability"  # the kinds of caption confidence
BLANK = "blank (black, grey or one flat colour): not captioned"  # a blank shot's caption as the report and UI show it
_DIGITS = 4  # decimals kept for floats in the JSON


@dataclass(frozen=True)
class Segment:
    start: float  # seconds
    end: float  # seconds (> start)
    confidence: float  # mean probability of the tag over the segment (caption words: caption confidence)
    labels: tuple[str, ...] = ()  # the tags that matched (search results only)


@dataclass(frozen=True)
class ShotTag:
    label: str  # ImageNet class name, everyday word ("dog", captioning.everyday) or a content word of the caption
    probability: float  # mean probability over the frames (caption words: the caption's confidence)
    frames: int  # frames with the label in their top-k (caption words: captioned frames using it)
    source: str = "imagenet"  # "imagenet", "everyday" or "caption"


@dataclass(frozen=True)
class FrameTags:
    index: int  # 0-based frame number in the decoded stream
    time: float  # presentation time in seconds
    timecode: str  # HH:MM:SS:FF of the time
    shot: int  # index of the shot the frame belongs to
    sampled: bool  # False: a shot's first frames, tagged because no sample falls in the shot
    tags: tuple[Tag, ...]  # top-k ImageNet labels, most probable first
    caption: str | None = None  # caption of this frame (only with caption_every_frame; None when blank)
    blank: bool = False  # near-uniform (black, grey, flat colour): no tags, no caption


@dataclass(frozen=True)
class Shot:
    index: int  # 0-based shot number
    scene: int  # index of the scene it belongs to
    start: float  # seconds: its first frame's time (the first shot: the video's first frame)
    end: float  # seconds: the next shot's start; the last shot ends at the video's duration
    start_frame: int  # frame number of its first frame
    end_frame: int  # one past its last frame (the next shot's start_frame; the last: frames decoded)
    start_timecode: str  # HH:MM:SS:FF of start
    end_timecode: str  # HH:MM:SS:FF of end
    transition: str | None  # how it begins: "cut", "fade" or "dissolve" (None: the first shot)
    frames: int  # number of tagged frames in the shot
    keyframe_index: int  # frame number of the keyframe (the frame most central in semantic space)
    keyframe_time: float  # its time in seconds
    caption: str | None  # caption of the keyframe (None: a blank shot)
    caption_confidence: float | None  # the caption's calibrated confidence, or with a bundle without calibration
    #                                   (or beam 1) its geometric-mean word probability: VideoTags.confidence_kind
    #                                   says which (None: a blank shot)
    tags: tuple[ShotTag, ...]  # ImageNet labels aggregated over the shot, everyday tags, then caption words
    blank: bool = False  # every tagged frame is blank: no caption, no tags


@dataclass(frozen=True)
class Scene:
    index: int  # 0-based scene number
    start: float  # seconds: its first shot's start
    end: float  # seconds: its last shot's end
    start_frame: int  # frame number of its first frame
    end_frame: int  # one past its last frame
    start_timecode: str  # HH:MM:SS:FF of start
    end_timecode: str  # HH:MM:SS:FF of end
    first_shot: int  # index of its first shot
    shot_count: int  # number of shots
    keyframe_index: int  # the shot keyframe closest to the scene's mean vector
    keyframe_time: float  # its time in seconds
    caption: str | None  # that keyframe's caption (None: every shot of the scene is blank)
    tags: tuple[ShotTag, ...]  # ImageNet labels over the scene's frames (time-weighted mean probability)


@dataclass(frozen=True)
class VideoMeta:
    path: str  # the video file as given
    duration: float  # seconds: end of the last frame decoded
    start: float  # time of the first frame
    fps: float  # container frame rate (0 = unknown)
    frame_count: int  # container frame count (0 = unknown)
    frames_decoded: int  # frames decoded
    width: int  # pixels of the picture as shown (display aspect ratio and rotation applied)
    height: int  # pixels
    stored_width: int  # pixels as coded in the stream
    stored_height: int  # pixels as coded in the stream
    sample_aspect_ratio: str  # width:height of a stored pixel ("1:1": square)
    rotation: int  # degrees counter-clockwise applied for display
    timecode_rate: str  # nominal frame rate of the timecodes, e.g. "30000/1001"
    drop_frame: bool  # the timecodes are drop-frame (HH:MM:SS;FF)
    sampled_fps: float | None  # requested samples per second (None when sampling every N frames)
    sampled_frames: int  # frames tagged


@dataclass(frozen=True)
class Summary:
    duration: float  # seconds
    shot_count: int  # number of shots
    scene_count: int  # number of scenes
    tags: tuple[ShotTag, ...]  # top ImageNet labels (time-weighted mean probability), everyday tags, caption words


@dataclass(frozen=True)
class VideoTags:
    video: VideoMeta  # what was read
    frames: tuple[FrameTags, ...]  # every tagged frame, in time order
    shots: tuple[Shot, ...]  # shots in time order
    scenes: tuple[Scene, ...]  # scenes (runs of similar shots) in time order
    summary: Summary  # video-level overview
    index: dict[str, tuple[Segment, ...]]  # tag -> where it is seen, in time order
    partial: bool = False  # True when part of the video could not be read
    errors: tuple[str, ...] = ()  # what went wrong
    model: dict[str, str] = field(default_factory=dict)  # bundle name and version
    options: dict[str, Any] = field(default_factory=dict)  # tagging options used
    timings: dict[str, float] = field(default_factory=dict)  # seconds: decode, encode, caption, total
    confidence_kind: str = WORD_PROBABILITY  # what caption confidences are: CALIBRATED or WORD_PROBABILITY
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
        if d.get("format_version") not in READ_VERSIONS:
            raise ValueError(f"format_version {d.get('format_version')!r} is not supported (expected {FORMAT_VERSION})")
        shot_tags = lambda items: tuple(ShotTag(**t) for t in items)  # noqa: E731
        return cls(
            video=VideoMeta(**d["video"]),
            frames=tuple(FrameTags(**{**f, "tags": tuple(Tag(**t) for t in f["tags"])}) for f in d["frames"]),
            shots=tuple(Shot(**{**s, "tags": shot_tags(s["tags"])}) for s in d["shots"]),
            scenes=tuple(Scene(**{**s, "tags": shot_tags(s["tags"])}) for s in d["scenes"]),
            summary=Summary(**{**d["summary"], "tags": shot_tags(d["summary"]["tags"])}),
            index={k: tuple(Segment(**s) for s in v) for k, v in d["index"].items()},
            partial=d.get("partial", False), errors=tuple(d.get("errors", ())), model=d.get("model", {}),
            options=d.get("options", {}), timings=d.get("timings", {}),
            confidence_kind=d.get("confidence_kind", WORD_PROBABILITY))

    def search(self, query: str, *, min_confidence: float = 0.0, sort: str = "time") -> list[Segment]:
        """Segments where a tag matching ``query`` is seen, merged when they touch or overlap, in
        ``sort`` order (:data:`SORTS`: "time", or "confidence": highest first, then by time), leaving
        out a tag's segments whose confidence is under ``min_confidence`` (0: none left out; the CLI and
        the web UI pass :class:`~pipelines.video.options.SearchOptions`' minimum).

        Case-insensitive; matches ImageNet labels, everyday words ("dog" for every breed) and caption
        words, whole label or every query word among the label's words (so "cat" finds "tiger cat");
        plurals fold ("dogs" = "dog"); a synonym of an everyday word finds that word ("puppy",
        "doggy", "hound": "dog"; "automobile": "car"; :func:`pipelines.video.words.synonym_targets`).
        """
        if sort not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
        also = synonym_targets(query)
        hits = [Segment(s.start, s.end, s.confidence, (label,))
                for label, segments in self.index.items() if matches(label, query) or label in also
                for s in segments if s.confidence >= min_confidence]
        merged = merge_segments(hits)
        return sorted(merged, key=lambda s: (-s.confidence, s.start)) if sort == "confidence" else merged


def shown_segments(tags: VideoTags, query: str, options: SearchOptions) -> tuple[list[Segment], int]:
    """What ``tag-video --query`` and the web UI show for ``query`` (``options``' minimum and order) and,
    when that is nothing, how many segments the minimum hid (0 otherwise)."""
    hits = tags.search(query, min_confidence=options.min_confidence, sort=options.sort)
    return hits, 0 if hits else len(tags.search(query))


def no_matches(query: str, path: str, *, hidden: int = 0, threshold: str = "") -> str:
    """What the CLI and the web UI say when ``query`` finds nothing to show in the video at ``path``;
    with ``hidden`` segments found under the minimum confidence, how many, and ``threshold``, how
    the tool words that minimum: ``no matches for 'dog' in clip.mp4 (3 under --min-hit-confidence 0.2)``."""
    line = f"no matches for {query.strip()!r} in {path}"
    return f"{line} ({hidden} {threshold})" if hidden else line


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
