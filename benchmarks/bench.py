"""`make bench` / `make bench-quick`: trainlab's speed against baselines measured in the same run.

Each measure runs its baseline and trainlab side by side, several times, and keeps the median.
The table shows baseline, trainlab, ratio, target and pass/fail; the numbers also go to a JSON
file (benchmarks/results/latest.json by default) so later changes can be compared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from benchmarks import baselines

ROOT = Path(__file__).resolve().parents[1]
# What a run records beyond its metrics: plots and the logged model (issue 6); measured both ways.
LEAN = ("tracking.plots=false", "tracking.log_model=false")
BIN = Path(sys.executable).parent


@dataclass
class Result:
    name: str
    what: str
    baseline_s: float
    trainlab_s: float
    target: float  # trainlab / baseline must be <= target (or >= for speed-ups, see `higher`)
    higher: bool = False

    @property
    def ratio(self) -> float:
        return (
            self.trainlab_s / self.baseline_s
            if not self.higher
            else self.baseline_s / self.trainlab_s
        )

    @property
    def passed(self) -> bool:
        return self.ratio >= self.target if self.higher else self.ratio <= self.target


def median_time(fn: Callable[[], float | None], repeats: int) -> float:
    """Median seconds of `fn` (its own return value when it times itself, else wall time)."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        own = fn()
        samples.append(own if own is not None else time.perf_counter() - start)
    return statistics.median(samples)


