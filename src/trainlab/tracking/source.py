"""Which code a run came from: the git commit of the checkout trainlab runs from, whether the
tree had uncommitted changes, and those changes (so a run made from uncommitted code can still be
reproduced: check out the commit, `git apply` the run's `environment/git.diff`).

Each is asked of git once per process (a sweep's jobs share the answer): three `git` calls of a
few milliseconds each. An installed wheel has no checkout and records none of it.
"""

from __future__ import annotations

import functools
import subprocess

from trainlab.paths import checkout_root

DIFF_LIMIT = 1_000_000  # characters of diff kept as an artifact; the rest is cut, and said so
# What trainlab itself writes into a checkout (the embedded store, its journals, the study, run
# folders): never a change of the code, even where the user's .gitignore does not list them.
OWN_FILES = (
    "mlflow.db*", "optuna.db*", "mlartifacts/**", "mlruns/**", "outputs/**", "multirun/**",
    "server-artifacts/**",
)  # fmt: skip
NOT_CODE = tuple(f":(exclude,glob)**/{name}" for name in OWN_FILES)


def _git(*args: str) -> str | None:
    root = checkout_root()
    if root is None:
        return None
    try:
        # --no-optional-locks: `git status` would otherwise refresh the index under its lock,
        # which parallel jobs of a sweep would fight over.
        out = subprocess.run(
            ["git", "--no-optional-locks", *args],
            cwd=root, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


@functools.cache  # one `git` subprocess per process, not one per sweep job
def git_commit() -> str | None:
    out = _git("rev-parse", "HEAD")
    return out.strip() if out else None


@functools.cache
def git_changes() -> tuple[bool, str] | None:
    """(dirty, the diff against HEAD with the untracked files named); None without git."""
    status = _git("status", "--porcelain", "--", ".", *NOT_CODE)
    if status is None:
        return None
    if not status.strip():
        return False, ""
    diff = _git("diff", "HEAD", "--binary", "--", ".", *NOT_CODE) or ""
    untracked = [line[3:] for line in status.splitlines() if line.startswith("??")]
    if untracked:
        names = "".join(f"#   {name}\n" for name in untracked)
        diff += f"# untracked files, not in the diff above:\n{names}"
    if len(diff) > DIFF_LIMIT:
        diff = (
            diff[:DIFF_LIMIT] + f"\n# cut: the diff has {len(diff)} characters; "
            f"the first {DIFF_LIMIT} are above\n"
        )
    return True, diff
