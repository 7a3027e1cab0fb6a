"""JSON schemas of a bundle's manifest.json and vocab.json, and one-line messages for what fails them.

The parts of the manifest that become objects (model, preprocessing, decoding) are derived from
the dataclasses they become, so their field names and types are written down once; the schema
adds only what those classes leave to the code that uses them (value ranges, the resampling
filters PIL knows). What a schema cannot say (files inside the bundle folder, tensor dtypes)
is checked in captioning.bundle.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Iterable

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match
from PIL import Image

from .config import Decoding, ModelConfig
from .images import Preprocessing

_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}
_A_TYPE = {"object": "an object", "array": "an array", "string": "a string", "integer": "an integer",
           "number": "a number", "boolean": "true or false"}
RESAMPLE_FILTERS = [f.name.lower() for f in Image.Resampling]  # the names Preprocessing.resize accepts


def dataclass_schema(cls: type, **constraints: dict[str, Any]) -> dict[str, Any]:
    """Object schema of a dataclass: every field typed from its annotation, the fields without a
    default required, no other field allowed; ``constraints`` adds schema keywords to the named fields."""
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    properties = {f.name: {**_annotation_schema(hints[f.name]), **constraints.get(f.name, {})} for f in fields}
    required = [f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _annotation_schema(annotation: type) -> dict[str, Any]:
    return dataclass_schema(annotation) if dataclasses.is_dataclass(annotation) else {"type": _JSON_TYPES[annotation]}


def manifest_schema(required_files: Iterable[str]) -> dict[str, Any]:
    """The manifest as save_bundle writes it; ``required_files`` must be listed under ``files``."""
    file_entry = {"type": "object", "required": ["sha256", "size"],
                  "properties": {"sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                                 "size": {"type": "integer", "minimum": 0}}}
    return {
        "type": "object",
        "required": ["format_version", "name", "version", "model", "preprocessing", "vocabulary", "decoding", "files"],
        "properties": {
            "format_version": {"type": "integer"},
            "name": {"type": "string", "minLength": 1},
            "version": {"type": "string"},
            "model": dataclass_schema(ModelConfig),
            "preprocessing": dataclass_schema(Preprocessing, size={"minimum": 1}, resample={"enum": RESAMPLE_FILTERS},
                                              std={"not": {"const": 0}}),
            "vocabulary": {"type": "object", "required": ["file", "size"],
                           "properties": {"file": {"type": "string"}, "size": {"type": "integer", "minimum": 1}}},
            "decoding": dataclass_schema(Decoding),
            "encoder_source": {"type": "object"},
            "training": {"type": "object"},
            "metrics": {"type": "object"},
            "confidence": {"type": "object"},  # the calibration's fit and held-out scores (caption-calibrate)
            "recipe": {"type": "string"},  # the script under recipes/ that rebuilds the bundle
            "files": {"type": "object", "required": list(required_files), "additionalProperties": file_entry},
        },
    }


VOCABULARY_SCHEMA = {"type": "object", "required": ["words"],
                     "properties": {"words": {"type": "array", "items": {"type": "string"}}}}

# JSON's integers: not true/false (Python's bools are ints) and not 2.0 (the code downstream needs an int)
_Validator = validators.extend(Draft202012Validator, type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _, x: isinstance(x, int) and not isinstance(x, bool)))


def schema_problem(instance: Any, schema: dict[str, Any]) -> str | None:
    """``"<field>: <what is wrong>"`` for the most relevant way ``instance`` fails ``schema``, or None."""
    error = best_match(_Validator(schema).iter_errors(instance))
    if error is None:
        return None
    path = list(error.absolute_path)
    if error.validator == "required":
        path.append(next(k for k in error.validator_value if k not in error.instance))
    where = _field(path)
    return f"{where}: {_what(error)}" if where else _what(error)


def _field(path: list[str | int]) -> str:
    """``files['model.safetensors'].size`` for ["files", "model.safetensors", "size"]."""
    out = ""
    for key in path:
        if isinstance(key, int):
            out += f"[{key}]"
        elif key.isidentifier():
            out += f".{key}" if out else key
        else:
            out += f"[{key!r}]"
    return out


def _what(e: ValidationError) -> str:
    if e.validator == "type":
        return f"expected {_A_TYPE[e.validator_value]}, got {_show(e.instance)}"
    if e.validator == "required":
        return "missing"
    if e.validator == "additionalProperties":
        unknown = sorted(set(e.instance) - set(e.schema.get("properties", {})))
        return f"unknown field(s) {', '.join(map(repr, unknown))} (known: {', '.join(e.schema['properties'])})"
    if e.validator == "enum":
        return f"expected one of {', '.join(map(json.dumps, e.validator_value))}, got {_show(e.instance)}"
    if e.validator == "not":  # the only use: {"not": {"const": value}}
        return f"must not be {_show(e.instance)}"
    if e.validator == "pattern":
        return f"expected a string matching {e.validator_value}, got {_show(e.instance)}"
    if e.validator == "minimum":
        return f"expected at least {e.validator_value}, got {_show(e.instance)}"
    return e.message  # jsonschema's own words for anything else


def _show(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
