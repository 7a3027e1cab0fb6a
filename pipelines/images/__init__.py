"""Batch image captioning: :func:`caption_images` (records in input order) and
:func:`write_records` (a JSONL or CSV file); the ``caption-images`` command is :mod:`.cli`.

Modules: ``inputs`` (which files), ``records`` (one image -> its record), ``local`` and
``ray`` (the two engines), ``outputs`` (record files, resumable), ``sidecars`` (caption
files next to the images), ``cli``.
"""
from .local import caption_images
from .outputs import write_records

__all__ = ["caption_images", "write_records"]
