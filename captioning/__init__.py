"""Offline image captioning: EfficientNet-Lite encoder + attention LSTM decoder.

The names below are imported on first use (PEP 562), so ``import captioning`` and its torch-free
modules (``captioning.config``, ``.options``, ``.images``, ``.bundle``'s manifest functions,
``.everyday``) cost milliseconds; ``Captioner`` and the model modules import torch (a second or more).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {  # name -> the submodule defining it
    "Alternative": "results", "CaptionResult": "results", "Captioner": "api", "Encoded": "api", "Tag": "results",
    "BundleError": "bundle", "NoDefaultBundleError": "bundle", "load_bundle": "bundle", "save_bundle": "bundle",
    "EverydayOptions": "everyday", "EverydayTag": "everyday",
    "ImageError": "images", "Preprocessing": "images", "load_image": "images",
}
__all__ = ["Alternative", "BundleError", "CaptionResult", "Captioner", "Encoded", "EverydayOptions", "EverydayTag",
           "ImageError", "NoDefaultBundleError", "Preprocessing", "Tag", "load_bundle", "load_image", "save_bundle"]

if TYPE_CHECKING:
    from .api import Captioner, Encoded
    from .results import Alternative, CaptionResult, Tag
    from .bundle import BundleError, NoDefaultBundleError, load_bundle, save_bundle
    from .everyday import EverydayOptions, EverydayTag
    from .images import ImageError, Preprocessing, load_image


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'captioning' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
