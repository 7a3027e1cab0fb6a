"""Video tagging: :func:`tag_video` gives a :class:`VideoTags` (tags, shots, captions and a
searchable timeline) for one video; the ``tag-video`` command is :mod:`.cli`.

Importing this package loads neither OpenCV nor Ray.
"""
from .cli import OutputOptions, TagOptions, VideoError, VideoTooLong, process_video, tag_video
from .results import VideoTags

__all__ = ["OutputOptions", "TagOptions", "VideoError", "VideoTags", "VideoTooLong", "process_video", "tag_video"]
