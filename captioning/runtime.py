"""Inference backends for the encoder: PyTorch, or its ONNX graph run by OpenVINO or ONNX Runtime.

The safetensors bundle stays the source of truth. The ONNX graph is a derived artifact: built from
the loaded encoder on first use (``torch.onnx.export``, any encoder whose forward returns
:class:`~captioning.encoder.EncoderOutput`), checked against torch on a fixed input, and kept in a
cache keyed by the encoder's weights, the input size and the exporter:

    $CAPTIONING_CACHE (default ~/.cache/captioning)/encoders/<key>/encoder.onnx
                                                                 /encoder.json   sha256 + parity per runtime

Writes are atomic (a temporary file renamed into place), so processes building the same graph at
once each leave a whole file; a graph whose sha256 does not match its record is rebuilt. A runtime's
parity with torch is checked once, when the runtime first runs the graph, and recorded beside it;
OpenVINO also caches its compiled graph there (``CACHE_DIR``), so a later process skips compiling.

ONNX Runtime runs ``threads`` (0: every core) single-threaded lanes, each batch split among them;
OpenVINO one request on that many threads.

``auto`` picks, on the CPU, the fastest of OpenVINO and ONNX Runtime that imports, compiles and
matches torch (timed once per graph and thread count, recorded beside the graph), else torch (one
log line says why); on CUDA it is torch.

Precision ``bf16`` runs the same graph on OpenVINO in BF16 where the CPU has the arithmetic (AVX-512
BF16 or AMX); on a CPU without it, or without OpenVINO under ``auto``, the encoder runs in FP32 as
``fp32`` would (one log line says so). Its parity check compares directions (cosine of every output
row with torch's), not values: BF16 moves a grid cell by up to ~2 on real photos.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .config import BACKENDS, DEFAULT_BACKEND, PRECISIONS, Backend, RuntimeOptions, precision_here  # noqa: F401
from .encoder import EncoderOutput

log = logging.getLogger(__name__)

RUNTIMES = ("openvino", "onnxruntime")  # what ``auto`` tries on the CPU, in this order
# ``auto`` times each runtime alone, but the tools run the encoder beside beam search and decoding: there
# ONNX Runtime's lanes (whole images per thread) kept going where OpenVINO's one request over every core
# stalled, and on every machine measured the tools ran as fast or faster on it (tag-video 24.9x vs 20.2x
# real time, caption-images 37.4 vs 35.5 img/s, with OpenVINO 1.0x its speed alone; on another machine
# equal with OpenVINO 1.06x alone; docs/experiments.md). So another runtime must time this much faster.
PREFERRED_RUNTIME, PREFERENCE = "onnxruntime", 2.0
EXPORT_VERSION = 1  # bump when the exported graph changes for the same weights (a new key, a new build)
PARITY_ATOL = 1e-3  # largest |runtime - torch| allowed in any output on the parity input
BF16_PARITY = 0.01  # largest 1 - cosine(runtime, torch) of any output row allowed in BF16 on the parity input
CACHE_ENV = "CAPTIONING_CACHE"
# Images per ONNX Runtime run: a lane runs its part of a batch two images at a time, as fast per image
# as one at a time and 4-8% less CPU than 8 at once (the activations stay in the core's 2 MB L2;
# docs/experiments.md), with the same outputs as the whole batch at once.
ORT_ROWS = 2

Encode = Callable[[torch.Tensor], EncoderOutput]  # pixels (B, 3, H, W) -> grid, semantic vector, logits



class BackendError(RuntimeError):
    """A backend that cannot run here (not installed, failed to compile, outputs differ from torch)."""


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "captioning")


def graph_key(encoder: torch.nn.Module, size: int) -> str:
    """The cache key of an encoder's graph: its class, weights (every tensor's name, dtype, shape and
    bytes), input side and the exporter. Bundles sharing an encoder share its graph."""
    facts = {"class": type(encoder).__qualname__, "size": size, "export": EXPORT_VERSION, "torch": torch.__version__}
    h = hashlib.sha256(json.dumps(facts, sort_keys=True).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        h.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:32]


class _Outputs(torch.nn.Module):
    """The encoder with a tuple output, as an exporter needs it."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.encoder(pixels)
        return out.grid, out.pooled, out.logits


