"""The tools' model load, kept out of the garbage collector's way.

Importing torch and loading a bundle make a few hundred thousand Python objects that live as long
as the process. The cycle collector walks them all at each full collection and once more when the
process exits, which costs a CLI a sizeable part of its run (docs/experiments.md, "Start-up and
exit"). The tools therefore load their model inside :func:`model_loading`: the collector is off
while torch imports and the bundle loads; then one collection frees the garbage the load left (else
it would be frozen with the rest), everything still alive is frozen (never collected again, which
costs nothing for objects that live until exit), and the collector resumes for the run's own objects.

Only the command-line tools and the web UI use it: the freeze is process-wide, a choice for the
program, not for a library (``Captioner.load`` does not freeze).
"""
from __future__ import annotations

import contextlib
import gc
from typing import Iterator


@contextlib.contextmanager
def model_loading() -> Iterator[None]:
    """Collector off inside (the import of torch, the bundle's load), then one collection,
    ``gc.freeze()``, and the collector back as it was, whether the load succeeded or not."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.collect()
        gc.freeze()
        if enabled:
            gc.enable()
