"""How the web UI (app.py) shows tags: the everyday words first (:mod:`captioning.everyday`),
then ImageNet's labels, in the image tab, the video tab's shots and summary, and the batch table."""
from __future__ import annotations

from typing import Any, Sequence

from captioning.everyday import EverydayTag


def everyday_label(tags: Sequence[EverydayTag]) -> dict[str, float]:
    """A ``gr.Label``'s value: ``{"dog — golden retriever 0.61": 0.93}``, the word's summed probability."""
    return {f"{t.word} — {t.label} {t.label_probability:.2f}": t.probability for t in tags}


def leading_source(tags: Sequence[Any]) -> str:
    """The source of video tags a person reads first: "everyday" when there are any, else "imagenet"."""
    return "everyday" if any(t.source == "everyday" for t in tags) else "imagenet"


def shown_tags(tags: Sequence[Any], n: int) -> list[str]:
    """The first ``n`` tags of a shot as shown: its everyday words, then its ImageNet labels."""
    return [t.label for source in ("everyday", "imagenet") for t in tags if t.source == source][:n]


def record_tags(record: dict[str, Any]) -> str:
    """A batch record's tags as the table shows them: "cat (tabby), ...", else its ImageNet labels."""
    words = [f"{t['word']} ({t['label']})" for t in record.get("everyday_tags") or []]
    return ", ".join(words or [t["label"] for t in record["tags"] or []])
