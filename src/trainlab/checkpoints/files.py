"""Checkpoint files on disk, as both sides of a run handle them: the trainer writes
`last.ckpt.partial`; whoever commits it (the recorder, or the trainer of an untracked run)
fsyncs it, renames it over `last.ckpt` and links the best-k slots. No torch, no MLflow here.

Best-k: the artifact store has no delete in MLflow's client for every store, so the best k
checkpoints live in fixed slots `best-1.ckpt` (the best) .. `best-k.ckpt`, overwritten as better
ones come. Links, not copies: a slot keeps its file when last.ckpt is replaced.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

ARTIFACT_DIR = "checkpoints"  # where a run's checkpoints sit among its artifacts
LAST = "last.ckpt"
PARTIAL = ".partial"  # a file being written; never read as a checkpoint


def fsync_path(path: Path) -> None:
    """A file's bytes (or a folder's entries) on disk before anyone relies on them."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (a power cut after it must not undo it)."""
    fsync_path(folder)


def best_slot(last: Path, rank: int) -> Path:
    return last.with_name(f"best-{rank}.ckpt")


def link_best(last: Path, rank: int | None, count: int) -> list[Path]:
    """Put `last` in slot best-<rank> and move the slots below it down one (best-k drops out);
    returns the slots that changed."""
    if rank is None or rank > count:
        return []
    for i in range(count - 1, rank - 1, -1):
        if best_slot(last, i).exists():
            os.replace(best_slot(last, i), best_slot(last, i + 1))
    staged = best_slot(last, rank).with_suffix(".ckpt" + PARTIAL)
    with contextlib.suppress(FileNotFoundError):
        staged.unlink()
    try:
        os.link(last, staged)
    except OSError:  # a file system without hard links
        staged.write_bytes(last.read_bytes())
    os.replace(staged, best_slot(last, rank))
    sync_folder(last.parent)
    return [best_slot(last, i) for i in range(rank, count + 1) if best_slot(last, i).exists()]