class Trainlab:
    """trainlab in-process: Hydra's compose API over conf/, then pipeline.run (no subprocess)."""

    def __init__(self, home: Path) -> None:
        os.environ["TRAINLAB_HOME"] = str(home)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        from hydra import initialize_config_dir
        from trainlab.schema import register_configs

        from trainlab.paths import CONFIG_DIR
        from trainlab.pipeline import quiet_libraries

        register_configs()
        quiet_libraries()
        self._hydra = initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3")
        self._hydra.__enter__()

    def compose(self, *overrides: str):
        from hydra import compose

        return compose(config_name="train", overrides=list(overrides))

    def run(self, *overrides: str) -> float:
        from contextlib import redirect_stdout
        from io import StringIO

        from trainlab.pipeline import run

        cfg = self.compose("print_every=0", *overrides)
        start = time.perf_counter()
        with redirect_stdout(StringIO()):
            run(cfg)
        return time.perf_counter() - start

    def big_data_epoch(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
        """One epoch through trainlab's Lightning path (module, batcher, Trainer), untracked."""
        from trainlab.lightning_fit import build_module, fit_lightning

        from trainlab.data import Dataset
        from trainlab.pipeline import check_config

        cfg = self.compose(
            "data=synthetic",
            f"data.batch_size={batch_size}",
            "max_epochs=1",
            "tracking=none",
            "print_every=0",
            f"device.accelerator={'gpu' if x.is_cuda else 'cpu'}",
        )
        settings = check_config(cfg)
        data = Dataset(x, y)
        module = build_module(cfg, data)
        start = time.perf_counter()
        fit_lightning(settings, module, data, "gpu" if x.is_cuda else "cpu", None)
        if x.is_cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start


def cli_seconds(args: list[str], home: Path, repeats: int) -> float:
    env = {**os.environ, "TRAINLAB_HOME": str(home)}

    def once() -> None:
        subprocess.run(args, check=True, env=env, capture_output=True, cwd=home)

    once()  # warm the OS file cache and the store
    return median_time(once, repeats)


def p1_tracking(lab: Trainlab, steps: int, repeats: int, *extra: str) -> Result:
    """Per-step metrics (train/loss, weight, bias) tracked against the same run untracked."""
    tracked = median_time(lambda: lab.run(f"max_epochs={steps}", *extra), repeats)
    untracked = median_time(lambda: lab.run(f"max_epochs={steps}", "tracking=none"), repeats)
    label = "metrics only" if extra else "defaults: + checkpoint, plots, model"
    return Result(
        "P1", f"seed run, {steps} steps, tracked ({label}) vs untracked", untracked, tracked, 1.10
    )


def p1_floor(lab: Trainlab, home: Path, steps: int, repeats: int) -> Result:
    """What MLflow's store alone needs for the same metrics (train/loss, weight, bias)."""
    store = median_time(lambda: baselines.mlflow_floor(home / "floor.db", steps, 3), repeats)
    untracked = median_time(lambda: lab.run(f"max_epochs={steps}", "tracking=none"), repeats)
    return Result(
        "P1-floor",
        f"untracked run + MLflow storing its {3 * steps} metrics alone",
        untracked,
        untracked + store,
        1.10,
    )


def p2_floor(steps: int, repeats: int) -> Result:
    """Lightning's own share: a bare module in Trainer(barebones=True), one batch per epoch."""
    x, y = baselines.seed_tensors()
    from trainlab.data import TensorBatches

    batches = TensorBatches(x, y, None, False, 0)
    raw = median_time(lambda: baselines.raw_seed_loop(steps), repeats)
    floor = median_time(lambda: baselines.lightning_floor(batches, steps, 1, 1, "cpu"), repeats)
    return Result(
        "P2-floor",
        f"bare LightningModule, barebones Trainer vs raw loop, {steps} steps",
        raw,
        floor,
        3.0,
    )


def p2_framework(lab: Trainlab, steps: int, repeats: int) -> Result:
    raw = median_time(lambda: baselines.raw_seed_loop(steps), repeats)
    ours = median_time(lambda: lab.run(f"max_epochs={steps}", "tracking=none"), repeats)
    return Result("P2", f"seed run untracked vs raw seed loop, {steps} steps", raw, ours, 3.0)


def naive_reference(home: Path, steps: int, repeats: int) -> Result:
    store = home / "naive.db"
    naive = median_time(lambda: baselines.naive_stack(steps, store), repeats)
    raw = median_time(lambda: baselines.raw_seed_loop(steps), repeats)
    return Result(
        "ref", f"naive stack (tracked) vs raw seed loop, {steps} steps", raw, naive, float("inf")
    )


def p3_big_data(lab: Trainlab, rows: int, device: str, repeats: int, target: float) -> list[Result]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, 64, generator=generator).to(device)
    y = (x @ torch.randn(64, 1, generator=generator).to(device)).contiguous()
    raw = median_time(lambda: baselines.raw_big_data_epoch(x, y, 1024), repeats)
    ours = median_time(lambda: lab.big_data_epoch(x, y, 1024), repeats)
    name = "P3" if device == "cpu" else "P3-gpu"
    from trainlab.data import TensorBatches

    batches = TensorBatches(x, y, 1024, True, 0)
    floor = median_time(lambda: baselines.lightning_floor(batches, 1, 64, 1, device), repeats)
    return [
        Result(name, f"one epoch {rows}x64 float32, batch 1024, {device}", raw, ours, target),
        Result(
            f"{name}-floor",
            f"same epoch, bare module in barebones Trainer, {device}",
            raw,
            floor,
            target,
        ),
    ]


def p4_sweep_jobs(lab: Trainlab, home: Path, jobs: int, *extra: str) -> Result:
    """Steady-state seconds per tracked seed job (100 epochs), as a serial sweep runs them."""
    times = [lab.run(f"seed={i}", "experiment_name=bench_sweep", *extra) for i in range(jobs)]
    ours = statistics.median(times[1:])
    naive = statistics.median(
        [baselines.naive_stack(100, home / "naive_sweep.db") for _ in range(3)]
    )
    label = " ".join(extra) or "defaults: plots and model logged"
    return Result(
        "P4", f"s per tracked 100-epoch job, {label} (naive {naive:.3f} s)", 0.10, ours, 1.0
    )


