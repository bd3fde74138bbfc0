"""`make bench` / `make bench-quick`: trainlab's speed against baselines measured in the same run.

Each measure runs its baseline and trainlab in turns (A, B, A, B ...: benchmarks/turns.py) and
reports the median of the rounds' ratios with their min and max; a row passes on its median.
In-process measures (P1-P4) time until everything is durable in the store; whole-process ones
(P4-par, P5, S1, F1, D1) time the command a user types, from its start to its exit. The table shows
baseline, trainlab, ratio, target and pass/fail, and for tracked runs the naive stack's time
against trainlab's (our lead over the peer); the numbers also go to a JSON file
(benchmarks/results/latest.json by default) to compare later changes with.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from benchmarks import baselines
from benchmarks.data_load import d1_csv_loading
from benchmarks.framework_measures import m1_mlp, p2_framework, p3_big_data
from benchmarks.image_measures import m2_cnn
from benchmarks.measures import (
    LEAN,
    Trainlab,
    f1_config_errors,
    p4_parallel,
    p4_serial_jobs,
    p5_whole_process,
    s1_long_run,
)
from benchmarks.search_measures import h1_pruning, h2_study_cost, h3_asynchronous
from benchmarks.store_measures import v1_stored_value
from benchmarks.turns import Result, compared, median_time, table, take_turns
from trainlab.config.checkpoint import CheckpointConfig
from trainlab.sweeps.identity import CHILD_DEFAULTS

CHILD = "a sweep child's defaults: + checkpoint, no plots, no model"
inf = float("inf")

ROOT = Path(__file__).resolve().parents[1]


def p1_tracking(lab: Trainlab, steps: int, repeats: int, naive: float, *extra: str) -> Result:
    """Per-step metrics (train/loss, weight, bias, gap) tracked against the same run untracked."""
    samples = take_turns(
        {
            "untracked": lambda: lab.run(f"max_epochs={steps}", "tracking=none"),
            "tracked": lambda: lab.run(f"max_epochs={steps}", *extra),
        },
        repeats,
    )
    label, target = (
        ("metrics only", 1.10) if extra else ("defaults: + checkpoint, plots, model", 1.25)
    )
    what = f"seed run, {steps} steps, tracked ({label}) vs untracked"
    result = compared("P1", what, samples["untracked"], samples["tracked"], target)
    result.peer = naive / result.trainlab_s
    return result


def p1_store_floor(lab: Trainlab, home: Path, steps: int, repeats: int) -> Result:
    """What MLflow's store alone needs for the same metrics, in this process (no overlap)."""
    samples = take_turns(
        {
            "store": lambda: baselines.mlflow_floor(home / "floor.db", steps, 4),
            "untracked": lambda: lab.run(f"max_epochs={steps}", "tracking=none"),
        },
        repeats,
    )
    both = [u + s for u, s in zip(samples["untracked"], samples["store"], strict=True)]
    what = f"untracked run + MLflow storing its {4 * steps} metrics in series (the old way)"
    return compared("P1-floor", what, samples["untracked"], both, float("inf"))


def c1_checkpoints(lab: Trainlab, steps: int, every: int, repeats: int) -> list[Result]:
    """What a periodic checkpoint costs a tracked run: written, committed with the metrics
    (the recorder writes the held rows, renames it, copies it into the artifacts), waited for.
    Many of them (one every 10 steps), so that their cost stands out of a run's noise."""
    lean = (f"max_epochs={steps}", *LEAN, "checkpoint.every_seconds=null")
    samples = take_turns(
        {
            "without": lambda: lab.run(*lean),
            "periodic": lambda: lab.run(*lean, f"checkpoint.every_n_steps={every}"),
        },
        repeats,
    )
    count = steps // every
    costs = [
        max(p - w, 0.0) / count
        for w, p in zip(samples["without"], samples["periodic"], strict=True)
    ]
    each = statistics.median(costs)
    what = f"seed run, {steps} steps, {count} checkpoints vs only the final one ({each * 1000:.1f} ms each)"
    default = CheckpointConfig().every_seconds or math.inf
    share = f"share of a run spent on checkpoints at the default interval (every {default:g} s)"
    return [
        compared("C1", what, samples["without"], samples["periodic"], float("inf")),
        # The baseline column holds the interval, the trainlab column one checkpoint's cost.
        Result("C1-default", share, default, each, 0.01),
    ]


