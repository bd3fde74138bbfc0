"""Python's cyclic garbage collector around a process's heavy imports.

Importing torch, Lightning, MLflow and matplotlib makes a few hundred thousand objects that live
as long as the process; every full collection walks all of them again, and the imports
themselves trigger full collections, each longer than the last: together a noticeable part of the
trainer's start, and one during the recorder's plots delays a run's end (docs/performance.md).

`paused()` holds the collector while the libraries import and then freezes what exists
(`gc.freeze`: those objects are still freed when their reference count drops, but no full
collection walks them again), so later collections walk only what the run itself made. The
price: cyclic garbage that exists at the freeze is never collected, so it is taken once per
process, right after the imports, never around a job's own objects.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


def pause() -> None:
    gc.disable()


def resume() -> None:
    """Freeze what exists now (the imported libraries) and collect again."""
    gc.freeze()
    gc.enable()


@contextmanager
def paused() -> Iterator[None]:
    pause()
    try:
        yield
    finally:
        resume()
