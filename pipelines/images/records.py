"""One image file -> encoder input (in a worker), a batch of them -> output records (on the model).

Shared by the local engine (thread pool) and the Ray engine (map tasks + actors), so both
write the same records. Preprocessing stays in ``captioning.images``.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
from PIL import Image

from captioning.config import Decoding
from captioning.everyday import EverydayOptions
from captioning.images import ImageError, Preprocessing, read_image_file

if TYPE_CHECKING:
    from captioning import Captioner, Encoded

RECORD_FORMAT = 4  # 4 added confidence, unfamiliar, note and options.min_confidence; 3 added everyday_tags;
#                   2 added format_version, real_path and options; 1 had the other fields
# Fields of a record, in output order (JSONL keys, CSV columns).
FIELDS = ("format_version", "path", "real_path", "caption", "confidence", "unfamiliar", "score", "n_best", "tags",
          "everyday_tags", "width", "height", "sha256", "model", "model_version", "options", "note", "error")
SETTINGS = ("model", "model_version", "options")  # what made a record: a resumed run must use the same


@dataclass(frozen=True)
class CaptionOptions:
    """How images are captioned and what each record holds: :func:`caption_images`' options and
    ``caption-images``' flags (n_best and tags made from these fields and their comments, the
    decoding ones from :class:`~captioning.decoding.Decoding`'s and the everyday-tag ones from
    :class:`~captioning.everyday.EverydayOptions`', as every tool's)."""
    decoding: Mapping[str, Any] = field(default_factory=dict)  # Decoding options over the bundle's recorded ones
    n_best: int = 0  # the N best captions per image, the caption itself first (0: only the caption)
    tags: int = 5  # the top-K ImageNet labels per image, and as many everyday tags (0: none)
    everyday: EverydayOptions = EverydayOptions()  # which everyday tags (as many as tags) a record holds
    min_confidence: float = 0.0  # withhold captions whose calibrated confidence is below this: the record keeps
    # its confidence and tags, with caption and n_best null and a note, and no text sidecar or XMP description is
    # written for it; needs a bundle with a confidence calibration and beam search (beam size >= 2) (0: off)

    def __post_init__(self) -> None:
        problems = Decoding.override_problems(self.decoding)
        problems += [f"{name} must be >= 0" for name in ("n_best", "tags") if getattr(self, name) < 0]
        if not 0.0 <= self.min_confidence <= 1.0:
            problems.append(f"min_confidence must be in [0, 1], not {self.min_confidence}")
        if problems:
            raise ValueError("; ".join(problems))

    def decoding_for(self, bundle: Decoding) -> Decoding:
        """The decoding these options give with a bundle's recorded one (before the n-best widening)."""
        return bundle.replace(**self.decoding)


def run_settings(name: str, version: str, decoding: Decoding, options: CaptionOptions,
                 precision: str = "fp32") -> dict[str, Any]:
    """The SETTINGS fields of the records a run makes with the bundle ``name`` ``version`` whose
    recorded decoding is ``decoding``, the model running in ``precision``: the options in effect, a
    default resolved to the bundle's value (so "default" and the same explicit value agree)."""
    return {"model": name, "model_version": version,
            "options": {**options.decoding_for(decoding).asdict(), "n_best": options.n_best, "tags": options.tags,
                        **options.everyday.recorded(), "min_confidence": options.min_confidence,
                        "precision": precision}}


def recorded_settings(record: dict[str, Any]) -> dict[str, Any]:
    """The SETTINGS fields of a record as this version writes them: a record of format 3 or older,
    made before --min-confidence existed, withheld no caption (min_confidence 0.0); one that names
    no precision was made before --precision existed, in FP32."""
    settings = {k: record.get(k) for k in SETTINGS}
    options = settings["options"]
    if isinstance(options, dict) and "min_confidence" not in options and _version(record) < 4:
        options = settings["options"] = {**options, "min_confidence": 0.0}
    if isinstance(options, dict) and "precision" not in options:
        settings["options"] = {**options, "precision": "fp32"}
    return settings


def _version(record: dict[str, Any]) -> int:
    try:
        return int(record.get("format_version") or 1)
    except (TypeError, ValueError):
        return RECORD_FORMAT


def confidence_problem(options: CaptionOptions, decoding: Decoding, *, calibrated: bool, bundle: str) -> str | None:
    """Why ``options.min_confidence`` cannot be applied with a bundle (``bundle``: its name or
    folder, ``calibrated``: it carries a confidence calibration, ``decoding``: its recorded one),
    else None."""
    if options.min_confidence <= 0:
        return None
    if not calibrated:
        return (f"{bundle}: this bundle has no confidence calibration, so --min-confidence cannot be applied "
                "(caption-calibrate --attach fits one; or leave --min-confidence at 0)")
    beam = options.decoding_for(decoding).beam_size
    if beam < 2:
        return f"--min-confidence needs beam search with a beam of 2 or more (--beam-size is {beam})"
    return None


def has_calibration(manifest: dict[str, Any]) -> bool:
    """Whether a bundle's manifest lists a confidence calibration (:mod:`captioning.confidence`)."""
    from captioning.confidence import CONFIDENCE_FILE, FAMILIAR_FILE

    return {CONFIDENCE_FILE, FAMILIAR_FILE} <= set(manifest.get("files", {}))


