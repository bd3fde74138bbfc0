"""`make bench`'s measures of Optuna searches: H1, what pruning saves a 40-trial search and what
it costs its best objective (whole processes, the same search with and without; median,
successive halving serially and asynchronously); H3, asynchronous against batched trials; H2,
what the study's storage costs a trial (in this process, the sweeper's and the trial's calls as
a search makes them, on a SQLite study beside the store)."""

from __future__ import annotations

import heapq
import os
import resource
import statistics
import time
from math import inf
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient

from benchmarks.measures import BIN, wall
from benchmarks.turns import Result, compared
from trainlab.sweeps.search import JOBS_ATTR
from trainlab.sweeps.study import RUN_ATTR, TrialHandle, build_pruner, open_storage
from trainlab.sweeps.trials import StudyLink, TrialJob

# Trials long enough for training to dominate a job (13 batches an epoch), as searches are.
H1_JOB = ("data.n_samples=512", "data.batch_size=32", "print_every=0", "experiment_name=bench_h1")
H1_PRUNING = (
    "hydra.sweeper.pruner=median",
    "hydra.sweeper.pruning.n_startup_trials=5",
    "hydra.sweeper.pruning.n_warmup_steps=5",
)
# H3's trials differ in length, the case asynchronous trials are for: the batch size is searched
# with the optimizer and its learning rate (an epoch of batches of 8 takes many times one of 128).
# Over the learning rate alone every trial costs the same per epoch and the median pruner stops
# them at the same epoch, so batches end together and the schedule has nothing to save.
H3_JOB = (*(o for o in H1_JOB if not o.startswith("data.batch_size=")),
          "data.batch_size=choice(8,32,128)")  # fmt: skip
# Successive halving over report points (epochs): rungs at 1, 3, 9, 27 ... epochs, a third of
# the trials promoted at each.
H1_HALVING = (
    "hydra.sweeper.pruner=successive_halving",
    "hydra.sweeper.pruning.min_resource=1",
    "hydra.sweeper.pruning.reduction_factor=3",
)
LEAN = ("tracking.plots=false", "tracking.log_model=false")


def h1_pruning(home: Path, trials: int, epochs: int) -> list[Result]:
    """The optuna_lr search (TPE over optimizer and a log-uniform lr, seed 0) unpruned, serial,
    against: median pruning (information: the trials that beat the median run to the end),
    successive halving serially and with asynchronous trials (n_jobs=2, the parallel launcher),
    each with its best objective against the unpruned search's."""
    env = {**os.environ, "TRAINLAB_HOME": str(home)}
    storage = f"sqlite:///{home / 'optuna.db'}"
    base = [str(BIN / "trainlab-train"), "-m", "experiment=optuna_lr", f"max_epochs={epochs}",
            f"hydra.sweeper.n_trials={trials}", *H1_JOB]  # fmt: skip
    serial = ["hydra.sweeper.n_jobs=1"]
    both = ["hydra.sweeper.n_jobs=2", "hydra/launcher=parallel"]
    stamp = time.strftime("%H%M%S")
    runs = {
        "plain": serial,
        "median": [*serial, *H1_PRUNING],
        "sh": [*serial, *H1_HALVING],
        "sh-async": [*both, *H1_HALVING],
    }
    walls = {
        kind: wall([*base, *extra, f"hydra.sweeper.study_name=h1-{kind}-{stamp}"], env, home)
        for kind, extra in runs.items()
    }
    studies = {k: optuna.load_study(study_name=f"h1-{k}-{stamp}", storage=storage) for k in runs}
    best = {kind: study.best_value for kind, study in studies.items()}
    pruned = {k: sum(t.state.name == "PRUNED" for t in s.trials) for k, s in studies.items()}
    what = f"{trials}-trial TPE search, {epochs} epochs a trial"
    rows = [
        Result("H1", f"{what}: median pruning ({pruned['median']} pruned) vs none, whole process",
               walls["plain"], walls["median"], inf),
        Result("H1-sh", f"{what}: successive halving ({pruned['sh']} pruned) vs none, serial",
               walls["plain"], walls["sh"], 0.5),
        Result("H1-sh-async", f"{what}: successive halving ({pruned['sh-async']} pruned), "
               "asynchronous n_jobs=2 vs none serial", walls["plain"], walls["sh-async"], 0.5),
    ]  # fmt: skip
    # The baseline column holds the unpruned search's best val/loss, trainlab's the pruned one's.
    for kind, name in (
        ("median", "H1-best"),
        ("sh", "H1-sh-best"),
        ("sh-async", "H1-sh-async-best"),
    ):
        rows.append(Result(name, f"best objective (val/loss), {kind} vs no pruning",
                           best["plain"], best[kind], 1.02 if kind != "median" else inf))  # fmt: skip
    return rows


