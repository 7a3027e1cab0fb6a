"""Versioned model bundles: ``weights/<name>/`` = manifest.json + model.safetensors + vocab.json.

The manifest carries everything needed to rebuild and use the model (format version,
model config, preprocessing, vocabulary file, encoder source, training data, metrics,
recommended decoding) and the sha256 and size of every file. Reading a manifest checks it
against its schema (captioning.manifest_schema) and that every file it names lies inside the
bundle folder; loading then verifies every hash and reads tensors with safetensors only: no
pickle anywhere in the load path. Every problem is one BundleError line naming the file.

``weights/DEFAULT`` holds the name of the default bundle: the single source of truth.

Finding, reading and verifying a manifest is torch-free (a tool plans its work and checks its
bundle before torch is imported); only building, loading and saving the model import it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from typing import TYPE_CHECKING

from .config import ARCHS, Decoding, ModelConfig
from .images import Preprocessing
from .manifest_schema import VOCABULARY_SCHEMA, manifest_schema, schema_problem
from .vocab import Vocabulary

if TYPE_CHECKING:
    import torch

    from .model import CaptionModel

FORMAT_VERSION = 2  # 2 added model.members (ensembles) and float16 decoder weights
READABLE_VERSIONS = (1, 2)
MANIFEST, WEIGHTS, VOCAB = "manifest.json", "model.safetensors", "vocab.json"
MANIFEST_SCHEMA = manifest_schema(required_files=(WEIGHTS, VOCAB))
WEIGHTS_DIR = Path(os.environ.get("CAPTIONING_WEIGHTS_DIR", Path(__file__).resolve().parent.parent / "weights"))


class BundleError(RuntimeError):
    """A missing, damaged or incompatible bundle; the message names the file and the problem."""


class NoDefaultBundleError(BundleError):
    pass


_ARCH_WORD = re.compile(r"lite\d+$")  # the leading word of a name's arch part that names an encoder


def name_problem(name: str, encoder: str) -> str | None:
    """Why the bundle name ``name`` ("<arch>.<tag>") disagrees with its model's ``encoder``, or None.
    The arch part's leading word names the encoder when it is lite<N> (``lite2_sat.coco_flickr8k``:
    efficientnet_lite2); a name of another form (``tiny_sat.test``) names none."""
    word = name.split(".")[0].split("_")[0]
    if not _ARCH_WORD.match(word):
        return None
    known = {spec.short: arch for arch, spec in ARCHS.items()}
    if word not in known:
        return f"name {name!r}: unknown arch {word!r} (known: {', '.join(known)})"
    if known[word] != encoder:
        return f"name {name!r} says {known[word]} but model.encoder is {encoder!r}"
    return None


@dataclass
class Bundle:
    path: Path  # folder of the bundle
    manifest: dict[str, Any]  # the parsed manifest.json
    model: CaptionModel  # weights loaded, in eval mode, on the CPU
    vocab: Vocabulary
    preprocessing: Preprocessing

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def decoding(self) -> dict[str, Any]:
        """Recommended decoding options recorded at training time (may be empty)."""
        return dict(self.manifest["decoding"])

    @property
    def default_decoding(self) -> Decoding:
        """The recorded decoding as :class:`Decoding` (see :func:`recorded_decoding`)."""
        return recorded_decoding(self.path, self.manifest)


def recorded_decoding(path: Path, manifest: dict[str, Any]) -> Decoding:
    """A bundle's recorded decoding as :class:`Decoding` (max_length: the model's unless recorded),
    from its manifest alone; an unknown option fails loudly."""
    try:
        return Decoding.from_dict({"max_length": ModelConfig.from_dict(manifest["model"]).max_length,
                                   **manifest["decoding"]})
    except (TypeError, ValueError) as e:
        raise BundleError(f"{path / MANIFEST}: decoding: {e}") from None


@dataclass(frozen=True)
class BundleInfo:
    name: str  # "<arch>.<tag>", e.g. "lite0_sat.flickr8k"
    version: str  # semantic version of this release of the weights
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. dev BLEU-4, CIDEr-D
    training: dict[str, Any] = field(default_factory=dict)  # data, command, time, config
    decoding: dict[str, Any] = field(default_factory=dict)  # recommended decoding options
    encoder_source: dict[str, Any] = field(default_factory=dict)  # where the encoder weights came from


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_bundle(directory: str | Path, model: CaptionModel, vocab: Vocabulary, info: BundleInfo, *,
                preprocessing: Preprocessing = Preprocessing(), half_decoder: bool = False) -> Path:
    """Write a complete bundle into ``directory`` (replaced atomically if it exists).

    ``half_decoder`` stores the decoder weights as float16 (loading casts them back to float32);
    the encoder always stays float32."""
    import torch
    from safetensors.torch import save_file

    directory = Path(directory)
    problem = name_problem(info.name, model.config.encoder)
    if problem:
        raise ValueError(problem)
    if len(vocab) != model.config.decoder.vocab_size:
        raise ValueError(f"vocabulary has {len(vocab)} words but the model expects {model.config.decoder.vocab_size}")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    state = {k: v.detach().to(torch.float16 if half_decoder and k.startswith("decoder.") else torch.float32)
             .contiguous().cpu() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt", "bundle": info.name})
    vocab.save(tmp / VOCAB)
    manifest = {
        "format_version": FORMAT_VERSION,
        "name": info.name,
        "version": info.version,
        "model": model.config.to_dict(),
        "preprocessing": preprocessing.to_dict(),
        "vocabulary": {"file": VOCAB, "size": len(vocab)},
        "encoder_source": info.encoder_source,
        "training": info.training,
        "metrics": info.metrics,
        "decoding": info.decoding,
        "files": {f: {"sha256": _sha256(tmp / f), "size": (tmp / f).stat().st_size} for f in (WEIGHTS, VOCAB)},
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)
    return directory


def record_evaluation(path: str | Path, *, metrics: dict[str, Any], decoding: dict[str, Any],
                      version: str | None = None) -> None:
    """Make measured dev ``metrics`` and the ``decoding`` that produced them the bundle's
    recommended defaults (optionally as a new ``version``). The weights are untouched, so
    their hashes stay valid; the manifest is replaced atomically."""
    path = Path(path)
    manifest = verified_manifest(path)
    manifest.update(metrics=metrics, decoding=decoding, **({"version": version} if version else {}))
    _write_manifest(path, manifest)


def record_entry(path: str | Path, key: str, value: Any) -> None:
    """Set the manifest's top-level ``key`` (``confidence``: what caption-calibrate fitted and measured;
    ``recipe``: the script that rebuilds the bundle). The weights are untouched; the manifest is
    replaced atomically."""
    path = Path(path)
    manifest = verified_manifest(path)
    manifest[key] = value
    _write_manifest(path, manifest)


def attach_file(path: str | Path, source: str | Path) -> None:
    """Copy ``source`` (e.g. a model card) into the bundle folder ``path`` under its own name and
    list it under ``files`` with its size and sha256, so it is verified like the weights."""
    path, source = Path(path), Path(source)
    manifest = verified_manifest(path)
    if source.name in (MANIFEST, WEIGHTS, VOCAB):
        raise BundleError(f"{source}: {source.name} is a bundle's own file, not an attachment")
    shutil.copyfile(source, path / source.name)
    manifest["files"][source.name] = {"sha256": _sha256(path / source.name), "size": (path / source.name).stat().st_size}
    _write_manifest(path, manifest)


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    _check_manifest(path / MANIFEST, manifest)  # never write a manifest that load_bundle would refuse
    tmp = path / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, path / MANIFEST)


def available_bundles(weights_dir: Path | None = None) -> list[str]:
    root = Path(weights_dir or WEIGHTS_DIR)
    return sorted(p.name for p in root.iterdir() if (p / MANIFEST).is_file()) if root.is_dir() else []


def resolve_bundle(name_or_path: str | os.PathLike | None = None, *, weights_dir: Path | None = None) -> Path:
    """Folder of a bundle from a path, a full name ``<arch>.<tag>``, an arch, a leading ``_``-part
    of an arch (``lite0`` of ``lite0_sat`` and ``lite0_sat_x3``), or ``None`` (the default).

    An exact arch wins over leading parts; several matches fail as ambiguous instead of guessing.
    """
    root = Path(weights_dir or WEIGHTS_DIR)
    if name_or_path is None:
        default = root / "DEFAULT"
        if not default.is_file() or not default.read_text().strip():
            raise NoDefaultBundleError(
                f"no default model bundle: {default} does not name one (no trained weights are shipped yet). "
                "Train one with caption-train or pass --weights PATH.")
        name_or_path = default.read_text().strip()
    candidate = Path(name_or_path)
    if candidate.is_dir():
        return candidate
    name = str(name_or_path)
    if (root / name).is_dir():
        return root / name
    bundles = available_bundles(root)
    matches = ([b for b in bundles if b.split(".")[0] == name or b.startswith(name + ".")]
               or [b for b in bundles if b.split(".")[0].startswith(name + "_")])
    if len(matches) == 1:
        return root / matches[0]
    known = ", ".join(bundles) or "none"
    if len(matches) > 1:
        raise BundleError(f"bundle name {name!r} is ambiguous: matches {', '.join(matches)}")
    raise BundleError(f"no bundle {name!r}: not a folder and not in {root} (available: {known})")


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of the bundle folder ``path``, checked against the schema, with every file it
    names inside the folder (checked before any of them is opened)."""
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"{mpath}: missing (not a model bundle)")
    manifest = _read_json(mpath)
    _check_manifest(mpath, manifest)
    _check_file_names(path, manifest)
    return manifest


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{path}: not valid JSON ({e})") from None


