"""`make bench`'s measures of Optuna searches: H1, what median pruning saves a 40-trial search
and what it costs its best objective (whole processes, the same search with and without); H2,
what the study's storage costs a trial (in this process, the sweeper's and the trial's calls as
a search makes them, on a SQLite study beside the store)."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import optuna

from benchmarks.measures import BIN, wall
from benchmarks.turns import Result
from trainlab.sweeps.search import JOBS_ATTR
from trainlab.sweeps.study import TrialHandle, build_pruner, open_storage
from trainlab.sweeps.trials import StudyLink, TrialJob

# Trials long enough for training to dominate a job (13 batches an epoch), as searches are.
H1_JOB = ("data.n_samples=512", "data.batch_size=32", "print_every=0", "experiment_name=bench_h1")
H1_PRUNING = (
    "hydra.sweeper.pruner=median",
    "hydra.sweeper.pruning.n_startup_trials=5",
    "hydra.sweeper.pruning.n_warmup_steps=5",
)
LEAN = ("tracking.plots=false", "tracking.log_model=false")


def h1_pruning(home: Path, trials: int, epochs: int) -> list[Result]:
    """The optuna_lr search (TPE over optimizer and a log-uniform lr, seed 0), serial."""
    env = {**os.environ, "TRAINLAB_HOME": str(home)}
    storage = f"sqlite:///{home / 'optuna.db'}"
    base = [str(BIN / "trainlab-train"), "-m", "experiment=optuna_lr", f"max_epochs={epochs}",
            f"hydra.sweeper.n_trials={trials}", "hydra.sweeper.n_jobs=1", *H1_JOB]  # fmt: skip
    stamp = time.strftime("%H%M%S")
    plain = wall([*base, f"hydra.sweeper.study_name=h1-plain-{stamp}"], env, home)
    pruned = wall([*base, *H1_PRUNING, f"hydra.sweeper.study_name=h1-pruned-{stamp}"], env, home)
    best = {
        kind: optuna.load_study(study_name=f"h1-{kind}-{stamp}", storage=storage).best_value
        for kind in ("plain", "pruned")
    }
    kept = optuna.load_study(study_name=f"h1-pruned-{stamp}", storage=storage).trials
    count = sum(t.state.name == "PRUNED" for t in kept)
    what = f"{trials}-trial TPE search, {epochs} epochs a trial: median pruning ({count} pruned) vs none, whole process"
    return [
        Result("H1", what, plain, pruned, 0.5),
        # The baseline column holds the unpruned search's best val/loss, trainlab's the pruned one's.
        Result("H1-best", "best objective (val/loss) with pruning vs without", best["plain"],
               best["pruned"], 1.02),
    ]  # fmt: skip


def h2_study_cost(home: Path, trials: int, reports: int) -> list[Result]:
    """Per trial: the sweeper's ask and tell, the trial file, the job opening the study, what it
    measured; per report point: one report and the median pruner's verdict."""
    url = f"sqlite:///{home / 'h2.db'}"
    settings = {"n_startup_trials": 5, "n_warmup_steps": 0, "interval_steps": 1}
    link = StudyLink(storage=url, study_name="h2", pruner="median", pruning=settings,
                     objectives=["loss"])  # fmt: skip
    study = optuna.create_study(
        storage=open_storage(url),
        study_name="h2",
        sampler=optuna.samplers.RandomSampler(seed=0),  # sampling is not the storage's cost
        pruner=build_pruner("median", settings),
    )
    space = {"lr": optuna.distributions.FloatDistribution(1e-3, 0.3, log=True)}
    folder = home / "h2"
    folder.mkdir(exist_ok=True)
    fixed: list[float] = []
    reporting: list[float] = []
    for job in range(trials):
        start = time.perf_counter()
        trial = study.ask(space)
        trial.set_user_attr(JOBS_ATTR, [job])
        link.jobs[job] = [trial.number, 0]
        link.save(folder)
        seen = StudyLink.load(folder)
        assert seen is not None
        handle = TrialHandle(TrialJob(link=seen, trial=trial.number, replicate=0, job=job))
        middle = time.perf_counter()
        for point in range(reports):
            handle.report(trial.params["lr"] + 1.0 / (point + 1), point)
        after = time.perf_counter()
        handle.measured({"fit_seconds": 1.0, "parameters": 2.0})
        study.tell(trial.number, trial.params["lr"])
        fixed.append((middle - start) + (time.perf_counter() - after))
        reporting.append((after - middle) / reports)
    what = f"the study's cost per trial (ask, trial file, open, measured, tell; median of {trials}, SQLite)"
    per_report = statistics.median(reporting)
    return [
        # The target is in seconds: the baseline column holds it, the ratio is seconds / target.
        Result("H2", what, 0.050, statistics.median(fixed), 1.0),
        Result("H2-report", "one report + the median pruner's verdict (s per report point)",
               per_report, per_report, float("inf")),
    ]  # fmt: skip
