"""The captioning model: EfficientNet-Lite0 encoder + attention LSTM decoder."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from .decoder import AttentionLSTMDecoder, DecoderConfig
from .encoder import EfficientNetLite0, EncoderOutput

ENCODER_ARCHS = ("efficientnet_lite0",)


@dataclass(frozen=True)
class ModelConfig:
    decoder: DecoderConfig  # sizes of the LSTM decoder
    encoder: str = "efficientnet_lite0"  # encoder architecture name
    max_length: int = 20  # default caption length limit in words (decoding may override)

    def to_dict(self) -> dict:
        return {"encoder": self.encoder, "max_length": self.max_length, "decoder": asdict(self.decoder)}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        if d.get("encoder") not in ENCODER_ARCHS:
            raise ValueError(f"unknown encoder {d.get('encoder')!r} (known: {', '.join(ENCODER_ARCHS)})")
        return cls(decoder=DecoderConfig(**d["decoder"]), encoder=d["encoder"], max_length=int(d["max_length"]))


class CaptionModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = EfficientNetLite0()
        self.decoder = AttentionLSTMDecoder(config.decoder)

    def encode(self, pixels: torch.Tensor) -> EncoderOutput:
        """pixels (B, 3, 224, 224), normalised -> grid, semantic vector, ImageNet logits."""
        return self.encoder(pixels)