def _check_manifest(mpath: Path, manifest: Any) -> None:
    """A format version this code reads, then everything the schema says."""
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version is not None and version not in READABLE_VERSIONS:
        raise BundleError(f"{mpath}: format_version {version!r} is not supported "
                          f"(this code reads {', '.join(map(str, READABLE_VERSIONS))})")
    problem = schema_problem(manifest, MANIFEST_SCHEMA)
    if problem:
        raise BundleError(f"{mpath}: {problem}")


def _check_file_names(path: Path, manifest: dict[str, Any]) -> None:
    """Every name under ``files`` is a file inside the bundle folder; ``vocabulary.file`` is one of them."""
    mpath, root = path / MANIFEST, Path(os.path.realpath(path))
    for name in manifest["files"]:
        problem = _path_problem(root, name)
        if problem:
            raise BundleError(f"{mpath}: files[{name!r}]: {problem}")
    if manifest["vocabulary"]["file"] not in manifest["files"]:
        raise BundleError(f"{mpath}: vocabulary.file: {manifest['vocabulary']['file']!r} is not listed in files")


def _path_problem(root: Path, name: str) -> str | None:
    """Why ``name`` is not a path inside the resolved folder ``root`` (None if it is). Nothing
    is opened or stat-ed: os.path.realpath only lstats the path's components and reads the
    symlinks among them (Path.resolve would also stat the target)."""
    if Path(name).is_absolute():
        return "an absolute path (a bundle names its files relative to its folder)"
    if ".." in Path(name).parts:
        return "a '..' component (a bundle names only files inside its folder)"
    target = Path(os.path.realpath(root / name))
    if root not in target.parents:
        return f"resolves to {target}, outside the bundle folder"
    return None


