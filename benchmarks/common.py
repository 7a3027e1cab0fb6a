"""Helpers shared by the benchmark scripts (not a test): machine facts, backend warm-up,
interleaved timing with medians, real photos, and the commands of the CLIs.

Every script measures all the encoder backends in one run, interleaved over ``--repeats``
(repeat k starts the round at a different entry, so no entry always runs first or last),
and reports medians: on a shared machine only ratios measured in the same run compare.
"""
from __future__ import annotations

import importlib.util
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

PROJECT = Path(__file__).resolve().parent.parent
SHARED = PROJECT.parent / "shared" / "data"
FLICKR_IMAGES = SHARED / "flickr8k" / "images"
FLICKR_DEV = SHARED / "flickr8k" / "dev.txt"


# -- what ran where ------------------------------------------------------------------------------
def installed_backends() -> list[str]:
    """torch, then each runtime of :data:`captioning.runtime.RUNTIMES` whose package imports here."""
    from captioning.runtime import RUNTIMES

    return ["torch"] + [r for r in RUNTIMES if importlib.util.find_spec(r) is not None]


def parse_backends(text: str | None) -> list[str]:
    """``--backends`` (comma-separated; None or 'all': every installed one), checked. An entry is a
    backend, or ``backend:precision`` for another ``--precision`` than fp32 (``openvino:bf16``)."""
    from captioning.runtime import BACKENDS, PRECISIONS

    if not text or text == "all":
        return installed_backends()
    names = [b.strip() for b in text.split(",") if b.strip()]
    bad = [b for b in names if split_backend(b)[0] not in BACKENDS or b.startswith("auto")
           or split_backend(b)[1] not in PRECISIONS]
    if bad:
        raise SystemExit(f"unknown backend(s) {', '.join(bad)} (choose from torch, openvino, onnxruntime, "
                         f"each with an optional :precision, e.g. openvino:bf16)")
    return names


def split_backend(entry: str) -> tuple[str, str]:
    """``openvino:bf16`` -> (openvino, bf16); ``openvino`` -> (openvino, fp32)."""
    backend, _, precision = entry.partition(":")
    return backend, precision or "fp32"


def backend_flags(entry: str) -> list[str]:
    """A CLI's flags for a ``--backends`` entry."""
    backend, precision = split_backend(entry)
    return ["--backend", backend] + (["--precision", precision] if precision != "fp32" else [])


def machine_facts() -> str:
    import torch

    versions = [f"torch {torch.__version__}"]
    for name in ("openvino", "onnxruntime"):
        if importlib.util.find_spec(name) is not None:
            try:
                versions.append(f"{name} {__import__(name).__version__}")
            except Exception as e:  # a broken install: say so, the backend will be skipped
                versions.append(f"{name} (import failed: {type(e).__name__})")
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"machine: {platform.machine()} {platform.system()}, python {platform.python_version()}, "
            f"{', '.join(versions)}; torch threads {torch.get_num_threads()} (interop "
            f"{torch.get_num_interop_threads()}), cpu_count {os.cpu_count()}, usable cores {affinity}; "
            f"{load_average()}")


def load_average() -> str:
    try:
        one, five, _ = os.getloadavg()
        return f"load average {one:.1f} (1 min), {five:.1f} (5 min)"
    except OSError:
        return "load average unknown"


# -- backends ------------------------------------------------------------------------------------
def warm_backends(weights: Any, device: str, backends: Sequence[str], threads: int = 0) -> dict[str, Any]:
    """Load a Captioner per backend once (torch first), before anything is timed: the first load of
    a runtime backend exports the encoder's ONNX graph into the cache (~10 s, once) and OpenVINO
    caches its compiled graph there, so the timed runs (and the CLIs' start-up) read a warm cache.
    A backend that cannot run here is reported and left out."""
    from captioning import Captioner
    from captioning.runtime import BackendError, EncoderGraph, cache_root

    order = sorted(backends, key=lambda b: b != "torch")
    caps: dict[str, Any] = {}
    graph_state = None
    for backend in order:
        if backend != "torch" and graph_state is None and "torch" in caps:
            cap = caps["torch"]
            graph_state = EncoderGraph(cap.encoder, cap.preprocessing.size).path.is_file()
        t = time.perf_counter()
        try:
            name, precision = split_backend(backend)
            caps[backend] = Captioner.load(weights, device=device, backend=name, precision=precision, threads=threads)
        except (BackendError, RuntimeError, ImportError) as e:
            print(f"  warm-up: {backend} skipped: {' '.join(str(e).split())}")
            continue
        print(f"  warm-up: loaded {backend} in {time.perf_counter() - t:.1f} s")
    if graph_state is not None:
        print(f"  ONNX graph cache {cache_root()}: {'was already warm' if graph_state else 'exported during warm-up'}")
    return {b: caps[b] for b in backends if b in caps}


