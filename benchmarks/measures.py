"""The measuring tools of `make bench`: results and their table, trainlab in-process, and the
whole-process measures (sweeps, cold start, long runs, config errors)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from benchmarks.turns import Result, compared, take_turns
from trainlab import pipeline
from trainlab.callbacks.from_config import build_callbacks
from trainlab.config.checks import check_config
from trainlab.config.schema import register_configs
from trainlab.data.batches import TensorBatches
from trainlab.data.dataset import Dataset
from trainlab.engines.base import FitContext
from trainlab.engines.lightning import LightningEngine
from trainlab.job import run_one
from trainlab.logs import quiet_libraries
from trainlab.models.build import build_module
from trainlab.paths import CONFIG_DIR, output_dir
from trainlab.signals import Interrupts
from trainlab.tracking.connection import TrackingTarget
from trainlab.tracking.messages import Reply, Sync
from trainlab.tracking.recorders import private_recorder

# What a run records beyond its metrics: checkpoint, plots and the logged model; measured both ways.
LEAN = ("tracking.plots=false", "tracking.log_model=false")
BIN = Path(sys.executable).parent


class Trainlab:
    """trainlab in-process: Hydra's compose API over conf/, then the entry's own `train` (checks,
    recorder, pipeline) as `trainlab-train` runs it after composing."""

    def __init__(self, home: Path) -> None:
        os.environ["TRAINLAB_HOME"] = str(home)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        register_configs()
        quiet_libraries()
        self._hydra = initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3")
        self._hydra.__enter__()

    def close(self) -> None:
        self._hydra.__exit__(None, None, None)

    def compose(self, *overrides: str) -> DictConfig:
        return compose(config_name="train", overrides=["print_every=0", *overrides])

    def run(self, *overrides: str) -> float:
        """Seconds until the run's everything is in the store (a single run waits for that)."""
        cfg = self.compose(*overrides)
        start = time.perf_counter()
        with redirect_stdout(StringIO()):
            run_one(cfg, None)
        return time.perf_counter() - start

    def untracked_callbacks(self) -> int:
        """How many callbacks trainlab's Trainer gets for an untracked seed run."""
        settings = check_config(self.compose("tracking=none"))
        data = Dataset(torch.ones(4, 1), torch.ones(4, 1))
        module = build_module(settings, data)
        context = FitContext(
            settings=settings,
            data=data,
            module=module,
            accelerator="cpu",
            run=None,
            interrupts=Interrupts(),
            checkpoint_dir=output_dir() / "bench",
        )
        return len(build_callbacks(settings.callbacks, context))

    def fit_context(self, *overrides: str) -> FitContext:
        """An untracked fit of this config, its data loaded and its module built as a run's."""
        settings = check_config(self.compose(*overrides, "tracking=none"))
        data = pipeline.load_data(settings)
        return FitContext(
            settings=settings,
            data=data,
            module=pipeline.new_module(settings, data),
            accelerator="cpu",
            run=None,
            interrupts=Interrupts(),
            checkpoint_dir=output_dir() / "bench",
        )

    def engine_fit(self, overrides: tuple[str, ...]) -> float:
        """Seconds of trainlab's Lightning engine fitting the config (callbacks included)."""
        context = self.fit_context(*overrides)
        start = time.perf_counter()
        LightningEngine().fit(context)
        return time.perf_counter() - start

    def floor_fit(self, overrides: tuple[str, ...]) -> float:
        """Seconds of a barebones Trainer fitting the same module over the same batches."""
        context = self.fit_context(*overrides)
        settings, data = context.settings, context.data
        batches = TensorBatches(data.x_train, data.y_train, settings.data.batch_size, True, 0)
        start = time.perf_counter()
        L.Trainer(max_epochs=settings.max_epochs, barebones=True, accelerator="cpu").fit(
            context.module, batches
        )
        return time.perf_counter() - start

    def big_data_epoch(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
        """One epoch through trainlab's Lightning engine (module, batcher, Trainer), untracked."""
        device = "gpu" if x.is_cuda else "cpu"
        settings = check_config(
            self.compose(
                "data=synthetic", f"data.batch_size={batch_size}", "max_epochs=1",
                "tracking=none", f"device.accelerator={device}",
            )
        )  # fmt: skip
        data = Dataset(x, y)
        module = build_module(settings, data)
        context = FitContext(
            settings=settings,
            data=data,
            module=module,
            accelerator=device,
            run=None,
            interrupts=Interrupts(),
            checkpoint_dir=output_dir() / "bench",
        )
        start = time.perf_counter()
        LightningEngine().fit(context)
        if x.is_cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start


def p4_serial_jobs(
    lab: Trainlab, home: Path, jobs: int, label: str, target: float, *extra: str, rounds: int = 1
) -> Result:
    """Seconds per tracked 100-epoch job of a serial sweep, as its jobs run: each job returns
    once the recorder has its run (plots and model are written while the next job trains); the
    time includes waiting for the last job's to be in the store. Untracked and tracked sweeps
    take turns."""

    def sweep(tracked: bool) -> float:
        options = extra if tracked else ("tracking=none",)
        settings = [check_config(lab.compose(f"seed={i}", *options)) for i in range(jobs)]
        recorder = private_recorder()
        target = TrackingTarget(
            recorder=recorder,
            uri=f"sqlite:///{home / 'mlflow.db'}",
            experiment_name="bench_sweep",
            run_name=None,
            tags={},
            artifact_root=str(home / "mlartifacts"),
            wait=Reply.QUEUED,
        )
        start = time.perf_counter()
        with redirect_stdout(StringIO()):
            for job in settings:
                pipeline.run(job, target if tracked else None)
        recorder.send(Sync(), reply=Reply.HANDLED)  # the last job's plots and model are in
        return (time.perf_counter() - start) / jobs

    samples = take_turns(
        {"untracked": lambda: sweep(False), "tracked": lambda: sweep(True)}, rounds
    )
    untracked, tracked = (statistics.median(samples[k]) for k in ("untracked", "tracked"))
    what = f"s per tracked 100-epoch job, serial {jobs}-job sweep, {label} (untracked {untracked:.3f} s)"
    # The target is in seconds: the baseline column holds it, the ratio is seconds / target
    # (a row without a target only informs).
    return Result("P4", what, target, tracked, 1.0 if target < float("inf") else target)


def wall(command: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, cwd=cwd, capture_output=True)
    return time.perf_counter() - start


def p4_parallel(
    home: Path, jobs: int, epochs: int, target: float, launcher: str, *extra: str, rounds: int = 1
) -> Result:
    """A sweep run serially against the same sweep on `launcher` with 2 workers, in turns:
    `joblib` (the plugin's default, loky: fresh workers that import torch and Lightning again)
    or trainlab's `parallel` preset (forked workers that inherit them); tracked, or with
    `extra` overrides."""
    env = {**os.environ, "TRAINLAB_HOME": str(home)}
    base = [
        str(BIN / "trainlab-train"),
        "-m",
        f"seed=range({jobs})",
        f"max_epochs={epochs}",
        "print_every=0",
        "experiment_name=bench_par",
        *extra,
    ]
    launched = [*base, f"hydra/launcher={launcher}", "hydra.launcher.n_jobs=2"]
    samples = take_turns(
        {"serial": lambda: wall(base, env, home), "parallel": lambda: wall(launched, env, home)},
        rounds,
    )
    how = " ".join(extra) or "tracked"
    what = f"{jobs}-job sweep of {epochs} epochs ({how}): serial vs {launcher} n_jobs=2 (speed-up)"
    return compared("P4-par", what, samples["serial"], samples["parallel"], target, higher=True)


def p5_whole_process(home: Path, repeats: int, *extra: str) -> Result:
    env = {**os.environ, "TRAINLAB_HOME": str(home)}
    bare = [sys.executable, "-c", "import torch, lightning, mlflow, hydra"]
    ours = [str(BIN / "trainlab-train"), "experiment=seed_pipeline", "print_every=0", *extra]
    wall(ours, env, home)  # warm the OS file cache and the store
    samples = take_turns(
        {"bare": lambda: wall(bare, env, home), "ours": lambda: wall(ours, env, home)}, repeats
    )
    label, target = (" ".join(extra), 1.00) if extra else ("defaults", 1.10)
    what = f"`trainlab-train` seed pipeline ({label}) vs bare import process, whole process"
    return compared("P5", what, samples["bare"], samples["ours"], target)


def s1_long_run(home: Path, steps: int, repeats: int, *extra: str) -> Result:
    """A long seed run tracked (with the defaults, or `extra`) against untracked, whole
    processes in turns: S1, or P1 as a whole process with the metrics only."""
    env = {**os.environ, "TRAINLAB_HOME": str(home)}
    run = [str(BIN / "trainlab-train"), f"max_epochs={steps}", "print_every=0"]
    untracked, tracked = [*run, "tracking=none"], [*run, *extra]
    samples = take_turns(
        {
            "untracked": lambda: wall(untracked, env, home),
            "tracked": lambda: wall(tracked, env, home),
        },
        repeats,
    )
    if extra:
        what = f"{steps}-step seed run, metrics only, vs untracked, whole process"
        return compared("P1-process", what, samples["untracked"], samples["tracked"], 1.10)
    what = f"{steps}-step seed run with the defaults vs untracked, whole process"
    return compared("S1", what, samples["untracked"], samples["tracked"], 1.15)


F1_CASES = [
    ["optimizer=foo"],
    ["optimizer.momentun=0.9"],
    ["max_epochs=ten"],
    ["optimizer.lr=0"],
    ["data=csv", "data.path=/no/such.csv", "data.target=y"],
    ["data=csv", "data.path={home}/bench.csv", "data.target=price"],
]


def f1_config_errors(home: Path, repeats: int) -> Result:
    """The slowest of the config errors, command start to its error line (the process exits
    right after printing it)."""
    env = {**os.environ, "TRAINLAB_HOME": str(home)}
    (home / "bench.csv").write_text("a,b\n1,2\n")
    worst = 0.0
    for case in F1_CASES:
        command = [str(BIN / "trainlab-train"), *(a.format(home=home) for a in case)]
        worst = max(worst, statistics.median(wall(command, env, home) for _ in range(repeats)))
    what = f"slowest of {len(F1_CASES)} config errors (option, key, type, value, CSV), to exit"
    return Result("F1", what, 1.0, worst, 1.0)
