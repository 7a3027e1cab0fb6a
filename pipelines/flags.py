"""Flags and option helpers of the batch tools beyond the dataclass-made ones
(:func:`captioning.options.add_dataclass_flags` makes those): the Ray engine flags, ``-r``,
:func:`with_changes` for keyword overrides of an options dataclass, and
:func:`setting_differences`, how a resumed run names what an earlier one did otherwise.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Mapping, TypeVar

from captioning.config import DECODING_OPTIONS
from captioning.everyday import EverydayOptions

EVERYDAY_OPTIONS = tuple(f.name for f in dataclasses.fields(EverydayOptions))

Options = TypeVar("Options")


def add_engine_flags(parser: argparse.ArgumentParser, *, actors: int | None,
                     actors_default: str = "%(default)s") -> None:
    """``--engine``, ``--address`` and ``--actors``, worded alike in every tool that can run on Ray."""
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local: this process; ray: through a Ray cluster (default: %(default)s)")
    parser.add_argument("--address", metavar="ADDR", default=None, help="ray engine: cluster address, e.g. auto or "
                        "ray://head:10001 (default: RAY_ADDRESS if set, else a new local Ray)")
    parser.add_argument("--actors", metavar="N", type=int, default=actors,
                        help=f"ray engine: model actors, one Captioner each (default: {actors_default})")


def add_recursive_flag(parser: argparse.ArgumentParser) -> None:
    """``-r/--recursive``: folders given are searched at their top level only unless it is given
    (:func:`pipelines.inputs.discover`), in every tool that takes folders."""
    parser.add_argument("-r", "--recursive", action="store_true", help="also look inside subfolders (default: off)")


def with_changes(options: Options, changes: dict[str, Any]) -> Options:
    """``options`` (a dataclass with a ``decoding`` mapping of Decoding overrides and an ``everyday``
    :class:`EverydayOptions`) with ``changes`` by name, Decoding's and EverydayOptions' among them:
    ``beam_size=5`` lands in ``decoding``, ``min_tag_probability=0.2`` in ``everyday``."""
    decoding = {k: v for k, v in changes.items() if k in DECODING_OPTIONS}
    everyday = {k: v for k, v in changes.items() if k in EVERYDAY_OPTIONS}
    rest = {k: v for k, v in changes.items() if k not in DECODING_OPTIONS and k not in EVERYDAY_OPTIONS}
    if everyday:
        rest["everyday"] = dataclasses.replace(options.everyday, **everyday)
    return dataclasses.replace(options, decoding={**options.decoding, **decoding}, **rest)


def setting_differences(recorded: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> list[str]:
    """What an earlier run recorded otherwise than this run's settings, one ``name old (this run:
    new)`` each, in ``current``'s order, then what only the earlier run recorded; nested mappings by
    dotted name (``options.beam_size``)."""
    differences = []
    for key in [*current, *(k for k in recorded if k not in current)]:
        old, new = recorded.get(key), current.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            differences += setting_differences(old, new, f"{prefix}{key}.")
        elif old != new:
            differences.append(f"{prefix}{key} {old!r} (this run: {new!r})")
    return differences