def _parity_input(size: int) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))  # (2, 3, H, W)


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class EncoderGraph:
    """The cached ONNX graph of one bundle's encoder at one input size."""

    def __init__(self, encoder: torch.nn.Module, size: int, root: Path | None = None):
        self.encoder, self.size = encoder, size
        self.folder = (root or cache_root()) / "encoders" / graph_key(encoder, size)
        self.path, self.record_path = self.folder / "encoder.onnx", self.folder / "encoder.json"

    def record(self) -> dict[str, Any]:
        try:
            record = json.loads(self.record_path.read_text())
            return record if isinstance(record, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write_record(self, record: dict[str, Any]) -> None:
        _atomic_write(self.record_path, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))

    def ensure(self) -> Path:
        """The graph file, exported first if the cache has none or its file does not match its record."""
        record = self.record()
        if self.path.is_file() and record.get("sha256") == _sha256(self.path):
            return self.path
        self.folder.mkdir(parents=True, exist_ok=True)
        log.warning("exporting the encoder for the CPU runtimes, once for this bundle (about 10 s): %s", self.path)
        _atomic_write(self.path, self._export)
        self._write_record({"sha256": _sha256(self.path), "size": self.size, "parity": {}})
        return self.path

    def _export(self, target: Path) -> None:
        batch = torch.export.Dim("batch", min=1, max=4096)
        module = _Outputs(copy.deepcopy(self.encoder).to(memory_format=torch.contiguous_format)).eval()
        with torch.inference_mode(False), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            torch.onnx.export(module, (_parity_input(self.size),), str(target), dynamo=True, external_data=False,
                              input_names=["pixels"], output_names=["grid", "pooled", "logits"],
                              dynamic_shapes=({0: batch},), verbose=False)

    def check_parity(self, runtime: str, run: Encode, precision: str = "fp32") -> None:
        """Compare ``run`` with torch on the parity input once per runtime and precision; raise
        BackendError if they differ (FP32: by more than PARITY_ATOL anywhere; BF16: in direction)."""
        record, key = self.record(), runtime if precision == "fp32" else f"{runtime}-{precision}"
        diff = record.get("parity", {}).get(key)
        if diff is None:
            x = _parity_input(self.size)
            with torch.inference_mode():
                want, got = self.encoder(x), run(x)
            diff = _difference(want, got, precision)
            record.setdefault("parity", {})[key] = diff
            self._write_record(record)
        if diff > (PARITY_ATOL if precision == "fp32" else BF16_PARITY):
            raise BackendError(f"{runtime} differs from torch by {diff:.2g}"
                               + ("" if precision == "fp32" else f" (1 - cosine, {precision})"))

    def speed(self, runtime: str, threads: int, run: Encode | None = None) -> float | None:
        """Images/s of ``runtime`` at ``threads`` on this machine: recorded, else measured with ``run``
        (the best of a few batches of 8) and recorded; None when neither."""
        record, key = self.record(), speed_key(runtime, threads)
        if key in record.get("speed", {}) or run is None:
            return record.get("speed", {}).get(key)
        x = torch.cat([_parity_input(self.size)] * 4)  # (8, 3, H, W)
        run(x)  # warm-up
        seconds = min(_timed(run, x) for _ in range(3))
        record = self.record()  # re-read: another runtime may have been recorded meanwhile
        record.setdefault("speed", {})[key] = round(len(x) / seconds, 1)
        self._write_record(record)
        return record["speed"][key]


def _difference(want: EncoderOutput, got: EncoderOutput, precision: str) -> float:
    """How far ``got`` is from torch's ``want``: the largest absolute difference in any output (fp32),
    or the largest 1 - cosine between an output row and torch's (bf16)."""
    pairs = [(getattr(want, k), getattr(got, k)) for k in ("grid", "pooled", "logits")]
    if precision == "fp32":
        return max(float((a - b).abs().max()) for a, b in pairs)
    return max(float(1 - torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1)).min())  # rows (B, -1)
               for a, b in pairs)