def h3_asynchronous(home: Path, trials: int, epochs: int, rounds: int) -> list[Result]:
    """A TPE search with median pruning, n_jobs=2 on the parallel launcher, the same seed:
    trials in batches of 2 (told when both are back) against asynchronous trials (the next one
    started as soon as any ends), in turns (batched first, then asynchronous first: the other
    work on the machine drifts). H3-cpu: whether both did the same work (on a machine shared
    with other work, the wall time follows the CPU it was given). H3-ideal: what asynchronous
    trials save by their schedule alone, the batched run's own jobs rescheduled (a job's start
    to its run's end) on 2 slots as asynchronous trials start them: a batch whose jobs end
    together leaves nothing to save. What comes on top: trials told as they end give the median
    pruner more completed trials to compare with, so some are pruned sooner (H3's pruned counts,
    H3-cpu)."""
    env = {**os.environ, "TRAINLAB_HOME": str(home)}
    storage = f"sqlite:///{home / 'optuna.db'}"
    base = [str(BIN / "trainlab-train"), "-m", "experiment=optuna_lr", f"max_epochs={epochs}",
            f"hydra.sweeper.n_trials={trials}", "hydra.sweeper.n_jobs=2",
            "hydra/launcher=parallel", *H1_PRUNING, *H3_JOB]  # fmt: skip
    stamp = time.strftime("%H%M%S")
    walls: dict[str, list[float]] = {"batched": [], "async": []}
    best: dict[str, list[float]] = {"batched": [], "async": []}
    pruned: dict[str, list[int]] = {"batched": [], "async": []}
    cpu: dict[str, list[float]] = {"batched": [], "async": []}
    ideal: list[float] = []
    for turn in range(rounds):
        kinds = ("batched", "async") if turn % 2 == 0 else ("async", "batched")
        for kind in kinds:
            name = f"h3-{kind}-{stamp}-{turn}"
            flag = "true" if kind == "async" else "false"
            before = _children_cpu()
            walls[kind].append(wall([*base, f"hydra.sweeper.asynchronous={flag}",
                                     f"hydra.sweeper.study_name={name}"], env, home))  # fmt: skip
            cpu[kind].append(_children_cpu() - before)
            study = optuna.load_study(study_name=name, storage=storage)
            best[kind].append(study.best_value)
            pruned[kind].append(sum(t.state.name == "PRUNED" for t in study.trials))
            if kind == "batched":
                ideal.append(walls[kind][-1] - _batch_wait(study, home))
    what = (f"{trials}-trial TPE search (optimizer, lr, batch size 8|32|128), {epochs} epochs a "
            f"trial, median pruning (pruned: "
            f"batched {pruned['batched']}, asynchronous {pruned['async']}), n_jobs=2: "
            "asynchronous vs batched trials")  # fmt: skip
    return [
        compared("H3", what, walls["batched"], walls["async"], 0.8),
        compared("H3-best", "best objective (val/loss), asynchronous vs batched",
                 best["batched"], best["async"], 1.02),
        compared("H3-cpu", "CPU seconds of the search's process and its jobs (not the "
                 "recorder, which ends on its own), asynchronous vs batched: the same work?",
                 cpu["batched"], cpu["async"], inf),
        compared("H3-ideal", "the batched run's own jobs rescheduled as asynchronous trials "
                 "would start them vs batched: what the schedule alone saves (trials pruned "
                 "sooner come on top)",
                 walls["batched"], ideal, inf),
    ]  # fmt: skip


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _batch_wait(study: optuna.Study, home: Path) -> float:
    """Seconds a batched search spent waiting for its batches' slowest jobs: its trials' span
    against the same jobs (asked to their run's end) started on 2 slots as each slot frees."""
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    trials = sorted(study.trials, key=lambda t: t.number)
    asked = [t.datetime_start.timestamp() for t in trials if t.datetime_start]
    ended = [client.get_run(t.user_attrs[RUN_ATTR]).info.end_time / 1000 for t in trials]
    told = max(t.datetime_complete.timestamp() for t in trials if t.datetime_complete)
    slots = [0.0, 0.0]
    for start, end in zip(asked, ended, strict=True):
        heapq.heappush(slots, heapq.heappop(slots) + max(end - start, 0.0))
    return max(0.0, told - min(asked) - max(slots))


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
