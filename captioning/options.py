"""Command-line options every tool shares: flags generated from config dataclasses, the
decoding flags and ``--device``.

One generator, :func:`add_dataclass_flags`, makes a flag per field of a dataclass (``TrainConfig``,
``TagOptions``, ``CaptionOptions``, :class:`Decoding`), so each option is declared once, in its
dataclass, with a comment. A field ``tags: int = 5  # the top-K labels (0: none)`` becomes
``--tags TAGS`` of type int, defaulting to the field's default, its help the field's comment
(continued on comment-only lines below it) followed by the default:

- a field without a default is a required flag; a ``Literal`` type gives the choices;
- a ``tuple[X, ...]`` field is a repeatable flag (``--data A --data B``), each value of type X;
- a None default needs a comment ending "(None: X)", shown as "(default: X)";
- a boolean is a switch, ``--caption-every-frame`` (one that is on by default is turned off with
  ``--no-...``), except where the flag stands for someone else's value (``keep``, below): then it
  is written 0 or 1 (``--no-repeat-words 0``), since "off" must be sayable over a bundle's "on";
- with ``keep="the bundle's"`` every flag defaults to None, meaning "keep that value", and is left
  out of :func:`dataclass_kwargs`;
- a field named ``decoding`` (a mapping of :class:`Decoding` overrides) becomes the decoding flags
  every tool shares (``--beam-size``, ``--max-length``, ...; :func:`add_decoding_flags`).

    add_dataclass_flags(parser, TagOptions)
    options = options_from_args(parser, TagOptions, args)   # an invalid value: parser.error naming the flag
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import re
import tokenize
import typing
from typing import Any, Collection, Literal, Mapping, TypeVar

from .config import DECODING_OPTIONS, Decoding, RuntimeOptions

Options = TypeVar("Options")
DECODING = "decoding"  # the field of an options dataclass that holds Decoding overrides
_NONE_MEANS = re.compile(r"\(None: ([^)]*)\)$")  # how a comment says what a None default means


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


def flag(name: str) -> str:
    """The flag of a field: ``no_repeat_words`` -> ``--no-repeat-words``."""
    return "--" + name.replace("_", "-")


def bool01(text: str) -> bool:
    """argparse type of an on/off flag written 0 or 1."""
    if text not in ("0", "1"):
        raise argparse.ArgumentTypeError(f"expected 0 or 1, not {text!r}")
    return text == "1"


def _fields(cls: type, only: Collection[str] | None, skip: Collection[str]) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if (only is None or f.name in only) and f.name not in skip]


def _dest(name: str, prefix: str, rename: Mapping[str, str]) -> str:
    return prefix + rename.get(name, name)


def _value_type(hint: Any) -> Any:
    """``int`` for ``int`` and ``int | None``; a ``Literal`` stays itself."""
    kinds = [k for k in typing.get_args(hint) if k is not type(None)] if typing.get_origin(hint) is not Literal else []
    return kinds[0] if len(kinds) == 1 else hint


def _flag_spec(cls: type, f: dataclasses.Field, hint: Any, text: str, keep: str | None) -> dict[str, Any]:
    """``add_argument``'s keywords for the field ``f`` (see the module docstring)."""
    kind = _value_type(hint)
    if typing.get_origin(kind) is tuple:
        spec = dict(action="append", type=typing.get_args(kind)[0], metavar=f.name.upper())
        if f.default is dataclasses.MISSING:
            return dict(spec, required=True, help=f"{text} (required; repeatable)")
        return dict(spec, default=None, help=f"{text} (repeatable; default: {' '.join(map(str, f.default)) or 'none'})")
    if kind is bool and keep is None:
        on = f.default is True
        return dict(action=argparse.BooleanOptionalAction if on else "store_true", default=f.default,
                    help=f"{text} (default: {'on' if on else 'off'})")
    spec: dict[str, Any] = dict(type=str if typing.get_origin(kind) is Literal else kind)
    if kind is bool:
        spec.update(type=bool01, choices=(False, True), metavar="{0,1}")
    elif typing.get_origin(kind) is Literal:
        spec.update(choices=typing.get_args(kind))
    if keep is not None:
        return dict(spec, default=None, help=f"{text} (default: {keep})")
    if f.default is dataclasses.MISSING:
        return dict(spec, required=True, help=f"{text} (required)")
    if f.default is None:
        if not _NONE_MEANS.search(text):
            raise ValueError(f"{cls.__name__}.{f.name}: its comment must end with '(None: ...)'")
        return dict(spec, default=None, help=_NONE_MEANS.sub(r"(default: \1)", text))
    return dict(spec, default=f.default, help=f"{text} (default: %(default)s)")