def _timed(run: Encode, x: torch.Tensor) -> float:
    start = time.perf_counter()
    run(x)
    return time.perf_counter() - start


def _as_output(grid: np.ndarray, pooled: np.ndarray, logits: np.ndarray) -> EncoderOutput:
    return EncoderOutput(torch.from_numpy(grid), torch.from_numpy(pooled), torch.from_numpy(logits))


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def lanes(threads: int) -> int:
    """Encoder lanes for ``threads`` (0: every core)."""
    return threads or cores()


def speed_key(runtime: str, threads: int) -> str:
    """Where a runtime's measured speed at ``threads`` is recorded (encoder.json's "speed")."""
    return f"{runtime}@{lanes(threads)}lanes"


RunPart = Callable[[int, np.ndarray], Sequence[np.ndarray]]  # (lane, pixels part) -> grid, pooled, logits


def _in_lanes(run_part: RunPart, n: int, rows: int = 0) -> Encode:
    """An encoder that splits each batch into up to ``n`` contiguous parts run at once, one thread
    each (the runtimes release the GIL), each part in runs of at most ``rows`` images (0: all at once).
    Whole images per thread beat splitting every operator across threads here: no synchronisation per
    operator, and a core the beam search takes meanwhile delays one part instead of every operator
    (caption-images used ~20% less CPU)."""
    pool = ThreadPoolExecutor(n, thread_name_prefix="encoder-lane") if n > 1 else None

    def run_rows(lane: int, x: np.ndarray) -> Sequence[np.ndarray]:
        if not rows or len(x) <= rows:
            return run_part(lane, x)
        outs = [run_part(lane, x[i:i + rows]) for i in range(0, len(x), rows)]
        return [np.concatenate(out) for out in zip(*outs)]

    def run(pixels: torch.Tensor) -> EncoderOutput:
        x = pixels.contiguous().numpy()  # (B, 3, H, W)
        if pool is None or len(x) == 1:
            return _as_output(*run_rows(0, x))
        parts = np.array_split(x, min(n, len(x)))  # contiguous (B_i, 3, H, W), sum B_i = B
        outs = list(pool.map(run_rows, range(len(parts)), parts))
        return _as_output(*(np.concatenate(out) for out in zip(*outs)))

    return run


def _openvino(graph: EncoderGraph, threads: int, precision: str = "fp32") -> Encode:
    import openvino as ov

    # One request on lanes(threads) threads of OpenVINO's own: two requests run from Python lane
    # threads hung intermittently inside infer (the input copy), so OpenVINO is not run in lanes.
    config = {"INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16"}[precision],  # bf16 is OpenVINO's default
              "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": lanes(threads),  # where the CPU has it
              "CACHE_DIR": str(graph.folder / "openvino")}
    return openvino_encode(ov.Core().compile_model(str(graph.ensure()), "CPU", config))


def openvino_encode(compiled: Any, n: int = 1) -> Encode:
    """An OpenVINO compiled encoder graph as an :data:`Encode` in ``n`` lanes (an infer request
    each, reused)."""
    requests = [compiled.create_infer_request() for _ in range(n)]

    def run_part(lane: int, x: np.ndarray) -> list[np.ndarray]:
        result = requests[lane].infer([x])
        return [np.array(result[out]) for out in compiled.outputs]  # copies: the request reuses its buffers

    return _in_lanes(run_part, n)


def _onnxruntime(graph: EncoderGraph, threads: int) -> Encode:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # parallel over images instead (_in_lanes)
    options.log_severity_level = 3
    session = ort.InferenceSession(str(graph.ensure()), options, providers=["CPUExecutionProvider"])
    return _in_lanes(lambda lane, x: session.run(None, {"pixels": x}), lanes(threads), ORT_ROWS)


_RUNTIMES: dict[str, Callable[[EncoderGraph, int], Encode]] = {"openvino": _openvino, "onnxruntime": _onnxruntime}