def naive_stack(home: Path, steps: int, repeats: int) -> float:
    return median_time(lambda: baselines.naive_stack(steps, home / "naive.db"), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument(
        "--json", type=Path, default=ROOT / "benchmarks" / "results" / "latest.json"
    )
    parser.add_argument(
        "--only",
        nargs="*",
        help="measures to run (P1 C1 P2 P3 M1 M2 V1 P4 P4-par H1 H2 H3 P5 S1 F1 D1)",
    )
    args = parser.parse_args()
    repeats = 3 if args.quick else 5
    steps = 500 if args.quick else 2000
    rows = 200_000 if args.quick else 1_000_000
    long_jobs = 500 if args.quick else 2000  # epochs of P4-par's long sweep
    sweeps = 1 if args.quick else 3  # rounds of P4's and P4-par's sweeps taking turns
    every = [
        "P1",
        "C1",
        "P2",
        "P3",
        "M1",
        "M2",
        "V1",
        "P4",
        "P4-par",
        "H1",
        "H2",
        "H3",
        "P5",
        "S1",
        "F1",
        "D1",
    ]
    wanted = set(args.only or every)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="trainlab-bench-") as tmp:
        home = Path(tmp)
        lab = Trainlab(home)
        lab.run("max_epochs=5")  # creates the store and warms imports before anything is timed
        naive = naive_stack(home, steps, 1 if args.quick else 3) if "P1" in wanted else 0.0
        measures = [
            ("P1", lambda: p1_tracking(lab, steps, repeats, naive, *LEAN)),
            ("P1", lambda: p1_tracking(lab, steps, repeats, naive)),
            ("P1", lambda: p1_store_floor(lab, home, steps, repeats)),
            ("P1", lambda: s1_long_run(home, 5000, 1 if args.quick else 3, *LEAN)),
            ("C1", lambda: c1_checkpoints(lab, steps, 10, repeats)),
            ("P2", lambda: p2_framework(lab, steps, repeats)),
            ("P3", lambda: p3_big_data(lab, rows, "cpu", repeats)),
            ("M1", lambda: m1_mlp(lab, 20_000 if args.quick else 100_000, repeats)),
            ("M2", lambda: m2_cnn(lab, repeats)),
            ("V1", lambda: v1_stored_value(home, 2000 if args.quick else 10_000, repeats)),
            (
                "P4",
                lambda: p4_serial_jobs(lab, home, 8, "metrics only", 0.10, *LEAN, rounds=sweeps),
            ),
            (
                "P4",
                lambda: p4_serial_jobs(lab, home, 8, CHILD, 0.20, *CHILD_DEFAULTS, rounds=sweeps),
            ),
            ("P4", lambda: p4_serial_jobs(lab, home, 8, "+ plots and model", inf, rounds=sweeps)),
            ("P4-par", lambda: p4_parallel(home, 8, long_jobs, 1.6, "joblib", rounds=sweeps)),
            ("P4-par", lambda: p4_parallel(home, 8, 100, 1.0, "joblib", rounds=sweeps)),
            ("P4-par", lambda: p4_parallel(home, 8, long_jobs, 1.4, "parallel", rounds=sweeps)),
            (
                "P4-par",
                lambda: p4_parallel(
                    home, 8, long_jobs, 1.6, "parallel", "tracking=none", rounds=sweeps
                ),
            ),
            ("P4-par", lambda: p4_parallel(home, 8, 100, 1.0, "parallel", rounds=sweeps)),
            ("H1", lambda: h1_pruning(home, 20 if args.quick else 40, 60 if args.quick else 150)),
            ("H2", lambda: h2_study_cost(home, 10 if args.quick else 40, 20)),
            (
                "H3",
                lambda: h3_asynchronous(
                    home, 16, 60 if args.quick else 150, 2 if args.quick else 4
                ),
            ),
            ("P5", lambda: p5_whole_process(home, repeats, *LEAN)),
            ("P5", lambda: p5_whole_process(home, repeats)),
            (
                "S1",
                lambda: s1_long_run(home, 5000 if args.quick else 20_000, 1 if args.quick else 3),
            ),
            ("F1", lambda: f1_config_errors(home, repeats)),
            (
                "D1",
                lambda: d1_csv_loading(
                    home, 100_000 if args.quick else 1_000_000, repeats, 1 if args.quick else 3
                ),
            ),
        ]
        if torch.cuda.is_available():
            measures.append(("P3", lambda: p3_big_data(lab, rows, "cuda", repeats)))
        for name, measure in measures:
            if name in wanted:
                measured = measure()
                fresh = measured if isinstance(measured, list) else [measured]
                results.extend(fresh)
                print("\n".join(table(fresh).splitlines()[2:]), flush=True)
        lab.close()
    print()
    print(table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "quick": args.quick,
        "results": [
            {**asdict(r), "ratio": r.ratio, "spread": r.spread, "passed": r.passed} for r in results
        ],
    }
    args.json.write_text(json.dumps(record, indent=2))
    print(f"\nresults written to {args.json}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
