"""D1: loading a large CSV, whole processes timed side by side in the same run.

A rows x 20 CSV of random numbers (six decimals) is written once; then, in turns so that the
machine's drift falls on all of them alike, three processes read it: `pyarrow.csv.read_csv` (the
baseline: pyarrow's reader alone, into an Arrow table), `pandas.read_csv` (what most people
write), and trainlab's own loading (trainlab.data.tables: the header check, pyarrow's read, the
checks and the float64 arrays the trainer uses). Each time is the median of the turns. Also
timed, informative: the whole `trainlab-train data=csv ... tracking=none max_epochs=1` command
on the same file.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from benchmarks.measures import BIN
from benchmarks.turns import Result, compared

COLUMNS = 20  # 19 features and the target `y`
TARGET_ROWS = 1_000_000
PYARROW = "import pyarrow.csv; pyarrow.csv.read_csv({path!r})"
PANDAS = "import pandas; pandas.read_csv({path!r})"
TRAINLAB = (
    "from trainlab.config.data import CsvDataConfig\n"
    "from trainlab.data.arrays import checked\n"
    "from trainlab.data.tables import read_table\n"
    "raw = checked(read_table(CsvDataConfig(path={path!r}, target='y'), 'regression'))\n"
    "assert raw.x.shape == ({rows}, {features}) and raw.x.dtype.name == 'float64'\n"
)


def write_csv(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    names = [f"x{i}" for i in range(COLUMNS - 1)] + ["y"]
    columns = {name: np.round(rng.normal(size=rows), 6) for name in names}
    pa_csv.write_csv(pa.table(columns), path)


def timed(command: list[str], cwd: Path) -> float:
    """Seconds from the command's start to its exit; it must succeed."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["TRAINLAB_HOME"] = str(cwd)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed: {done.stderr.strip()[-2000:]}")
    return seconds


def d1_csv_loading(home: Path, rows: int, repeats: int, train_repeats: int) -> list[Result]:
    path = home / "d1.csv"
    if not path.exists():
        write_csv(path, rows)
    size = f"{rows:,} x {COLUMNS}"
    scripts = {
        "pyarrow": PYARROW.format(path=str(path)),
        "pandas": PANDAS.format(path=str(path)),
        "trainlab": TRAINLAB.format(path=str(path), rows=rows, features=COLUMNS - 1),
    }
    commands = {name: [sys.executable, "-c", script] for name, script in scripts.items()}
    for command in commands.values():  # the file in the OS cache, the imports' files too
        timed(command, home)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            samples[name].append(timed(command, home))
    median = {name: statistics.median(times) for name, times in samples.items()}
    train = [
        str(BIN / "trainlab-train"),
        *("data=csv", f"data.path={path}", "data.target=y"),
        *("tracking=none", "max_epochs=1", "print_every=0"),
    ]
    train_s = statistics.median(timed(train, home) for _ in range(train_repeats))
    baseline = median["pyarrow"]
    # The target is the issue's, for a million rows; on fewer, importing trainlab's config and
    # errors (Hydra, OmegaConf) weighs more than the reading, and the row only informs.
    target, scope = (1.3, "") if rows >= TARGET_ROWS else (float("inf"), "; target at 1M rows")
    return [
        compared(
            "D1",
            f"load a {size} CSV (read, checks, float64 arrays) vs pyarrow.csv.read_csv, "
            f"whole process{scope}",
            samples["pyarrow"],
            samples["trainlab"],
            target,
        ),
        compared(
            "D1-pandas",
            f"pandas.read_csv of the same {size} CSV vs pyarrow.csv.read_csv, whole process",
            samples["pyarrow"],
            samples["pandas"],
            float("inf"),
        ),
        Result(
            "D1-train",
            f"`trainlab-train data=csv ... tracking=none max_epochs=1` on the {size} CSV vs "
            "pyarrow.csv.read_csv, whole process",
            baseline,
            train_s,
            float("inf"),
        ),
    ]
