"""How a caption's confidence and a photo's unfamiliar flag are said to a person: the words the
``caption`` CLI, ``caption-images``' summary and the web UI show (the numbers come from
:mod:`captioning.confidence` through :class:`~captioning.results.CaptionResult`). No torch."""
from __future__ import annotations

import math

from .confidence import SURE

UNFAMILIAR = "this photo is unlike the photos the model was trained on: trust the tags more than the caption"
LEAD_TAG_PROBABILITY = 0.05  # an unfamiliar photo's sentence leads with the everyday tags at least this probable


def lead_tags(tags: list, *, at_least: float = LEAD_TAG_PROBABILITY) -> list:
    """The everyday tags worth leading with: those at least ``at_least`` probable, else the most probable one."""
    return [t for t in tags if t.probability >= at_least] or list(tags[:1])


def is_sure(confidence: float, unfamiliar: bool | None = False) -> bool:
    """Confidence at or above :data:`captioning.confidence.SURE`, for a familiar photo: the caption of
    a photo unlike the training photos is never called sure (its sentence says to trust the tags)."""
    return confidence >= SURE and not unfamiliar


def shown_confidence(confidence: float) -> str:
    """The number as shown, two decimals cut (not rounded) so that an unsure 0.499 never reads 0.50."""
    return f"{math.floor(confidence * 100 + 1e-9) / 100:.2f}"


def sure_word(confidence: float, unfamiliar: bool | None = False) -> str:
    """"sure" or "unsure" (see :func:`is_sure`)."""
    return "sure" if is_sure(confidence, unfamiliar) else "unsure"


def confidence_words(confidence: float | None, unfamiliar: bool | None = False) -> str | None:
    """"sure, 0.83" or "unsure, 0.31" (unsure for any unfamiliar photo); None without a confidence."""
    if confidence is None:
        return None
    return f"{sure_word(confidence, unfamiliar)}, {shown_confidence(confidence)}"

