"""The Python API every tool is built on: ``Captioner``."""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Sequence

import numpy as np
import torch

from .bundle import Bundle, load_bundle
from .confidence import FEATURES, Calibration, features, load_calibration
from .decoding import Decoding, Hypothesis, beam_search, greedy, sample, samples_to_hypotheses
from .imagenet import imagenet_categories
from .everyday import EverydayOptions, EverydayTag, everyday_tags
from .images import ImageInput
from .results import Alternative, CaptionResult, Tag
from .runtime import DEFAULT_BACKEND, EncoderGraph, choose_backend

Method = Literal["beam", "greedy", "sample"]
log = logging.getLogger(__name__)
_said: set[str] = set()


def _say_once(message: str) -> None:
    """Log ``message`` once per process."""
    if message not in _said:
        _said.add(message)
        log.warning(message)


@dataclass
class Encoded:
    """Encoder output of a batch: computed once, then decoded, tagged and embedded."""

    grid: torch.Tensor  # (B, S*S, 1280) spatial features
    pooled: torch.Tensor  # (B, 1280) semantic vectors
    logits: torch.Tensor  # (B, 1000) ImageNet logits

    def __len__(self) -> int:
        return self.grid.shape[0]


def resolve_device(device: str) -> torch.device:
    """``auto`` = CUDA when available, else the CPU; a CUDA device without CUDA fails here."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available (use --device cpu)")
    return torch.device(device)


def _calibration(bundle: Bundle) -> tuple[Calibration | None, str | None]:
    """The bundle's confidence calibration, or None and why: it has none, or one this version cannot
    read (captioning goes on without it)."""
    try:
        calibration = load_calibration(bundle.path, bundle.manifest)
    except (OSError, ValueError, KeyError) as e:
        return None, (f"bundle {bundle.name}: its confidence calibration is not readable here ({e}): captions have "
                      "confidence None (caption-calibrate --attach fits a new one)")
    if calibration is None:
        return None, (f"bundle {bundle.name} has no confidence calibration: captions have confidence None "
                      "(caption-calibrate --attach fits one)")
    return calibration, None


class Captioner:
    """Caption, tag and embed images with a model bundle.

    >>> from captioning import examples
    >>> cap = Captioner.load()               # the default bundle (weights/DEFAULT)
    >>> cap.caption(examples.photo("cat")).text
    """

    def __init__(self, bundle: Bundle, *, device: str = "auto", backend: str = DEFAULT_BACKEND,
                 precision: str = "fp32", threads: int = 0, compile: bool = False):
        self.bundle = bundle
        self.device = resolve_device(device)
        if threads:
            torch.set_num_threads(threads)  # the decoder's (and a torch encoder's)
        self.model = bundle.model.to(self.device).eval()
        self.encoder = self.model.encoder.to(memory_format=torch.channels_last)
        self.vocab = bundle.vocab
        self.preprocessing = bundle.preprocessing
        self.decoding = bundle.default_decoding  # per-call options override it
        self.calibration, why = _calibration(bundle)  # None: captions without confidence
        if why:
            _say_once(why)
        size = self.preprocessing.size
        if compile and backend not in ("auto", "torch"):
            raise ValueError(f"compile applies to the torch backend, not {backend}")
        backend = "torch" if compile else backend
        if compile and precision != "fp32":
            raise ValueError(f"compile runs the encoder in fp32, not {precision}")
        self.backend, runtime, self.precision = choose_backend(  # "torch", "openvino" or "onnxruntime"; "fp32" or "bf16"
            backend, self.device, lambda: EncoderGraph(self.encoder, size), threads, precision)
        self._encode = runtime or self.encoder
        if compile:  # last: the warm-up reads the preprocessing
            self._try_compile()

    @classmethod
    def load(cls, weights: str | os.PathLike | None = None, *, device: str = "auto", backend: str = DEFAULT_BACKEND,
             precision: str = "fp32", threads: int = 0, compile: bool = False) -> "Captioner":
        """Load a bundle by name, folder path, or the default. ``backend`` runs the encoder
        (:mod:`captioning.runtime`: ``auto``, ``openvino``, ``onnxruntime`` or ``torch``) in ``precision``
        (``fp32``; or ``bf16`` where the CPU has it: the encoder on OpenVINO, the decoder under torch's
        autocast; :attr:`precision` says which it got) on
        ``threads`` threads (0: the runtime's default); ``compile`` runs a torch encoder through
        torch.compile (eager if unavailable)."""
        return cls(load_bundle(weights), device=device, backend=backend, precision=precision, threads=threads,
                   compile=compile)

    def _try_compile(self) -> None:
        try:
            compiled = torch.compile(self.encoder, dynamic=False)
            with torch.inference_mode():
                compiled(torch.zeros(1, 3, self.preprocessing.size, self.preprocessing.size, device=self.device)
                         .to(memory_format=torch.channels_last))
            self._encode = compiled
        except Exception:  # no compiler toolchain, unsupported platform...: stay eager
            self._encode = self.encoder

    @property
    def name(self) -> str:
        return self.bundle.name

    @property
    def version(self) -> str:
        return self.bundle.version

    # -- building blocks -------------------------------------------------------------
    def pixels(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """Load and preprocess images -> (B, 3, size, size) on the device (size: preprocessing.size). uint8 arrays
        already resized by ``preprocessing.to_array`` pass straight through."""
        loaded = [im if isinstance(im, np.ndarray) and im.dtype == np.uint8 and im.shape == self._array_shape
                  else self.preprocessing.load(im) for im in images]
        pixels = self.preprocessing.to_tensor(loaded).to(self.device)  # (B, 3, size, size)
        return pixels.contiguous(memory_format=torch.channels_last) if self.backend == "torch" else pixels

    @property
    def _array_shape(self) -> tuple[int, int, int]:
        return (self.preprocessing.size, self.preprocessing.size, 3)

    @torch.inference_mode()
    def encode(self, images: Sequence[ImageInput]) -> Encoded:
        """One encoder pass over a batch of images."""
        out = self._encode(self.pixels(images))
        return Encoded(out.grid.contiguous(), out.pooled, out.logits)

    @torch.inference_mode()
    def decode(self, encoded: Encoded, *, method: Method = "beam", beam_size: int | None = None,
               max_length: int | None = None, min_length: int | None = None, length_penalty: float | None = None,
               no_repeat_ngram_size: int | None = None, no_repeat_words: bool | None = None,
               no_dangling_end: bool | None = None, temperature: float = 1.0, top_p: float = 1.0,
               seed: int | None = None) -> list[CaptionResult]:
        """Captions for an encoded batch (see :meth:`caption` for the options; ``None`` = the bundle's)."""
        d = self.decoding.replace(beam_size=beam_size, max_length=max_length, min_length=min_length,
                                  length_penalty=length_penalty, no_repeat_ngram_size=no_repeat_ngram_size,
                                  no_repeat_words=no_repeat_words, no_dangling_end=no_dangling_end)
        if d.beam_size < 1 or d.max_length < 1:
            raise ValueError("beam_size and max_length must be >= 1")
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            nbests = self._decode(encoded, method, d, temperature=temperature, top_p=top_p, seed=seed)
        results = [self._result(nbest) for nbest in nbests]
        if self.calibration is not None and method == "beam" and d.beam_size > 1:
            self._rate(results, encoded)
        return results

    def _decode(self, encoded: Encoded, method: Method, d: Decoding, *, temperature: float, top_p: float,
                seed: int | None) -> list[list[Hypothesis]]:
        """The n-best hypotheses of each image of the batch by ``method``."""
        dec, grid, pooled = self.model.decoder, encoded.grid, encoded.pooled
        if method == "greedy" or (method == "beam" and d.is_greedy):
            nbests = [[h] for h in greedy(dec, grid, pooled, vocab=self.vocab, max_length=d.max_length,
                                          min_length=d.min_length)]
        elif method == "beam":
            nbests = beam_search(dec, grid, pooled, vocab=self.vocab, **d.asdict())
        elif method == "sample":
            gen = torch.Generator(device=grid.device)
            gen.manual_seed(seed if seed is not None else torch.seed())
            samples = sample(dec, grid, pooled, vocab=self.vocab, max_length=d.max_length, temperature=temperature,
                             top_p=top_p, generator=gen)
            nbests = [[h] for h in samples_to_hypotheses(samples, vocab=self.vocab)]
        else:
            raise ValueError(f"unknown decoding method {method!r} (beam, greedy or sample)")
        return nbests

    def _rate(self, results: list[CaptionResult], encoded: Encoded) -> None:
        """Each result's confidence and its photo's unfamiliar flag (captioning.confidence)."""
        cal = self.calibration
        x = features([r.score for r in results], [r.tokens for r in results], encoded.pooled.float().cpu().numpy(),
                     encoded.logits.float().softmax(dim=-1).cpu().numpy(), cal.familiar)  # (B, F)
        familiarity = x[:, FEATURES.index("familiarity")]
        for r, c, u in zip(results, cal.confidence(x), cal.unfamiliar(familiarity)):
            r.confidence, r.unfamiliar = float(c), bool(u)

    def _result(self, nbest: list[Hypothesis]) -> CaptionResult:
        alts = [Alternative(" ".join(self.vocab.decode(h.tokens)), h.score, h.logprob) for h in nbest]
        best = nbest[0]
        words = [self.vocab.itos[i] for i in best.tokens]
        side = math.isqrt(best.attention.shape[-1])  # S, the grid side
        attention = best.attention.reshape(len(words), side, side).numpy()  # (T, S*S) -> (T, S, S)
        return CaptionResult(alts[0].text, words, best.score, best.logprob, alts, attention)

    def top_tags(self, encoded: Encoded, *, k: int = 5) -> list[list[Tag]]:
        """Top-k ImageNet labels of each image of an encoded batch."""
        probs, idx = encoded.logits.float().softmax(dim=-1).topk(k, dim=-1)  # (B, k)
        names = imagenet_categories()
        return [[Tag(names[i], p) for p, i in zip(prow, irow)] for prow, irow in zip(probs.tolist(), idx.tolist())]

    def top_everyday_tags(self, encoded: Encoded, *, k: int = 5, options: EverydayOptions = EverydayOptions()
                          ) -> list[list[EverydayTag]]:
        """Top-k everyday tags of each image of an encoded batch: ImageNet's classes rolled up into
        words people write (:mod:`captioning.everyday`), each with its summed probability and its best class."""
        return everyday_tags(encoded.logits.float().softmax(dim=-1).cpu().numpy(), k=k, options=options)

    # -- conveniences ------------------------------------------------------------------
    def caption(self, image: ImageInput, **options: Any) -> CaptionResult:
        """Caption one image (path, PIL image, numpy HxWx3 array or encoded bytes).

        Options: ``method`` ("beam", "greedy", "sample"), ``beam_size``, ``max_length``,
        ``min_length``, ``length_penalty``, ``no_repeat_ngram_size``, ``no_repeat_words``,
        ``no_dangling_end`` (default: the bundle's, :attr:`decoding`), ``temperature``, ``top_p``, ``seed``.
        """
        return self.decode(self.encode([image]), **options)[0]

    def caption_batch(self, images: Iterable[ImageInput], *, batch_size: int = 32,
                      **options: Any) -> list[CaptionResult]:
        """Caption many images, ``batch_size`` at a time; results in input order."""
        images = list(images)
        results: list[CaptionResult] = []
        for i in range(0, len(images), batch_size):
            results += self.decode(self.encode(images[i:i + batch_size]), **options)
        return results

    def tags(self, image: ImageInput, *, k: int = 5) -> list[Tag]:
        """Top-k ImageNet labels of one image with their probabilities."""
        return self.top_tags(self.encode([image]), k=k)[0]

    def everyday_tags(self, image: ImageInput, *, k: int = 5, options: EverydayOptions = EverydayOptions()
                      ) -> list[EverydayTag]:
        """Top-k everyday tags of one image ("dog 0.93 — golden retriever 0.61"), see :meth:`top_everyday_tags`."""
        return self.top_everyday_tags(self.encode([image]), k=k, options=options)[0]

    def embed(self, images: Iterable[ImageInput], *, batch_size: int = 32) -> np.ndarray:
        """Semantic vectors (B, 1280) as float32."""
        images = list(images)
        vecs = [self.encode(images[i:i + batch_size]).pooled.float().cpu().numpy()
                for i in range(0, len(images), batch_size)]
        return np.concatenate(vecs) if vecs else np.zeros((0, 1280), np.float32)