def add_dataclass_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, *,
                        only: Collection[str] | None = None, skip: Collection[str] = (), prefix: str = "",
                        rename: Mapping[str, str] = {}, keep: str | None = None) -> None:
    """A flag per field of the dataclass ``cls`` (those named in ``only``, if given, but not those in
    ``skip``): ``--<prefix><name>`` (``rename`` maps a field to another name). See the module docstring."""
    comments, hints = field_comments(cls), typing.get_type_hints(cls)
    for f in _fields(cls, only, skip):
        if f.name == DECODING:
            add_decoding_flags(parser, default="the bundle's")
            continue
        dest = _dest(f.name, prefix, rename)
        text = comments.get(f.name, "").replace("%", "%%")
        parser.add_argument(flag(dest), dest=dest, **_flag_spec(cls, f, hints[f.name], text, keep))


def dataclass_kwargs(args: argparse.Namespace, cls: type, *, only: Collection[str] | None = None,
                     skip: Collection[str] = (), prefix: str = "", rename: Mapping[str, str] = {}) -> dict[str, Any]:
    """The values :func:`add_dataclass_flags`' flags were given, by field name (a ``keep`` flag left
    unset is left out; a ``decoding`` field gets the decoding flags' overrides)."""
    values: dict[str, Any] = {}
    for f in _fields(cls, only, skip):
        values[f.name] = (dataclass_kwargs(args, Decoding) if f.name == DECODING
                          else getattr(args, _dest(f.name, prefix, rename)))
        if isinstance(values[f.name], list):  # a repeatable flag's values, for a tuple field
            values[f.name] = tuple(values[f.name])
    return {name: value for name, value in values.items() if value is not None}


def options_from_args(parser: argparse.ArgumentParser, cls: type[Options], args: argparse.Namespace, *,
                      skip: Collection[str] = ()) -> Options:
    """``cls`` from the flags :func:`add_dataclass_flags` added (skipped fields keep their defaults);
    the dataclass validates itself, and an invalid value exits through ``parser.error`` naming the flag."""
    try:
        return cls(**dataclass_kwargs(args, cls, skip=skip))
    except ValueError as e:
        message = str(e)
        for name in [*(f.name for f in dataclasses.fields(cls)), *DECODING_OPTIONS]:
            message = re.sub(rf"\b{name}\b", flag(name), message)
        parser.error(message)


def add_decoding_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, default: str) -> None:
    """A flag per :class:`Decoding` option (``--beam-size``, ``--max-length``, ...). Each defaults to
    None, which :func:`decoding_from_args` reads as "keep"; ``default`` says whose value that is."""
    add_dataclass_flags(parser, Decoding, keep=default)


def decoding_from_args(args: argparse.Namespace, base: Decoding) -> Decoding:
    """``base`` with the options given by :func:`add_decoding_flags`' flags."""
    return base.replace(**dataclass_kwargs(args, Decoding))


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    """``--device`` (:class:`RuntimeOptions`), for the tools that run only torch models."""
    add_dataclass_flags(parser, RuntimeOptions, only=("device",))


def add_runtime_flags(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--backend`` and ``--threads`` (:class:`RuntimeOptions`): every inference tool's."""
    add_dataclass_flags(parser, RuntimeOptions)


def runtime_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> RuntimeOptions:
    return options_from_args(parser, RuntimeOptions, args)


def add_weights_flag(parser: argparse.ArgumentParser, *, default: str | None = None, note: str = "") -> None:
    """``--weights``: the bundle every tool loads (``note`` is appended to the help, e.g. an env variable)."""
    parser.add_argument("--weights", metavar="W", default=default,
                        help=f"bundle name, arch prefix or folder (default: weights/DEFAULT{note})")


def add_strict_flag(parser: argparse.ArgumentParser) -> None:
    """``--strict``: a failed input makes the exit status 1 (without it, failures are reported on
    stderr and the tool exits 0 once it has gone through every input)."""
    parser.add_argument("--strict", action="store_true", help="exit with status 1 if any input failed (default: off)")


N_BEST_HELP = "the N best captions per image, the caption itself first (0: only the caption)"
TAGS_HELP = "the top-K ImageNet labels per image, and as many everyday tags (0: none)"
