"""One video start to finish, the job both engines of ``tag-video`` run (the local loop and
each Ray actor), so their results are the same: tag it, write its files and the record of the
run (:mod:`.runs`), or say in one line why it failed."""
from __future__ import annotations

import os
from typing import Any, Callable

from ..headstart import HeadStart
from .export import OutputOptions, write_outputs
from .io import VideoError
from .layout import Target
from .results import VideoTags
from .runs import record_run, run_file, run_settings
from .options import TagOptions
from .writing import check_replaceable


def process_video(path: str | os.PathLike, target: Target | None, captioner: Any, options: TagOptions,
                  output: OutputOptions, progress: Callable[[int, float], None] | None = None, *,
                  head: HeadStart | None = None) -> VideoTags:
    """Tag one video and, given its ``target`` folder, write its output files there, then the record
    of the run. ``head``: its scan already started (:func:`~pipelines.video.tagger.scan_ahead`)."""
    from .tagger import tag_video  # imports torch

    tags = tag_video(path, captioner, options, progress=progress, head=head)
    if target is not None:
        check_replaceable([run_file(target)])  # as write_outputs checks its files: before any is written
        written = write_outputs(tags, target.folder, target.stem, formats=output.formats,
                                thumbnails=output.thumbnails, cue_tags=output.cue_tags, strip=output.strip)
        settings = run_settings(captioner.name, captioner.version, captioner.decoding, options, output,
                                captioner.precision)
        record_run(target, str(path), settings, tags.partial, written)
    return tags


def describe_error(path: str | os.PathLike, error: BaseException) -> str:
    """One line naming the file (VideoError messages already start with it)."""
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, VideoError):
        return text
    return f"{path}: {type(error).__name__}: {text}"