def p4_parallel(home: Path, jobs: int) -> Result:
    base = [
        str(BIN / "trainlab-train"),
        "-m",
        f"seed=range({jobs})",
        "print_every=0",
        "experiment_name=bench_par",
    ]
    serial = cli_seconds(base, home, 1)
    parallel = cli_seconds([*base, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], home, 1)
    return Result(
        "P4-par",
        f"{jobs}-job sweep: serial vs joblib n_jobs=2 (speed-up)",
        serial,
        parallel,
        1.6,
        higher=True,
    )


def p5_cold_start(home: Path, repeats: int, *extra: str) -> Result:
    bare = cli_seconds(
        [sys.executable, "-c", "import torch, lightning, mlflow, hydra"], home, repeats
    )
    command = [str(BIN / "trainlab-train"), "experiment=seed_pipeline", "print_every=0", *extra]
    ours = cli_seconds(command, home, repeats)
    label = " ".join(extra) or "defaults"
    return Result("P5", f"trainlab-train seed pipeline ({label}) vs bare import", bare, ours, 1.15)


def table(results: list[Result]) -> str:
    lines = [
        "| measure | what | baseline s | trainlab s | ratio | target | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        sign = ">=" if r.higher else "<="
        target = "-" if r.target == float("inf") else f"{sign} {r.target:g}"
        verdict = "-" if r.target == float("inf") else ("pass" if r.passed else "FAIL")
        lines.append(
            f"| {r.name} | {r.what} | {r.baseline_s:.4f} | {r.trainlab_s:.4f} | {r.ratio:.2f} | {target} | {verdict} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument(
        "--json", type=Path, default=ROOT / "benchmarks" / "results" / "latest.json"
    )
    parser.add_argument("--only", nargs="*", help="measures to run (P1 P2 P3 P4 P5 ref)")
    args = parser.parse_args()
    repeats = 3 if args.quick else 5
    steps = 500 if args.quick else 2000
    rows = 200_000 if args.quick else 1_000_000
    wanted = set(args.only or ["P1", "P2", "ref", "P3", "P4", "P5"])
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="trainlab-bench-") as tmp:
        home = Path(tmp)
        lab = Trainlab(home)
        lab.run("max_epochs=5")  # creates the store and warms imports before anything is timed
        steps_list = [
            ("P1", lambda: p1_tracking(lab, steps, repeats, *LEAN)),
            ("P1", lambda: p1_tracking(lab, steps, repeats)),
            ("P1", lambda: p1_floor(lab, home, steps, repeats)),
            ("P2", lambda: p2_framework(lab, steps, repeats)),
            ("P2", lambda: p2_floor(steps, repeats)),
            ("ref", lambda: naive_reference(home, steps, 1 if args.quick else 3)),
            ("P3", lambda: p3_big_data(lab, rows, "cpu", repeats, 1.25)),
            ("P4", lambda: p4_sweep_jobs(lab, home, 5 if args.quick else 9)),
            ("P4", lambda: p4_sweep_jobs(lab, home, 5 if args.quick else 9, *LEAN)),
            ("P4", lambda: p4_parallel(home, 8)),
            ("P5", lambda: p5_cold_start(home, repeats)),
            ("P5", lambda: p5_cold_start(home, repeats, *LEAN)),
        ]
        if torch.cuda.is_available():
            steps_list.append(("P3", lambda: p3_big_data(lab, rows, "cuda", repeats, 1.3)))
        for name, measure in steps_list:
            if name in wanted:
                measured = measure()
                fresh = measured if isinstance(measured, list) else [measured]
                results.extend(fresh)
                print("\n".join(table(fresh).splitlines()[2:]), flush=True)
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
        "results": [{**asdict(r), "ratio": r.ratio, "passed": r.passed} for r in results],
    }
    args.json.write_text(json.dumps(record, indent=2))
    print(f"\nresults written to {args.json}")


if __name__ == "__main__":
    main()
