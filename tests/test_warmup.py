"""What a process does before its run's work: the collector held over the heavy imports and
resumed with them frozen (trainlab/collector.py), and the recorder's rehearsal of a run's end
(recorder/warmup.py). Each in a fresh interpreter: they change process-wide state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PIPELINE_TWICE = """
import gc, json
from trainlab.job import import_pipeline
before = gc.get_freeze_count()
import_pipeline()
first = gc.get_freeze_count()
import_pipeline()
print(json.dumps([before, first, gc.get_freeze_count(), gc.isenabled()]))
"""

REHEARSAL = """
import gc, json
from trainlab import collector
collector.pause()
from trainlab.recorder.warmup import WarmUp
warm = WarmUp(("plots", "model"))
warm.run_opened()
warm.ready()
print(json.dumps([gc.isenabled(), gc.get_freeze_count()]))
"""


def fresh_python(code: str, tmp_path: Path) -> tuple[list, str]:
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_the_pipeline_imports_once_with_the_collector_paused_and_its_libraries_frozen(tmp_path):
    (before, first, second, enabled), _ = fresh_python(PIPELINE_TWICE, tmp_path)
    assert before == 0
    assert first > 100_000  # torch, Lightning, MLflow: out of every later full collection
    assert second == first  # a later job's objects are never frozen
    assert enabled


def test_the_recorder_rehearsal_resumes_the_collector_and_leaves_nothing(tmp_path):
    (enabled, frozen), stderr = fresh_python(REHEARSAL, tmp_path)
    assert enabled and frozen > 100_000
    assert list(tmp_path.iterdir()) == []  # the rehearsal's model folder is gone
    assert stderr.strip() == ""  # nothing for a console to show
