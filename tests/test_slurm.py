"""trainlab on a real SLURM cluster (scripts/ci-slurm.sh: one node, this machine)."""

from __future__ import annotations

import subprocess

import pytest

from tests.slurm_cluster import slurm  # noqa: F401  (the fixture)


@pytest.mark.slow
def test_the_cluster_runs_a_job(slurm):  # noqa: F811
    done = subprocess.run(
        ["srun", f"--partition={slurm}", "--time=1", "hostname"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
