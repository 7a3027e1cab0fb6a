"""Flags and option helpers of the batch tools beyond the dataclass-made ones
(:func:`captioning.options.add_dataclass_flags` makes those): the Ray engine flags, and
:func:`with_changes` for keyword overrides of an options dataclass.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

from captioning.decoding import DECODING_OPTIONS

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


def with_changes(options: Options, changes: dict[str, Any]) -> Options:
    """``options`` (a dataclass with a ``decoding`` mapping of Decoding overrides) with ``changes``
    by name, Decoding's options among them: ``beam_size=5`` lands in ``decoding``."""
    decoding = {k: v for k, v in changes.items() if k in DECODING_OPTIONS}
    rest = {k: v for k, v in changes.items() if k not in DECODING_OPTIONS}
    return dataclasses.replace(options, decoding={**options.decoding, **decoding}, **rest)
