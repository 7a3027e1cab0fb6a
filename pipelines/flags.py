"""Command-line flags made from an options dataclass (:class:`TagOptions`, :class:`CaptionOptions`),
so each option is declared once, in its dataclass, with a comment.

A field ``beam_size: int | None = None  # caption beam width (None: the bundle's)`` becomes
``--beam-size BEAM_SIZE`` of type int, defaulting to the field's default, its help the field's
comment (read by :func:`captioning.options.field_comments`) followed by the default: a comment
ending "(None: X)" reads "(default: X)" for a None default, a boolean that is off by default is
a switch "(default: off)", any other default is printed. A ``Literal`` type gives the choices.

A field ``decoding`` (a mapping of :class:`~captioning.decoding.Decoding` overrides) becomes the
decoding flags every tool shares (:func:`captioning.options.add_decoding_flags`).

:func:`options_from_args` builds the dataclass from the parsed flags; the dataclass validates
itself, and its ``ValueError`` becomes the parser's error with field names written as flags.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from typing import Any, Collection, Literal, TypeVar

from captioning.decoding import DECODING_OPTIONS, Decoding
from captioning.options import add_decoding_flags, dataclass_kwargs, field_comments

Options = TypeVar("Options")
DECODING = "decoding"  # the field of an options dataclass that holds Decoding overrides
_NONE_MEANS = re.compile(r"\(None: ([^)]*)\)$")  # how a comment says what a None default means


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _value_type(hint: Any) -> Any:
    """``int`` for ``int`` and ``int | None``; a ``Literal`` stays itself."""
    kinds = [k for k in typing.get_args(hint) if k is not type(None)] if typing.get_origin(hint) is not Literal else []
    return kinds[0] if len(kinds) == 1 else hint


def add_option_flags(parser: argparse.ArgumentParser, cls: type, *, skip: Collection[str] = ()) -> None:
    """A flag per field of the dataclass ``cls`` except those in ``skip`` (see the module docstring)."""
    comments, hints = field_comments(cls), typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        if f.name == DECODING:
            add_decoding_flags(parser, default="the bundle's")
            continue
        text, kind = comments[f.name].replace("%", "%%"), _value_type(hints[f.name])
        if kind is bool:
            on = f.default is True
            parser.add_argument(flag(f.name), action=argparse.BooleanOptionalAction if on else "store_true",
                                default=f.default, help=f"{text} (default: {'on' if on else 'off'})")
            continue
        if f.default is None:
            if not _NONE_MEANS.search(text):
                raise ValueError(f"{cls.__name__}.{f.name}: its comment must end with '(None: ...)'")
            text = _NONE_MEANS.sub(r"(default: \1)", text)
        else:
            text += " (default: %(default)s)"
        literal = typing.get_origin(kind) is Literal
        parser.add_argument(flag(f.name), type=str if literal else kind, default=f.default, help=text,
                            choices=typing.get_args(kind) if literal else None)


def options_from_args(parser: argparse.ArgumentParser, cls: type[Options], args: argparse.Namespace) -> Options:
    """``cls`` from the flags :func:`add_option_flags` added (skipped fields keep their defaults);
    an invalid value exits through ``parser.error`` naming the flag."""
    names = [f.name for f in dataclasses.fields(cls)]
    values = {name: getattr(args, name) for name in names if name != DECODING and hasattr(args, name)}
    if DECODING in names:
        values[DECODING] = dataclass_kwargs(args, Decoding)
    try:
        return cls(**values)
    except ValueError as e:
        message = str(e)
        for name in [*names, *DECODING_OPTIONS]:
            message = re.sub(rf"\b{name}\b", flag(name), message)
        parser.error(message)


def add_engine_flags(parser: argparse.ArgumentParser, *, actors: int | None,
                     actors_default: str = "%(default)s") -> None:
    """``--engine``, ``--address`` and ``--actors``, worded alike in every tool that can run on Ray."""
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local: this process; ray: through a Ray cluster (default: %(default)s)")
    parser.add_argument("--address", metavar="ADDR", default=None, help="ray engine: cluster address, e.g. auto or "
                        "ray://head:10001 (default: RAY_ADDRESS if set, else a new local Ray)")
    parser.add_argument("--actors", metavar="N", type=int, default=actors,
                        help=f"ray engine: model actors, one Captioner each (default: {actors_default})")


def with_changes(options: Options, changes: dict[str, Any]) -> Options:
    """``options`` (a dataclass with a ``decoding`` mapping of Decoding overrides) with ``changes``
    by name, Decoding's options among them: ``beam_size=5`` lands in ``decoding``."""
    decoding = {k: v for k, v in changes.items() if k in DECODING_OPTIONS}
    rest = {k: v for k, v in changes.items() if k not in DECODING_OPTIONS}
    return dataclasses.replace(options, decoding={**options.decoding, **decoding}, **rest)
