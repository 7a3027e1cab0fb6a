"""The captioning model: an EfficientNet-Lite encoder + attention LSTM decoder (or an ensemble of them)."""
from __future__ import annotations

import torch
import torch.nn as nn

from .config import ModelConfig  # noqa: F401 (re-exported)
from .decoder import AttentionLSTMDecoder, EnsembleDecoder
from .encoder import EfficientNetLite, EncoderOutput



class CaptionModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = EfficientNetLite(config.encoder, tuned_blocks=config.encoder_tuned_blocks)
        if config.members < 1:
            raise ValueError(f"members must be >= 1, not {config.members}")
        self.decoder = AttentionLSTMDecoder(config.decoder) if config.members == 1 else \
            EnsembleDecoder([AttentionLSTMDecoder(config.decoder) for _ in range(config.members)])

    def encode(self, pixels: torch.Tensor) -> EncoderOutput:
        """pixels (B, 3, H, W), normalised -> grid, semantic vector, ImageNet logits."""
        return self.encoder(pixels)
