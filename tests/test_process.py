"""trainlab/process.py: a command ends at once with its status, its output all there."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import sys
from trainlab.process import console_script

def main():
    print("x" * 100_000)  # more than a pipe's buffer: a lost flush would show
    print("to stderr", file=sys.stderr)
    {ending}

console_script(main)
"""


@pytest.mark.parametrize(
    ("ending", "status", "message"),
    [
        ("return 'ignored'", 0, ""),
        ("sys.exit()", 0, ""),
        ("sys.exit(2)", 2, ""),
        ("sys.exit('bad input: expected a number')", 1, "bad input: expected a number"),
    ],
)
def test_a_command_exits_with_its_status_and_all_its_output(ending, status, message):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(ending=ending)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == status
    assert done.stdout == "x" * 100_000 + "\n"
    assert done.stderr.splitlines() == ["to stderr", *([message] if message else [])]


def test_a_bug_keeps_its_traceback():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(ending="raise RuntimeError('a bug')")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "RuntimeError: a bug" in done.stderr
