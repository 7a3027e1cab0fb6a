"""The web UI's decoding options (app.py): a control per :class:`~captioning.decoding.Decoding`
option, set to the bundle's recorded value, and the handlers' side of them: the values the
controls pass, as overrides, and handler signatures that name them for Gradio's API page."""
from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from typing import Any

import gradio as gr

from captioning.decoding import Decoding
from captioning.options import field_comments

# The UI's range (lowest, highest, step) of each numeric Decoding option; its on/off options are
# checkboxes. Every control starts at the bundle's recorded value.
DECODING_RANGES = {"beam_size": (1, 8, 1), "max_length": (5, 40, 1), "min_length": (0, 15, 1),
                   "length_penalty": (0.0, 2.0, 0.1), "no_repeat_ngram_size": (0, 4, 1)}
DECODING_FIELDS = [f.name for f in dataclasses.fields(Decoding)]  # the order the controls pass their values in


def decoding_overrides(values: tuple[Any, ...]) -> dict[str, Any]:
    """Decoding overrides from the controls' values (in :data:`DECODING_FIELDS` order): a slider's
    number as the option's type (int or float), a checkbox's as a bool; None is left out."""
    kind = {name: type(getattr(Decoding(), name)) for name in DECODING_FIELDS}  # the defaults' types
    return {name: kind[name](value) for name, value in zip(DECODING_FIELDS, values) if value is not None}


def with_decoding_parameters(handler: Any) -> Any:
    """``handler`` (taking the Decoding options as ``*decoding``) with them as named parameters,
    default None (the bundle's), so Gradio's API page and clients name them (``beam_size``, ...)."""
    signature = inspect.signature(handler)
    before = [p for p in signature.parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    after = [p for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY]
    options = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)
               for name in DECODING_FIELDS]
    named = signature.replace(parameters=[*before, *options, *after])

    @functools.wraps(handler)
    def call(*args: Any, **kwargs: Any) -> Any:  # Gradio passes every input, in order: positions agree
        return handler(*args, **kwargs)

    call.__signature__ = named
    return call


def decoding_controls(decoding: Decoding) -> list[gr.components.Component]:
    """A control per Decoding option, in an accordion, set to ``decoding`` (the bundle's): labelled
    with the option's name, explained by its field comment (code references left out)."""
    comments = field_comments(Decoding)
    controls = []
    with gr.Accordion("Decoding options", open=False):
        for name in DECODING_FIELDS:
            label, value = name.replace("_", " ").capitalize().replace("ngram", "n-gram"), getattr(decoding, name)
            info = re.sub(r"\s*\([\w.]+\.[A-Z_]+\)", "", comments[name])
            if isinstance(value, bool):
                controls.append(gr.Checkbox(value=value, label=label, info=info))
            else:
                low, high, step = DECODING_RANGES[name]
                controls.append(gr.Slider(low, max(high, value), value=value, step=step, label=label, info=info))
    return controls
