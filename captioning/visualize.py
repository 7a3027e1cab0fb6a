"""Attention heatmaps: where the decoder looked when it wrote a word."""
from __future__ import annotations

import numpy as np
from PIL import Image


def _colormap(x: np.ndarray) -> np.ndarray:
    """0..1 -> RGB uint8 with a perceptually ordered dark-blue -> yellow ramp (viridis-like)."""
    stops = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float32)
    pos = x.clip(0, 1) * (len(stops) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(stops) - 2)
    frac = (pos - lo)[..., None]
    return (stops[lo] * (1 - frac) + stops[lo + 1] * frac).astype(np.uint8)


def attention_overlay(image: Image.Image, attention: np.ndarray, *, alpha: float = 0.55) -> Image.Image:
    """Blend an (S, S) attention map, smoothly upsampled, over the image (RGB, same size)."""
    att = np.asarray(attention, dtype=np.float32)
    att = (att - att.min()) / max(float(att.max() - att.min()), 1e-8)  # (S, S) in 0..1
    heat = Image.fromarray((att * 255).astype(np.uint8)).resize(image.size, Image.Resampling.BICUBIC)
    colours = Image.fromarray(_colormap(np.asarray(heat, np.float32) / 255.0))
    return Image.blend(image.convert("RGB"), colours, alpha)
