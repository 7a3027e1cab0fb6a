"""numpy's BLAS on one thread, inside the blocks where this toolkit multiplies matrices with it.

numpy's wheels bring OpenBLAS, which runs a matrix product on every core and then keeps its
threads spinning for a while. The toolkit's products are small (a batch of semantic vectors
against the training photos, ImageNet probabilities rolled up into everyday words) and fall
between the encoder's and the decoder's work, which those spinning threads slow down: beside the
confidence's products, beam search took 7.3 instead of 5.3 ms an image (docs/experiments.md).
threadpoolctl sets the limit for the block only, so a caller's own numpy keeps its threads.
"""
from __future__ import annotations

import functools
from typing import Any


@functools.lru_cache(maxsize=1)
def _controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()  # the BLAS libraries loaded now (numpy's, imported by the caller)


def one_thread() -> Any:
    """A context manager: numpy's BLAS runs on one thread inside the block."""
    return _controller().limit(limits=1, user_api="blas")