def runtime_encoder(graph: EncoderGraph, runtime: str, threads: int = 0, precision: str = "fp32") -> Encode:
    """``graph`` run by ``runtime`` (``threads`` 0: the runtime's default) in ``precision``, checked
    against torch; any failure is a BackendError naming the runtime."""
    try:
        run = _openvino(graph, threads, precision) if precision != "fp32" else _RUNTIMES[runtime](graph, threads)
        graph.check_parity(runtime, run, precision)
        return run
    except BackendError:
        raise
    except ImportError as e:
        raise BackendError(f"{runtime} is not installed ({e})") from e
    except Exception as e:  # an exporter or compiler failure: the message is the runtime's own
        raise BackendError(f"{runtime} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e


def choose_backend(backend: str, device: torch.device, graph: Callable[[], EncoderGraph],
                   threads: int = 0, precision: str = "fp32") -> tuple[str, Encode | None, str]:
    """``(name, encode, precision)`` for ``backend`` on ``device``; ``encode`` None means torch, and
    ``precision`` is the one the encoder runs in. ``auto`` falls back to torch with one log line; a
    backend asked for by name fails with BackendError. ``bf16`` runs on OpenVINO (``auto`` or
    ``openvino``), and in FP32 with one log line where the CPU has no BF16 arithmetic."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if precision not in PRECISIONS:
        raise BackendError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    if precision == "bf16":
        if device.type != "cpu" or backend not in ("auto", "openvino"):
            raise BackendError(f"precision bf16 runs on OpenVINO on the CPU (backend auto or openvino), "
                               f"not {backend} on {device}")
        if precision_here("bf16") != "bf16":
            log.warning("the encoder runs in FP32: %s", "OpenVINO finds no BF16 arithmetic on this CPU (AVX-512 "
                        "BF16 or AMX)" if _imports("openvino") else "OpenVINO is not installed")
        else:
            try:
                return "openvino", runtime_encoder(graph(), "openvino", threads, "bf16"), "bf16"
            except BackendError as e:
                if backend == "openvino":
                    raise
                log.warning("the encoder runs in FP32: %s", e)
    if backend == "torch" or (backend == "auto" and device.type != "cpu"):
        return "torch", None, "fp32"
    if device.type != "cpu":
        raise BackendError(f"backend {backend} runs on the CPU, not {device} (use --backend torch)")
    if backend != "auto":
        return backend, runtime_encoder(graph(), backend, threads), "fp32"
    return (*_fastest(graph(), threads), "fp32")


def _imports(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def _weighted(runtime: str, speed: float | None) -> float | None:
    """A runtime's measured speed as ``auto`` ranks it."""
    return None if speed is None else speed * (PREFERENCE if runtime == PREFERRED_RUNTIME else 1.0)


def _fastest(graph: EncoderGraph, threads: int) -> tuple[str, Encode | None]:
    """``auto`` on the CPU: the fastest runtime that works here and matches torch, else torch, where
    :data:`PREFERRED_RUNTIME`'s speed counts :data:`PREFERENCE` times. Speeds are measured on first use
    (every runtime built and timed) and read from the record after that, so a later load builds only
    the fastest (the next one if that fails)."""
    speeds = {r: _weighted(r, graph.speed(r, threads)) for r in RUNTIMES}
    runs: dict[str, Encode] = {}
    problems = []
    for runtime in sorted(RUNTIMES, key=lambda r: -1.0 if speeds[r] is None else -speeds[r]):
        if runs and speeds[runtime] is not None and speeds[runtime] <= max(speeds[r] for r in runs):
            break  # a faster one works
        try:
            runs[runtime] = runtime_encoder(graph, runtime, threads)
        except BackendError as e:
            problems.append(str(e))
            continue
        speeds[runtime] = _weighted(runtime, graph.speed(runtime, threads, runs[runtime]))
    if runs:
        best = max(runs, key=lambda r: speeds[r])
        return best, runs[best]
    log.warning("encoder runs on torch: %s", "; ".join(problems))
    return "torch", None
