"""What the model says about an image: captions and tags (torch-free: the batch tools' records and
video results are built from these without importing torch)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Alternative:
    text: str  # caption of this hypothesis
    score: float  # ranking score (length-normalised log-probability)
    logprob: float  # total log-probability


@dataclass
class CaptionResult:
    text: str  # the caption
    tokens: list[str]  # its words
    score: float  # length-normalised log-probability used for ranking
    logprob: float  # total log-probability of the words and <end>
    alternatives: list[Alternative] = field(default_factory=list)  # the n-best list, best first (incl. this one)
    attention: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.float32))
    #           (len(tokens), S, S), S = the input size / 32: where the decoder looked for each word
    confidence: float | None = None  # probability that the caption is good (captioning.confidence); None
    #                                  without a calibrated bundle or with a beam of 1 (no runner-up to compare)
    unfamiliar: bool | None = None  # the photo is unlike every training photo (None: as confidence)

    @property
    def sure(self) -> bool | None:
        """Confidence at or above captioning.confidence.SURE and a familiar photo (None without a
        confidence): captioning.trust.is_sure."""
        from .trust import is_sure

        return None if self.confidence is None else is_sure(self.confidence, self.unfamiliar)


@dataclass(frozen=True)
class Tag:
    label: str  # ImageNet class name
    probability: float  # softmax probability
