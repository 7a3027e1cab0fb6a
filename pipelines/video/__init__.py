"""Video tagging: :func:`tag_video` turns one video into a :class:`VideoTags` (tags, shots,
captions and a searchable timeline); ``tag-video`` (:mod:`.cli`) does it for many.

Frames are sampled (``fps``, default 1, or ``every_n_frames``) with their true timestamps
and encoded in batches: one encoder pass gives each frame its top-k ImageNet labels and its
semantic vector. The same vectors detect shots (cosine distance between consecutive
samples above ``shot_threshold``, shots shorter than ``min_shot_seconds`` merged) and pick
each shot's keyframe (the frame closest to the shot's mean vector), which is captioned.
Shot tags are the labels averaged over the shot plus the content words of the caption; a
tag index (tag -> time segments) makes the video searchable (``tag-video --query``,
:meth:`VideoTags.search`).

Modules: ``io`` (the only reader of video files), ``tagger`` (:func:`tag_video`),
``shots`` (cuts, keyframes, tag aggregation, the index), ``words`` (caption words, query
matching), ``results`` (:class:`VideoTags` and its JSON layout), ``export`` (CSV, SRT,
WebVTT, thumbnails), ``job`` (one video tagged and written: what both engines run),
``ray`` (videos over Ray actors), ``cli``. Importing them loads neither OpenCV nor Ray.

Python API::

    from captioning import Captioner
    from pipelines import tag_video
    tags = tag_video("clip.mp4", Captioner.load(), fps=1.0)
    tags.shots[0].caption, tags.search("dog"), tags.to_json()
"""
from .export import OutputOptions
from .io import VideoError
from .results import VideoTags
from .tagger import TagOptions, VideoTooLong, tag_video

__all__ = ["OutputOptions", "TagOptions", "VideoError", "VideoTags", "VideoTooLong", "tag_video"]
