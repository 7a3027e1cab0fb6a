"""The Ray engine of ``caption-images --engine ray``: the same records, computed by a Ray cluster.

Ray Data pipeline: the path list -> ``map`` tasks that read, hash and preprocess each image
(``--workers`` at a time) -> ``map_batches`` with a Captioner actor class (the model is
loaded once per actor, ``--actors`` of them) -> records streamed back to the driver in input
order, where the CLI writes them (so resume works exactly as with the local engine).

Every node needs this package installed and must see the image files and the bundle folder
under the same paths (a shared filesystem), because tasks open them by path. Ray is only
imported here.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from captioning.images import Preprocessing
from captioning.bundle import recorded_decoding, resolve_bundle, verified_manifest
from captioning.config import RuntimeOptions, precision_here

from captioning.bundle import BundleError

from .records import (CaptionOptions, Prepared, caption_prepared, confidence_problem, guard_decompression_bombs,
                      has_calibration, prepare_image, run_settings)


def _read(row: dict[str, Any], *, preprocessing: Preprocessing) -> dict[str, Any]:
    """Ray ``map`` task: one path -> preprocessed pixels (zeros when failed) + the rest as JSON."""
    guard_decompression_bombs()
    p = prepare_image(row["path"], preprocessing)
    pixels = p.pixels if p.pixels is not None else np.zeros((preprocessing.size, preprocessing.size, 3), np.uint8)
    info = {k: v for k, v in asdict(p).items() if k not in ("path", "pixels")}
    return {"path": p.path, "pixels": pixels, "info": json.dumps(info)}


class CaptionActor:
    """Ray ``map_batches`` callable class: one Captioner per actor, records out as JSON strings."""

    def __init__(self, bundle: str, runtime: RuntimeOptions, options: CaptionOptions):
        from captioning import Captioner  # imports torch: in the actor, not in the driver

        self.captioner = Captioner.load(bundle, **asdict(runtime))
        self.options = options

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        prepared = []
        for path, pixels, info in zip(batch["path"], batch["pixels"], batch["info"]):
            info = json.loads(info)
            prepared.append(Prepared(path=str(path), pixels=pixels if info["error"] is None else None, **info))
        records = caption_prepared(self.captioner, prepared, self.options)
        return {"record": np.array([json.dumps(r) for r in records], dtype=object)}


class RayEngine:
    """Callable ``engine(paths) -> records in input order``; checks the bundle and connects
    to Ray when built, so problems surface before any work (as RuntimeError / BundleError)."""

    def __init__(self, weights: str | os.PathLike | None, *, options: CaptionOptions, batch_size: int, workers: int,
                 actors: int, cpus_per_actor: float, runtime: RuntimeOptions, address: str | None):
        try:
            import ray
        except ImportError:
            raise RuntimeError("--engine ray needs Ray: pip install 'captioning-toolkit[ray]'") from None
        path = Path(resolve_bundle(weights)).resolve()
        self.bundle = str(path)  # actors load it by path
        manifest = verified_manifest(path)  # checked here, so a damaged bundle fails before Ray starts
        self.preprocessing = Preprocessing(**manifest["preprocessing"])
        self.options = options
        decoding = recorded_decoding(path, manifest)
        if problem := confidence_problem(options, decoding, calibrated=has_calibration(manifest), bundle=str(path)):
            raise BundleError(problem)
        self.settings = run_settings(manifest["name"], manifest["version"], decoding, options,  # the SETTINGS fields
                                     precision_here(runtime.precision))  # of the records the actors make
        # each actor's threads: its CPUs unless given
        self.runtime = replace(runtime, threads=runtime.threads or max(1, int(cpus_per_actor)))
        self.batch_size, self.workers = batch_size, workers
        self.actors, self.cpus_per_actor = actors, cpus_per_actor
        self._started = False
        if not ray.is_initialized():
            try:
                ray.init(address=address)
            except (ConnectionError, ValueError) as e:
                raise RuntimeError(f"cannot connect to Ray at {address or 'RAY_ADDRESS / local'} ({e})") from None
            self._started = True

    def __call__(self, paths: list[str]) -> Iterator[dict[str, Any]]:
        import ray  # an optional extra: only --engine ray needs it (checked in __init__)

        context = ray.data.DataContext.get_current()
        saved = context.execution_options.preserve_order, context.enable_progress_bars
        context.execution_options.preserve_order = True  # records come back in input order
        context.enable_progress_bars = False  # the CLI shows its own
        gpus = 1 if self.runtime.device.startswith("cuda") else 0
        ds = ray.data.from_items([{"path": str(p)} for p in paths])
        ds = ds.map(_read, fn_kwargs={"preprocessing": self.preprocessing}, concurrency=self.workers)
        ds = ds.map_batches(CaptionActor, fn_constructor_kwargs={"bundle": self.bundle, "runtime": self.runtime,
                                                                 "options": self.options},
                            batch_size=self.batch_size, batch_format="numpy", concurrency=self.actors,
                            num_cpus=self.cpus_per_actor, num_gpus=gpus)
        try:
            for expected, row in zip(paths, ds.iter_rows(), strict=True):
                record = json.loads(row["record"])
                if record["path"] != str(expected):
                    raise RuntimeError(f"Ray returned {record['path']} where {expected} was expected (order lost)")
                yield record
        finally:
            context.execution_options.preserve_order, context.enable_progress_bars = saved
            if self._started:
                ray.shutdown()