@dataclass(frozen=True)
class Prepared:
    path: str  # the input path, as given
    real_path: str  # the file it names, symlinks resolved (os.path.realpath)
    pixels: np.ndarray | None  # (size, size, 3) uint8 encoder input; None when the image failed
    width: int | None  # width of the upright original image (None when it failed)
    height: int | None  # height of the upright original image
    sha256: str | None  # hex digest of the file bytes (None when the file could not be read)
    error: str | None  # one line naming the file; None when fine


def guard_decompression_bombs() -> None:
    """Make PIL's DecompressionBombWarning an error process-wide.

    ``load_image`` does this inside ``warnings.catch_warnings()``, which is not thread-safe
    before Python 3.14: with several decoding threads one thread's exit can drop another's
    filter and let a bomb through. A process-wide filter survives those save/restore races.
    """
    warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


def prepare_image(path: str, preprocessing: Preprocessing) -> Prepared:
    """Read a file once: sha256 and size from its bytes, and the preprocessed encoder input.
    Never raises for a bad file: the problem is in ``error``."""
    path = str(path)
    real_path = os.path.realpath(path)
    try:
        data = read_image_file(path)
    except ImageError as e:
        return Prepared(path, real_path, None, None, None, None, str(e))
    digest = hashlib.sha256(data).hexdigest()
    try:
        image = preprocessing.load(data)
        pixels = preprocessing.to_array(image)
    except (ImageError, OSError) as e:
        why = str(e).removeprefix(f"<{len(data)} bytes>: ")  # load_image names bytes input by its size
        return Prepared(path, real_path, None, None, None, digest, f"{path}: {' '.join(why.split())}")
    except Exception as e:  # a decoder plugin failing in an unexpected way: still only this file's problem
        why = " ".join(f"cannot decode image ({type(e).__name__}: {e})".split())
        return Prepared(path, real_path, None, None, None, digest, f"{path}: {why}")
    return Prepared(path, real_path, pixels, *image.info["full_size"], digest, None)


def _record(p: Prepared, settings: dict[str, Any]) -> dict[str, Any]:
    """A record without caption (the caption fields are filled in for good images)."""
    return {"format_version": RECORD_FORMAT, "path": p.path, "real_path": p.real_path, "caption": None,
            "confidence": None, "unfamiliar": None, "score": None, "n_best": None, "tags": None, "everyday_tags": None,
            "width": p.width, "height": p.height, "sha256": p.sha256, **settings, "note": None, "error": p.error}


def encode_prepared(captioner: Captioner, batch: Sequence[Prepared]) -> Encoded | None:
    """One encoder pass over the batch's good images (None when it has none)."""
    good = [p.pixels for p in batch if p.error is None]
    return captioner.encode(good) if good else None


def caption_encoded(captioner: Captioner, batch: Sequence[Prepared], encoded: Encoded | None,
                    options: CaptionOptions) -> list[dict[str, Any]]:
    """Records for a batch, in its order, from its encoder pass (:func:`encode_prepared`): one batched
    beam search for the good images; failed ones get their error and no caption."""
    settings = run_settings(captioner.name, captioner.version, captioner.decoding, options, captioner.precision)
    records = [_record(p, settings) for p in batch]
    good = [i for i, p in enumerate(batch) if p.error is None]
    if encoded is not None:
        decoding = options.decoding_for(captioner.decoding).for_n_best(options.n_best)
        results = captioner.decode(encoded, **decoding.asdict())
        tags = captioner.top_tags(encoded, k=options.tags) if options.tags else [[] for _ in good]
        words = (captioner.top_everyday_tags(encoded, k=options.tags, options=options.everyday) if options.tags
                 else [[] for _ in good])
        for i, r, t, w in zip(good, results, tags, words):
            n_best = ([{"text": a.text, "score": round(a.score, 4)} for a in r.alternatives[: options.n_best]]
                      if options.n_best else None)
            records[i].update(caption=r.text, confidence=None if r.confidence is None else round(r.confidence, 4),
                              unfamiliar=r.unfamiliar, score=round(r.score, 4), n_best=n_best,
                              tags=[{"label": x.label, "probability": round(x.probability, 4)} for x in t],
                              everyday_tags=[x.asdict() for x in w])
            if options.min_confidence > 0 and (r.confidence is None or r.confidence < options.min_confidence):
                records[i].update(caption=None, n_best=None, note=withheld_note(r.confidence, options.min_confidence))
    return records


def withheld_note(confidence: float | None, minimum: float) -> str:
    """The ``note`` of a record whose caption was withheld by ``min_confidence``."""
    if confidence is None:
        return f"caption withheld: no confidence to compare with min_confidence {minimum}"
    return f"caption withheld: confidence {confidence:.4f} is below min_confidence {minimum}"


def caption_prepared(captioner: Captioner, batch: Sequence[Prepared], options: CaptionOptions) -> list[dict[str, Any]]:
    """Records for a batch, in its order: its encoder pass, then its beam search."""
    return caption_encoded(captioner, batch, encode_prepared(captioner, batch), options)

