"""How the web UI (app.py) says how far to trust a caption: its confidence as words ("sure, 0.83",
:mod:`captioning.trust`) and, for a photo unlike the training photos, a sentence that leads with
its tags, in the image tab and the batch table."""
from __future__ import annotations

from typing import Any, Sequence

from captioning.everyday import EverydayTag
from captioning.results import CaptionResult
from captioning.trust import UNFAMILIAR, lead_tags, shown_confidence, sure_word

NO_CONFIDENCE = "no confidence: this model has no calibration, or the beam size is 1"


def verdict(result: CaptionResult, tags: Sequence[EverydayTag]) -> str:
    """Markdown above the caption: "**sure** (0.83)", and for an unfamiliar photo its everyday tags
    first, then :data:`captioning.trust.UNFAMILIAR`; "" without a confidence."""
    if result.confidence is None:
        return ""
    said = f"Caption: **{sure_word(result.confidence, result.unfamiliar)}** ({shown_confidence(result.confidence)})"
    if not result.unfamiliar:
        return said
    lead = ", ".join(f"**{t.word}**" for t in lead_tags(list(tags)))
    warning = UNFAMILIAR[0].upper() + UNFAMILIAR[1:]
    return f"Tags: {lead}. ⚠ {warning}.  \n{said}" if lead else f"⚠ {warning}.  \n{said}"


def record_confidence(record: dict[str, Any]) -> float | None:
    """A batch record's confidence as the table's sortable number column holds it (None: none)."""
    value = record.get("confidence")
    return None if value is None else round(float(value), 2)


def record_verdict(record: dict[str, Any], tags: str) -> str:
    """A batch record's confidence in words, with the unfamiliar warning leading with its tags
    (``tags``: as the table shows them): "unsure — unfamiliar photo: trust its tags (cat (tabby)) more than the
    caption"; "" without a confidence."""
    if record.get("confidence") is None:
        return ""
    word = sure_word(record["confidence"], record.get("unfamiliar"))
    if record.get("unfamiliar"):
        return f"{word} — unfamiliar photo: trust its tags ({tags}) more than the caption" if tags \
            else f"{word} — unfamiliar photo: the caption may well be wrong"
    return word
