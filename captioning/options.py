"""Command-line options every tool shares: flags generated from config dataclasses, the
decoding flags and ``--device``.

A flag's help is the comment after its dataclass field (continued on comment-only lines below
it): the source documents the option once and argparse shows that same text.

    add_decoding_flags(parser, default="the bundle's")   # --beam-size, --max-length, ...
    decoding = decoding_from_args(args, captioner.decoding)
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import tokenize
from typing import Any, Collection, Mapping

from .decoding import Decoding

DEVICE_HELP = "cpu, cuda or auto (default: %(default)s)"


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


def _fields(cls: type, only: Collection[str] | None) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if only is None or f.name in only]


def _dest(name: str, prefix: str, rename: Mapping[str, str]) -> str:
    return prefix + rename.get(name, name)


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, *,
                        only: Collection[str] | None = None, prefix: str = "", rename: Mapping[str, str] = {},
                        keep: str | None = None) -> None:
    """A flag per field of the dataclass ``cls`` (or per field named in ``only``): ``--<prefix><name>``
    with ``_`` written ``-`` (``rename`` maps a field to another name), help: the field's comment.

    The flag defaults to the field's default (a field without one is a required flag), or, with
    ``keep``, to None, which :func:`dataclass_kwargs` leaves out: ``keep`` says whose value that is
    ("the bundle's"). Booleans are written 0 or 1."""
    help_text = field_comments(cls)
    for f in _fields(cls, only):
        dest = _dest(f.name, prefix, rename)
        kind = {"type": bool01, "choices": (False, True), "metavar": "{0,1}"} if isinstance(f.default, bool) \
            else {"type": str if f.default is dataclasses.MISSING else type(f.default)}
        if keep is not None:
            default, note = None, f"default: {keep}"
        elif f.default is dataclasses.MISSING:
            default, note = None, "required"
        else:
            default, note = f.default, f"default: {int(f.default) if isinstance(f.default, bool) else '%(default)s'}"
        text = help_text.get(f.name, "").replace("%", "%%")
        parser.add_argument("--" + dest.replace("_", "-"), dest=dest, default=default, required=note == "required",
                            help=f"{text} ({note})", **kind)


def dataclass_kwargs(args: argparse.Namespace, cls: type, *, only: Collection[str] | None = None,
                     prefix: str = "", rename: Mapping[str, str] = {}) -> dict[str, Any]:
    """The values :func:`add_dataclass_flags`' flags were given, by field name (a ``keep`` flag left
    unset is left out)."""
    values = {f.name: getattr(args, _dest(f.name, prefix, rename)) for f in _fields(cls, only)}
    return {name: value for name, value in values.items() if value is not None}


def add_decoding_flags(parser: argparse.ArgumentParser, *, default: str) -> None:
    """A flag per :class:`Decoding` option (``--beam-size``, ``--max-length``, ...). Each defaults to
    None, which :func:`decoding_from_args` reads as "keep"; ``default`` says whose value that is."""
    add_dataclass_flags(parser, Decoding, keep=default)


def decoding_from_args(args: argparse.Namespace, base: Decoding) -> Decoding:
    """``base`` with the options given by :func:`add_decoding_flags`' flags."""
    return base.replace(**dataclass_kwargs(args, Decoding))


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    """``--device``: where the model runs, ``auto`` = CUDA when available, else the CPU."""
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)


def add_weights_flag(parser: argparse.ArgumentParser, *, default: str | None = None, note: str = "") -> None:
    """``--weights``: the bundle every tool loads (``note`` is appended to the help, e.g. an env variable)."""
    parser.add_argument("--weights", metavar="W", default=default,
                        help=f"bundle name, arch prefix or folder (default: weights/DEFAULT{note})")


def add_strict_flag(parser: argparse.ArgumentParser) -> None:
    """``--strict``: a failed input makes the exit status 1 (without it, failures are reported on
    stderr and the tool exits 0 once it has gone through every input)."""
    parser.add_argument("--strict", action="store_true", help="exit with status 1 if any input failed (default: off)")


N_BEST_HELP = "the N best captions per image, the caption itself first (0: only the caption)"
TAGS_HELP = "the top-K ImageNet labels per image (0: none)"
