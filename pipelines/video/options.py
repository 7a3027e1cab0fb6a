"""How a video is tagged: :class:`TagOptions`; how its tags are searched: :class:`SearchOptions`
(torch-free: ``tag-video`` builds its flags, plans and resumes a batch before it imports torch)."""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Mapping, get_args

from captioning.config import Decoding
from captioning.everyday import EverydayOptions

from .cuts import CutOptions

CUT_OPTIONS = tuple(f.name for f in dataclasses.fields(CutOptions))  # tag_video(..., cut_ratio=2.5) goes to cuts
Sort = Literal["time", "confidence"]  # orders of search results: by start time, or highest confidence first
SORTS: tuple[str, ...] = get_args(Sort)  # the same as a tuple, the first the default (VideoTags.search's sort)


@dataclass(frozen=True)
class TagOptions:
    """How a video is tagged: :func:`tag_video`'s options, ``tag-video``'s flags (made from these
    fields and their comments, and from :class:`CutOptions`' for ``cuts``) and the web UI's defaults."""
    fps: float | None = 1.0  # frames sampled per second (unused when sampling every N frames)
    every_n_frames: int | None = None  # sample frames 0, N, 2N... instead of by time (None: off)
    scene_threshold: float = 0.3  # cosine distance between shots' mean semantic vectors that keeps them one scene
    scene_span: int = 4  # a shot joins a scene when similar to one of this many shots before it
    tags: int = 5  # ImageNet labels (and as many everyday tags) kept per frame and per shot
    batch_size: int = 16  # frames per encoder pass (and keyframes per caption batch)
    decoding: Mapping[str, Any] = field(default_factory=dict)  # Decoding options over the bundle's recorded ones
    caption_every_frame: bool = False  # caption every sampled frame, not only one keyframe per shot
    blank_spread: float = 8.0  # a tagged frame whose small luma picture's standard deviation (0-255) is below this
    # is blank (black, grey, a flat colour, a fade's darkest frames): no tags, no caption, never a keyframe (0: off)
    cuts: CutOptions = CutOptions()  # the cut detector's parameters (pipelines.video.cuts)
    everyday: EverydayOptions = EverydayOptions()  # which everyday tags (as many as tags) shots and search get

    def __post_init__(self) -> None:
        problems = [why for bad, why in (
            (self.fps is None and self.every_n_frames is None, "fps or every_n_frames must be given"),
            (self.fps is not None and not self.fps > 0, "fps must be > 0"),
            (self.every_n_frames is not None and self.every_n_frames < 1, "every_n_frames must be >= 1"),
            (not 0 < self.scene_threshold <= 2, "scene_threshold must be in (0, 2]"),
            (self.scene_span < 1, "scene_span must be >= 1"),
            (self.tags < 1, "tags must be >= 1"),
            (self.batch_size < 1, "batch_size must be >= 1"),
            (not 0 <= self.blank_spread <= 255, "blank_spread must be in [0, 255]"),
            (not isinstance(self.cuts, CutOptions), "cuts must be a CutOptions"),
            (not isinstance(self.everyday, EverydayOptions), "everyday must be an EverydayOptions"),
        ) if bad] + Decoding.override_problems(self.decoding)
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def shot_threshold(self) -> float:
        """The old name of :attr:`scene_threshold` (shots were cut by semantic distance before
        issue #22), kept while the web UI still reads it."""
        return self.scene_threshold


@dataclass(frozen=True)
class SearchOptions:
    """How ``tag-video --query`` and the web UI's video search show the segments :meth:`VideoTags.search`
    finds (its own defaults show every one): ``tag-video``'s flags (``min_confidence`` is
    ``--min-hit-confidence``) and the UI's defaults."""
    min_confidence: float = 0.2  # a segment whose confidence is under this is not shown (0: every one); nearly half
    # of all hits are under 0.2 and 9 in 10 of those are wrong (precision 0.095; 0.22-0.66 above; docs/experiments.md)
    sort: Sort = "time"  # order of the segments found: time (by start) or confidence (highest first, then by start)

    def __post_init__(self) -> None:
        if not 0 <= self.min_confidence <= 1:
            raise ValueError(f"min_confidence must be in [0, 1], not {self.min_confidence!r}")
        if self.sort not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}, not {self.sort!r}")


def recorded_options(options: TagOptions, decoding: Decoding) -> dict[str, Any]:
    """The options a result records (its JSON's ``options``): all but the batch size, with the
    whole decoding in effect (``decoding``, the bundle's recorded one, under ``options.decoding``)."""
    recorded = {k: v for k, v in asdict(options).items() if k not in ("batch_size", "decoding")}
    return {**recorded, **decoding.replace(**options.decoding).asdict()}
