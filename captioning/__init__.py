"""Offline image captioning: EfficientNet-Lite encoder + attention LSTM decoder."""
from .api import Alternative, CaptionResult, Captioner, Encoded, Tag
from .bundle import BundleError, NoDefaultBundleError, load_bundle, save_bundle
from .everyday import EverydayOptions, EverydayTag
from .images import ImageError, Preprocessing, load_image

__all__ = ["Alternative", "BundleError", "CaptionResult", "Captioner", "Encoded", "EverydayOptions", "EverydayTag",
           "ImageError", "NoDefaultBundleError", "Preprocessing", "Tag", "load_bundle", "load_image", "save_bundle"]
