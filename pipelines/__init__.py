"""Batch image captioning and video tagging built on ``captioning.Captioner``, and the web UI's
helpers (:mod:`pipelines.ui`)."""
from __future__ import annotations

from typing import Any

__all__ = ["caption_images", "tag_video"]


def __getattr__(name: str) -> Any:  # lazy: importing pipelines loads neither wing (no torch, cv2 or ray)
    if name == "caption_images":
        from .images import caption_images

        return caption_images
    if name == "tag_video":
        from .video import tag_video

        return tag_video
    raise AttributeError(name)
