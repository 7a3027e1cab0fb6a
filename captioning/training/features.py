"""Feature cache: run the encoder once per image, keep the grids as memory-mapped float16.

Layout of a cache folder ``<root>/<encoder fingerprint>/``:
- ``grids.f16``: rows of (S*S, 1280) float16, S = the input size / 32, appended (or, with
  ``stop=k``, of the activations entering encoder block k, e.g. (192, S, S) for k = 15: what
  training caches when it fine-tunes the blocks from k on);
- ``index.json``: image sha256 -> row, rewritten atomically after the rows are flushed.

The folder is keyed by a fingerprint of the encoder weights, the preprocessing, the view
(``hflip=True`` caches the grids of mirrored images, a training augmentation) and the
block it stops at, and each row
by the sha256 of the image file, so a changed encoder or a changed image is a
miss, never a stale hit. A run killed mid-way keeps every row that made it into the
index; the tail beyond it is cut off on the next open.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..encoder import EfficientNetLite
from ..images import Preprocessing

CACHE_DIR = "cache/features"  # the tools' default cache folder (relative to the working directory)


def encoder_fingerprint(encoder: EfficientNetLite, preprocessing: Preprocessing, *, hflip: bool = False,
                        stop: int | None = None) -> str:
    view = {**({"hflip": True} if hflip else {}),  # the plain grids keep the fingerprint they always had
            **({"stop": stop} if stop is not None else {})}
    h = hashlib.sha256(json.dumps({**preprocessing.to_dict(), **view}, sort_keys=True).encode())
    # activations entering block `stop` depend on the weights before it only, so fine-tuned last blocks keep the key
    weights = encoder.state_dict() if stop is None else encoder.trunk_state_dict(stop)
    for name, tensor in sorted(weights.items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def file_sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class FeatureCache:
    def __init__(self, root: str | os.PathLike, encoder: EfficientNetLite, preprocessing: Preprocessing, *,
                 hflip: bool = False, stop: int | None = None):
        self.encoder, self.preprocessing, self.hflip, self.stop = encoder.eval(), preprocessing, hflip, stop
        self.device = next(encoder.parameters()).device  # images are encoded there, rows kept on the CPU
        self.dir = Path(root) / encoder_fingerprint(encoder, preprocessing, hflip=hflip, stop=stop)
        with torch.inference_mode():  # the row shape follows the input size (S = size / 32, rounded up)
            x = torch.zeros(1, 3, preprocessing.size, preprocessing.size, device=self.device)
            probe = encoder(x).grid if stop is None else encoder.trunk(x, stop=stop)
        self.row_shape: tuple[int, ...] = tuple(probe.shape[1:])  # (S*S, 1280) grid, or (C, H, W) activations
        self._row_bytes = int(np.prod(self.row_shape)) * 2
        self.dir.mkdir(parents=True, exist_ok=True)
        self._data, self._index_path = self.dir / "grids.f16", self.dir / "index.json"
        self.index: dict[str, int] = json.loads(self._index_path.read_text()) if self._index_path.exists() else {}
        with open(self._data, "ab") as f:  # drop rows a killed run wrote but never indexed
            f.truncate(len(self.index) * self._row_bytes)

    def grids(self, paths: Sequence[str | os.PathLike], *, batch_size: int = 32, workers: int = 2,
              progress: bool = True) -> np.ndarray:
        """(N, S*S, 1280) float16 memory-mapped grids for ``paths`` (or (N, C, H, W) activations
        with ``stop``), encoding only the misses."""
        with ThreadPoolExecutor(workers) as pool:
            shas = list(pool.map(file_sha256, paths))
        missing = sorted({s: p for s, p in zip(shas, paths) if s not in self.index}.items())
        if missing:
            self._encode(missing, batch_size=batch_size, workers=workers, progress=progress)
        store = np.memmap(self._data, dtype=np.float16, mode="r", shape=(len(self.index), *self.row_shape))
        rows = np.fromiter((self.index[s] for s in shas), dtype=np.int64, count=len(shas))
        return store if np.array_equal(rows, np.arange(len(store))) else store[rows]

    @torch.inference_mode()
    def _encode(self, items: list[tuple[str, str | os.PathLike]], *, batch_size: int, workers: int,
                progress: bool) -> None:
        encoder = self.encoder.to(memory_format=torch.channels_last)
        bar = tqdm(total=len(items), desc="encoding images", unit="img", disable=not progress)

        def prepare(path):
            array = self.preprocessing.to_array(self.preprocessing.load(path))  # (size, size, 3) uint8
            return np.ascontiguousarray(array[:, ::-1]) if self.hflip else array

        with ThreadPoolExecutor(workers) as pool, open(self._data, "ab") as f:
            for i in range(0, len(items), batch_size):
                chunk = items[i:i + batch_size]
                arrays = list(pool.map(prepare, [p for _, p in chunk]))
                pixels = self.preprocessing.to_tensor(arrays).to(self.device, memory_format=torch.channels_last)
                out = encoder(pixels).grid if self.stop is None else encoder.trunk(pixels, stop=self.stop)
                f.write(out.to(torch.float16).cpu().contiguous().numpy().tobytes())  # (B, S*S, 1280) or (B, C, H, W)
                f.flush()
                os.fsync(f.fileno())
                for sha, _ in chunk:
                    self.index[sha] = len(self.index)
                self._save_index()
                bar.update(len(chunk))
        bar.close()

    def _save_index(self) -> None:
        tmp = self._index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.index))
        os.replace(tmp, self._index_path)
