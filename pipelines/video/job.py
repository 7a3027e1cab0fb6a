"""One video start to finish, the job both engines of ``tag-video`` run (the local loop and
each Ray actor), so their results are the same: tag it, write its files, or say in one line
why it failed."""
from __future__ import annotations

import os
from typing import Any, Callable

from .export import OutputOptions, write_outputs
from .io import VideoError
from .results import VideoTags
from .tagger import TagOptions, tag_video


def process_video(path: str | os.PathLike, stem: str, captioner: Any, options: TagOptions, output: OutputOptions,
                  progress: Callable[[int, float], None] | None = None) -> VideoTags:
    """Tag one video and write its output files (``stem``: their name without extension)."""
    tags = tag_video(path, captioner, options, progress=progress)
    if output.out_dir is not None:
        write_outputs(tags, output.out_dir, stem, formats=output.formats, thumbnails=output.thumbnails,
                      cue_tags=output.cue_tags, strip=output.strip)
    return tags


def describe_error(path: str | os.PathLike, error: BaseException) -> str:
    """One line naming the file (VideoError messages already start with it)."""
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, VideoError):
        return text
    return f"{path}: {type(error).__name__}: {text}"
