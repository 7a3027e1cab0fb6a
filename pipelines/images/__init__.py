"""Batch image captioning: :func:`caption_images` (records in input order) and
:func:`write_records` (a JSONL or CSV file); the ``caption-images`` command is :mod:`.cli`.

Modules: ``records`` (one image -> its record), ``local`` and ``ray`` (the two engines),
``outputs`` (record files, resumable), ``sidecars`` (caption files next to the images),
``cli``; which files are read: :mod:`pipelines.inputs`, shared with tag-video.
"""
from .local import caption_images
from .outputs import write_records

__all__ = ["caption_images", "write_records"]
