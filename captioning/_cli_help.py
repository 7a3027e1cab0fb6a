"""Help text for CLI flags from a config dataclass: the comment on each field.

The comment after a field (continued on comment-only lines below it) documents the field
in the source; argparse shows that same text instead of a second copy of it."""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import tokenize


def field_comments(cls: type) -> dict[str, str]:
    """``{field name: its comment}`` for the fields of a dataclass defined at the top level of a module."""
    names = {f.name for f in dataclasses.fields(cls)}
    comments: dict[str, list[str]] = {}
    field = None
    for tok in tokenize.generate_tokens(io.StringIO(inspect.getsource(cls)).readline):
        if tok.type == tokenize.NAME and tok.start[1] == 4 and not tok.line[:4].strip():  # a statement of the body
            field = tok.string if tok.string in names else None
        elif tok.type == tokenize.COMMENT and field is not None:
            comments.setdefault(field, []).append(tok.string.lstrip("#").strip())
    return {name: " ".join(parts) for name, parts in comments.items()}


def bool01(text: str) -> bool:
    """argparse type of an on/off flag written 0 or 1."""
    if text not in ("0", "1"):
        raise argparse.ArgumentTypeError(f"expected 0 or 1, not {text!r}")
    return text == "1"
