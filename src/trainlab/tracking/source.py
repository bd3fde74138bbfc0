"""Which code a run came from: the git commit of the checkout trainlab runs from."""

from __future__ import annotations

import functools
import subprocess

from trainlab.paths import checkout_root


@functools.cache  # one `git` subprocess per process, not one per sweep job
def git_commit() -> str | None:
    root = checkout_root()
    if root is None:
        return None
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
