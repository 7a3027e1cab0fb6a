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
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from captioning.imagenet import imagenet_categories

if TYPE_CHECKING:
    from captioning import Captioner, Encoded
    from captioning.images import Preprocessing

from ..flags import with_changes
from ..headstart import HeadStart
from .records import (CaptionOptions, Prepared, caption_encoded, confidence_problem, encode_prepared,
                      guard_decompression_bombs, prepare_image)

BATCH_SIZE = 32  # images per model batch
WORKERS = 2  # threads reading and decoding images while the model runs
PREFETCH_BATCHES = 2  # batches read, decoded and encoded ahead of the one being beam-searched
HEAD_START = 512  # at most this many images prepared by the head start while torch loads (~100 MB at 260x260);
#                   caption-images stops it once the model is loaded: ~1.7 s on one core is ~500 Flickr8k-size
#                   photos but ~40 camera photos, whose rest the reader threads then decode on both cores


def caption_images(paths: Iterable[str | os.PathLike], captioner: Captioner, options: CaptionOptions = CaptionOptions(),
                   *, batch_size: int = BATCH_SIZE, workers: int = WORKERS, head: HeadStart[Prepared] | None = None,
                   **changes: Any) -> Iterator[dict[str, Any]]:
    """Caption image files; yields one record per path, in input order.

    ``changes`` replace options by name, Decoding's among them:
    ``caption_images(paths, captioner, n_best=3, beam_size=5)``.
    A record has the fields :data:`~pipelines.images.records.FIELDS`: ``n_best`` is a list of
    ``{text, score}`` when ``n_best > 0`` (else None); ``tags`` a list of ``{label, probability}``
    (top ``tags`` ImageNet classes). A file that cannot be read or decoded gets ``error`` (one
    line naming it) and no caption. ``workers`` threads read and decode images ahead of the
    model (``PREFETCH_BATCHES`` batches), which are encoded ahead of the beam search. ``head``
    holds the first paths already prepared (:func:`prepare_head`), in order. ``confidence`` and
    ``unfamiliar`` are None unless the bundle carries a calibration and the beam is 2 or more; with
    ``min_confidence`` > 0 (which needs both: ValueError otherwise) a caption below it is withheld
    (``caption`` and ``n_best`` None, ``note`` says why).
    """
    if batch_size < 1 or workers < 1:
        raise ValueError("batch_size and workers must be >= 1")
    options = with_changes(options, changes) if changes else options
    if problem := confidence_problem(options, captioner.decoding, calibrated=captioner.calibration is not None,
                                     bundle=captioner.name):
        raise ValueError(problem)
    guard_decompression_bombs()
    chunks = _batched(paths, batch_size)
    position = iter(range(1 << 62))  # each path's position in ``paths``
    readers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="caption-images-decode")
    encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="caption-images-encode")
    pending: deque[Future[tuple[list[Prepared], Encoded | None]]] = deque()

    def encode(reading: list[Future[Prepared]]) -> tuple[list[Prepared], Encoded | None]:
        batch = [f.result() for f in reading]
        return batch, encode_prepared(captioner, batch)

    def submit_next() -> None:
        chunk = next(chunks, None)
        if chunk:
            pending.append(encoder.submit(encode, [readers.submit(prepare, next(position), p) for p in chunk]))

    def prepare(i: int, path: str) -> Prepared:
        if head is not None and i < (head.count or 0):
            prepared = head.get(i)
            if prepared.path == path:
                return prepared
        return prepare_image(path, captioner.preprocessing)

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


def prepare_head(paths: list[str], preprocessing: Preprocessing) -> HeadStart[Prepared]:
    """The first :data:`HEAD_START` of ``paths`` prepared in a forked child (:mod:`pipelines.headstart`),
    for :func:`caption_images`' ``head``: what ``caption-images`` decodes while it imports torch."""
    head_paths = list(paths[:HEAD_START])

    def produce() -> Iterator[Prepared]:
        guard_decompression_bombs()
        return (prepare_image(p, preprocessing) for p in head_paths)

    return HeadStart(produce, ahead=len(head_paths) or 1, count=len(head_paths))


def _batched(paths: Iterable[str | os.PathLike], n: int) -> Iterator[list[str]]:
    it = iter(paths)
    while chunk := [str(p) for p in islice(it, n)]:
        yield chunk