def verified_manifest(path: Path) -> dict[str, Any]:
    """The manifest of the bundle folder ``path`` with every file it names checked (size and
    sha256), without building the model: what a process that hands the bundle on checks."""
    manifest = read_manifest(path)
    _verify_files(path, manifest)
    return manifest


def _verify_files(path: Path, manifest: dict[str, Any]) -> None:
    """Every file under ``files`` exists with the recorded size and sha256."""
    for fname, meta in manifest["files"].items():
        f = path / fname
        if not f.is_file():
            raise BundleError(f"{f}: missing (listed in the manifest)")
        size = f.stat().st_size
        if size != meta["size"]:
            raise BundleError(f"{f}: size {size} bytes, manifest says {meta['size']} (truncated or replaced)")
        if _sha256(f) != meta["sha256"]:
            raise BundleError(f"{f}: sha256 does not match the manifest (file modified or corrupt)")


_INITS = ("uniform_", "normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_",
          "trunc_normal_", "orthogonal_")  # torch.nn.init's random fills, as the layers' reset_parameters call them


@contextlib.contextmanager
def _no_random_init() -> Iterator[None]:
    """Modules built inside skip their random initialisation: the tensors keep whatever the
    allocator gave them. For a model whose every tensor is loaded next. (The meta device would
    do this without patching, but its first use imports torch._dynamo: 1.6 s.)"""
    import torch

    saved = {name: getattr(torch.nn.init, name) for name in _INITS}
    for name in _INITS:
        setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.nn.init, name, fn)


