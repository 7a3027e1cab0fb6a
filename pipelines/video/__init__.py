"""Video tagging: :func:`tag_video` turns one video into a :class:`VideoTags` (frame-exact shots,
scenes, tags, captions and a searchable timeline); ``tag-video`` (:mod:`.cli`) does it for many.

Every frame is decoded (PyAV) and a cheap content signal on its small luma picture finds the
shot boundaries at the exact frame: hard cuts, fades through black and dissolves, not flashes
or camera motion (:mod:`.cuts`). Frames are sampled (``fps``, default 1, or ``every_n_frames``)
with their true timestamps, plus a shot's first frames when no sample falls in it, and encoded
in batches: one encoder pass gives each frame its top-k ImageNet labels and its semantic vector;
a near-uniform frame (black, grey, a flat colour: ``blank_spread``) is blank, with no tags or caption.
The vectors pick each shot's keyframe (the frame closest to the shot's mean vector), which is
captioned, and join similar shots into scenes (``scene_threshold``). Shot tags are the labels
averaged over the shot plus the content words of the caption; a tag index (tag -> time
segments) makes the video searchable (``tag-video --query``, :meth:`VideoTags.search`).

Modules: ``io`` (the only reader of video files), ``cuts`` (the boundary detector), ``scan``
(one pass: detection on every frame, the frames to encode), ``tagger`` (:func:`tag_video`),
``shots`` (keyframes, scenes), ``aggregate`` (tags over shots, scenes, the video; the index),
``assemble`` (the :class:`VideoTags`), ``timecode`` (SMPTE timecodes), ``words`` (caption
words, query matching), ``results`` (:class:`VideoTags` and its JSON layout), ``export`` (which
files: CSV, JSON, thumbnails), ``subtitles`` (SRT, WebVTT, chapters), ``editors`` (EDL, OTIO),
``report`` (HTML), ``timeline`` (the web UI's picture of the shots on a time axis),
``writing`` (atomic, never over a file tag-video did not write),
``layout`` (a folder per video under ``--out``), ``runs`` (what a run records for the next to
resume), ``job`` (one video tagged and written: what both engines run), ``ray`` (videos over
Ray actors), ``batch`` (which videos, the engines, progress bars), ``cli``.
Importing them loads neither PyAV, OpenCV, OpenTimelineIO nor Ray.

Python API::

    from captioning import Captioner
    from pipelines import tag_video
    tags = tag_video("clip.mp4", Captioner.load(), fps=1.0)
    tags.shots[0].start_frame, tags.shots[0].caption, tags.scenes, tags.search("dog"), tags.to_json()
"""
from typing import Any

from .cuts import CutOptions
from .export import OutputOptions
from .io import VideoError
from .options import SearchOptions, TagOptions
from .results import VideoTags
from .scan import VideoTooLong

__all__ = ["CutOptions", "OutputOptions", "SearchOptions", "TagOptions", "VideoError", "VideoTags", "VideoTooLong",
           "tag_video"]


def __getattr__(name: str) -> Any:
    """``tag_video`` on first use: its module imports torch (PEP 562)."""
    if name == "tag_video":
        from .tagger import tag_video

        return tag_video
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
