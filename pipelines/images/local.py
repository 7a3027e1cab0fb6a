"""The local engine of ``caption-images``: three stages overlapped on the machine's cores.
Images are read and preprocessed in a thread pool, the encoder runs in a thread of its own on
the next batch while the main thread beam-searches the current one (OpenVINO, ONNX Runtime and
torch's kernels release the GIL); every image gets one record (failed ones with ``error`` set),
in input order."""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any, Iterable, Iterator

from captioning import Captioner, Encoded
from captioning.encoder import imagenet_categories

from ..flags import with_changes
from .records import CaptionOptions, Prepared, caption_encoded, encode_prepared, guard_decompression_bombs, prepare_image

BATCH_SIZE = 32  # images per model batch
WORKERS = 2  # threads reading and decoding images while the model runs
PREFETCH_BATCHES = 2  # batches read, decoded and encoded ahead of the one being beam-searched


def caption_images(paths: Iterable[str | os.PathLike], captioner: Captioner, options: CaptionOptions = CaptionOptions(),
                   *, batch_size: int = BATCH_SIZE, workers: int = WORKERS, **changes: Any) -> Iterator[dict[str, Any]]:
    """Caption image files; yields one record per path, in input order.

    ``changes`` replace options by name, Decoding's among them:
    ``caption_images(paths, captioner, n_best=3, beam_size=5)``.
    A record has the fields :data:`~pipelines.images.records.FIELDS`: ``n_best`` is a list of
    ``{text, score}`` when ``n_best > 0`` (else None); ``tags`` a list of ``{label, probability}``
    (top ``tags`` ImageNet classes). A file that cannot be read or decoded gets ``error`` (one
    line naming it) and no caption. ``workers`` threads read and decode images ahead of the
    model (``PREFETCH_BATCHES`` batches), which are encoded ahead of the beam search.
    """
    if batch_size < 1 or workers < 1:
        raise ValueError("batch_size and workers must be >= 1")
    options = with_changes(options, changes) if changes else options
    guard_decompression_bombs()
    chunks = _batched(paths, batch_size)
    readers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="caption-images-decode")
    encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="caption-images-encode")
    pending: deque[Future[tuple[list[Prepared], Encoded | None]]] = deque()

    def encode(reading: list[Future[Prepared]]) -> tuple[list[Prepared], Encoded | None]:
        batch = [f.result() for f in reading]
        return batch, encode_prepared(captioner, batch)

    def submit_next() -> None:
        chunk = next(chunks, None)
        if chunk:
            pending.append(encoder.submit(encode, [readers.submit(prepare_image, p, captioner.preprocessing)
                                                   for p in chunk]))

    try:
        if options.tags:  # the label names come from a slow torchvision import: do it while the first batch decodes
            readers.submit(imagenet_categories)
        for _ in range(1 + PREFETCH_BATCHES):
            submit_next()
        while pending:
            batch, encoded = pending.popleft().result()
            submit_next()  # keep the readers and the encoder busy while this batch is beam-searched
            yield from caption_encoded(captioner, batch, encoded, options)
    finally:
        encoder.shutdown(wait=True, cancel_futures=True)
        readers.shutdown(wait=True, cancel_futures=True)


def _batched(paths: Iterable[str | os.PathLike], n: int) -> Iterator[list[str]]:
    it = iter(paths)
    while chunk := [str(p) for p in islice(it, n)]:
        yield chunk