def _build_model(mpath: Path, manifest: dict[str, Any]) -> tuple[CaptionModel, Preprocessing]:
    """The model the manifest describes, its tensors not initialised (every one is loaded from
    the weights file next: random initialisation took ~0.15 s of each start-up), and the
    preprocessing."""
    from .model import CaptionModel

    try:
        with _no_random_init():
            model = CaptionModel(ModelConfig.from_dict(manifest["model"]))
        preprocessing = Preprocessing(**manifest["preprocessing"])
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(f"{mpath}: incompatible model or preprocessing config ({e})") from None
    problem = name_problem(manifest["name"], model.config.encoder)
    if problem:
        raise BundleError(f"{mpath}: {problem}")
    return model, preprocessing


def _load_vocabulary(file: Path) -> Vocabulary:
    data = _read_json(file)
    well_formed = isinstance(data, dict) and isinstance(data.get("words"), list) and \
        all(isinstance(w, str) for w in data["words"])  # what the schema says, ~100x faster than jsonschema
    problem = None if well_formed else schema_problem(data, VOCABULARY_SCHEMA)
    if problem:
        raise BundleError(f"{file}: {problem}")
    try:
        return Vocabulary(data["words"])
    except ValueError as e:
        raise BundleError(f"{file}: invalid vocabulary ({e})") from None


def _stored_dtypes(name: str) -> tuple[torch.dtype, ...]:
    """What a bundle stores a tensor as: float32, or float16 for decoder tensors (save_bundle's half_decoder)."""
    import torch

    return (torch.float32, torch.float16) if name.startswith("decoder.") else (torch.float32,)


def _load_weights(file: Path, model: CaptionModel) -> None:
    """Fill ``model`` with the tensors of the safetensors ``file``: the same names, float dtypes, fitting shapes."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(file))
    except Exception as e:  # safetensors raises its own error types
        raise BundleError(f"{file}: unreadable safetensors file ({e})") from None
    expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise BundleError(f"{file}: tensors do not fit the model config "
                          f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                          f"unexpected {extra[:3]}{'...' if len(extra) > 3 else ''})")
    for name, tensor in state.items():
        if tensor.dtype not in _stored_dtypes(name):
            raise BundleError(f"{file}: tensor {name!r} is {str(tensor.dtype).removeprefix('torch.')} "
                              "(a bundle stores float32, or float16 for decoder tensors)")
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise BundleError(f"{file}: tensor shapes do not fit the model config ({e})".splitlines()[0]) from None


def load_bundle(name_or_path: str | os.PathLike | None = None, *, weights_dir: Path | None = None) -> Bundle:
    """Resolve, verify and load a bundle onto the CPU in eval mode."""
    path = resolve_bundle(name_or_path, weights_dir=weights_dir)
    manifest = verified_manifest(path)
    model, preprocessing = _build_model(path / MANIFEST, manifest)
    vocab_file = path / manifest["vocabulary"]["file"]
    vocab = _load_vocabulary(vocab_file)
    if len(vocab) != manifest["vocabulary"]["size"]:
        raise BundleError(f"{vocab_file}: {len(vocab)} words, manifest says vocabulary.size "
                          f"{manifest['vocabulary']['size']}")
    if len(vocab) != model.config.decoder.vocab_size:
        raise BundleError(f"{vocab_file}: {len(vocab)} words, model config expects {model.config.decoder.vocab_size}")
    _load_weights(path / WEIGHTS, model)
    return Bundle(path=path, manifest=manifest, model=model.eval(), vocab=vocab, preprocessing=preprocessing)