# -- timing --------------------------------------------------------------------------------------
def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timer(fn: Callable[[], Any], device: str = "cpu") -> Callable[[], float]:
    """``fn`` as a task for :func:`interleave`: returns its wall-clock seconds."""
    def run() -> float:
        synchronize(device)
        t = time.perf_counter()
        fn()
        synchronize(device)
        return time.perf_counter() - t
    return run


def interleave(tasks: dict[str, Callable[[], float]], repeats: int, *, warmup: bool = False,
               say: Callable[[str], None] | None = None) -> dict[str, list[float]]:
    """Run every task once per repeat, round-robin, repeat k starting at entry k; each task returns
    the seconds it took. ``warmup``: one untimed round first. Returns each task's seconds."""
    names = list(tasks)
    if warmup:
        for name in names:
            tasks[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            seconds[name].append(tasks[name]())
            if say:
                say(f"  repeat {r + 1}/{repeats}: {name}: {seconds[name][-1]:.2f} s")
    return seconds


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(rates: Sequence[float]) -> str:
    """min..max of the per-repeat rates (empty with one repeat)."""
    return f"{min(rates):.1f}..{max(rates):.1f}" if len(rates) > 1 else ""


# -- inputs --------------------------------------------------------------------------------------
def photo_paths(n: int, folder: Path = FLICKR_IMAGES) -> list[Path]:
    """The first ``n`` Flickr8k dev photos (``dev.txt`` order) when it is there, else the folder's
    first ``n`` JPEGs by name; fewer when there are fewer."""
    names = [line.strip() for line in FLICKR_DEV.read_text().splitlines() if line.strip()] \
        if folder == FLICKR_IMAGES and FLICKR_DEV.is_file() else []
    paths = [folder / name for name in names if (folder / name).is_file()][:n]
    if len(paths) < n:
        seen = set(paths)
        paths += [p for p in sorted(folder.glob("*.jpg")) if p not in seen][: n - len(paths)]
    return paths


# -- subprocesses --------------------------------------------------------------------------------
def tool(name: str, module: str) -> list[str]:
    """The command of a console script: the venv's entry point beside this Python, else ``python -m``."""
    script = Path(sys.executable).parent / name
    return [str(script)] if script.is_file() else [sys.executable, "-m", module]


def show(argv: Sequence[str]) -> str:
    return shlex.join(str(a) for a in argv)


def run_tool(argv: Sequence[str], log: Path) -> tuple[int, float]:
    """Run a CLI to completion (stdout and stderr to ``log``); ``(exit status, wall seconds)``, start-up included."""
    with open(log, "wb") as out:
        t = time.perf_counter()
        status = subprocess.run(list(map(str, argv)), stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT).returncode
        return status, time.perf_counter() - t


def tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join("    " + s for s in path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "    (no output)"


class BackendRuns:
    """Timed runs of one CLI per backend: ``task(backend)`` runs ``command + --out OUT --backend B +
    argv`` once per call, checks its output with ``check(out) -> (problem or None, result)`` and keeps
    ``runs[backend]`` (``{"seconds", "result"}`` per run), ``problems`` and the ``failed`` backends."""

    def __init__(self, command: list[str], argv: Sequence[Any], folder: Path, check: Callable[[Path], tuple],
                 suffix: str = ""):
        self.command, self.argv, self.folder, self.check, self.suffix = command, list(argv), folder, check, suffix
        self.runs: dict[str, list[dict]] = {}
        self.problems: list[str] = []
        self.failed: set[str] = set()

    def cmd(self, out: Any, backend: str) -> list[Any]:
        return self.command + ["--out", out, *backend_flags(backend), *self.argv]

    def task(self, backend: str) -> Callable[[], float]:
        def run() -> float:
            k = len(self.runs.setdefault(backend, []))
            stem = backend.replace(":", "-")
            out, log = self.folder / f"{stem}.{k}{self.suffix}", self.folder / f"{stem}.{k}.log"
            status, seconds = run_tool(self.cmd(out, backend), log)
            problem, result = self.check(out)
            if status != 0 or problem:
                self.failed.add(backend)
                self.problems.append(f"{backend} run {k + 1}: exit {status}, {problem or 'output fine'}\n{tail(log)}")
            self.runs[backend].append({"seconds": seconds, "result": result})
            return seconds
        return run

    def print_commands(self, backends: Sequence[str]) -> None:
        print("commands (one per backend per repeat; R = the repeat's number, from 0):")
        print(f"  {show(self.cmd(self.folder / f'B.R{self.suffix}', 'B'))}   for B in {', '.join(backends)}")
