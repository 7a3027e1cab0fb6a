"""The captioning model: an EfficientNet-Lite encoder + attention LSTM decoder (or an ensemble of them)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from .decoder import AttentionLSTMDecoder, DecoderConfig, EnsembleDecoder
from .encoder import ARCHS, DEFAULT_ARCH, EfficientNetLite, EncoderOutput

ENCODER_ARCHS = tuple(ARCHS)


@dataclass(frozen=True)
class ModelConfig:
    decoder: DecoderConfig  # sizes of the LSTM decoder
    encoder: str = DEFAULT_ARCH  # encoder architecture, a name in captioning.encoder.ARCHS (absent: Lite0)
    max_length: int = 20  # default caption length limit in words (decoding may override)
    members: int = 1  # decoders averaged at every step (an ensemble: decoder.EnsembleDecoder); 1 = one decoder
    encoder_tuned_blocks: int = 0  # last encoder blocks fine-tuned on captions (their ImageNet copies feed the tags)

    def to_dict(self) -> dict:
        return {"encoder": self.encoder, "max_length": self.max_length, "decoder": asdict(self.decoder),
                "members": self.members,
                **({"encoder_tuned_blocks": self.encoder_tuned_blocks} if self.encoder_tuned_blocks else {})}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        encoder = d.get("encoder", DEFAULT_ARCH)  # bundles from before Lite1/2 may not name it
        if encoder not in ENCODER_ARCHS:
            raise ValueError(f"unknown encoder {encoder!r} (known: {', '.join(ENCODER_ARCHS)})")
        return cls(decoder=DecoderConfig(**d["decoder"]), encoder=encoder, max_length=int(d["max_length"]),
                   members=int(d.get("members", 1)), encoder_tuned_blocks=int(d.get("encoder_tuned_blocks", 0)))


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
