"""The local SLURM cluster the cluster tests run on (scripts/ci-slurm.sh installs and starts it).

`slurm` is a fixture: the partition to submit to when a controller answers and a node takes jobs;
otherwise the test is skipped with the reason, except in CI (CI=true), where it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

PARTITION = "debug"  # the partition scripts/ci-slurm.sh defines


def unavailable_reason() -> str | None:
    """Why no SLURM job can run here, or None when one can."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "SLURM is not installed (sbatch not found); run scripts/ci-slurm.sh as root"
    try:
        states = subprocess.run(
            ["sinfo", "--noheader", f"--partition={PARTITION}", "--format=%T"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return "the SLURM controller does not answer (sinfo timed out); run scripts/ci-slurm.sh"
    if states.returncode != 0:
        return f"the SLURM controller does not answer ({states.stderr.strip()}); run scripts/ci-slurm.sh"
    usable = ("idle", "mixed", "allocated", "completing")
    if not any(s.strip().startswith(usable) for s in states.stdout.splitlines()):
        found = ", ".join(states.stdout.split()) or "no node"
        return f"SLURM partition {PARTITION} has no node that takes jobs ({found}); run scripts/ci-slurm.sh"
    return None


@pytest.fixture(scope="session")
def slurm() -> str:
    """The partition to submit to (skips, or fails in CI, when there is no cluster)."""
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return PARTITION
