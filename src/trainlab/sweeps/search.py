"""An Optuna search through Hydra's launcher: ask a batch of trials, launch their jobs, tell.

`hydra/sweeper=optuna` (src/hydra_plugins/trainlab_sweeper) hands its `sweep` here. Each batch
is `n_jobs` trials, each trial `sweep.replicates` jobs (the same values, seeds seed, seed+1 ...),
launched together through whichever launcher is configured; the study (an RDB storage, see
sweeps/study.py) gets the mean of a trial's replicates, or PRUNED when its first replicate was
pruned (sweeps/trial_reports.py), or FAIL when a replicate failed. The search goes on until
`n_trials` trials have ended, counting those a resumed sweep's study already has; a trial the
last sweep left unfinished (the sweep was killed) is launched again with the same jobs, whose
runs continue from their checkpoints or report the result they already have (job.py), and is
told once.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from trainlab.errors import ConfigError
from trainlab.paths import tracking_uri
from trainlab.sweeps.results import JOBS_ATTR, write_results
from trainlab.sweeps.space import grid_choices, overrides_of, search_space
from trainlab.sweeps.state import sweep_arguments
from trainlab.sweeps.study import (
    MEASURED_ATTR,
    PRUNED_ATTR,
    PRUNERS,
    build_pruner,
    open_storage,
    shown,
    study_storage,
)
from trainlab.sweeps.trials import MEASURED, StudyLink
from trainlab.tracking.store import absolute_uri

DIRECTIONS = ("minimize", "maximize")
OBJECTIVES = ("loss", *MEASURED)
State = optuna.trial.TrialState


@dataclass
class Plan:
    """Everything a search needs, checked before the sweep's parent run exists."""

    space: dict[str, Any]
    fixed: dict[str, str]
    objectives: dict[str, str]  # name -> direction, in the study's order
    storage: str
    study_name: str
    pruner: str
    pruning: dict[str, Any]
    n_trials: int
    n_jobs: int
    replicates: int
    seed: int


def plan_search(config: DictConfig, arguments: list[str] | None = None) -> Plan:
    settings = config.hydra.sweeper
    space, fixed = search_space(
        sweep_arguments(config) if arguments is None else _with_params(settings, arguments)
    )
    named = [str(o).partition(":") for o in settings.objectives or []]
    objectives = {n: d for n, _, d in named} if named else {"loss": str(settings.direction)}
    for name, direction in objectives.items():
        if name not in OBJECTIVES:
            raise ConfigError(
                f"hydra.sweeper.objectives: {name!r} is not an objective; expected "
                f"{', '.join(OBJECTIVES)} (each name:minimize or name:maximize)"
            )
        if direction not in DIRECTIONS:
            raise ConfigError(
                f"hydra.sweeper.objectives: {name}:{direction} is not allowed: expected "
                f"{name}:minimize or {name}:maximize"
            )
    pruner = str(settings.pruner)
    if pruner not in PRUNERS:
        raise ConfigError(
            f"hydra.sweeper.pruner={pruner!r} is not allowed: expected one of {', '.join(PRUNERS)}"
        )
    if pruner != "none" and len(objectives) > 1:
        raise ConfigError(
            f"hydra.sweeper.pruner={pruner} with {len(objectives)} objectives: Optuna prunes "
            "single-objective studies only; expected hydra.sweeper.pruner=none"
        )
    pruning = OmegaConf.to_container(settings.pruning)
    build_pruner(pruner, pruning)  # its settings' own checks
    every = pruning.get("every_n_steps")
    if every is not None and every < 1:
        raise ConfigError(
            f"hydra.sweeper.pruning.every_n_steps={every} is not allowed: expected an integer "
            ">= 1, or null (every epoch)"
        )
    replicates = int(OmegaConf.select(config, "sweep.replicates", default=1) or 1)
    if replicates > 1 and "seed" in space:
        raise ConfigError(
            f"sweep.replicates={replicates} gives each trial its seeds; expected seed not in the "
            "search space"
        )
    n_trials, n_jobs = int(settings.n_trials), int(settings.n_jobs)
    if n_trials < 1 or n_jobs < 1:
        raise ConfigError(
            f"hydra.sweeper.n_trials={n_trials}, n_jobs={n_jobs}: expected integers >= 1"
        )
    if str(settings.sampler._target_).endswith("GridSampler"):
        grid_choices(space)  # every key must have values to list
    uri = absolute_uri(config.tracking.uri or tracking_uri()) if config.tracking.enabled else None
    return Plan(
        space=space,
        fixed=fixed,
        objectives=objectives,
        storage=study_storage(settings.storage, uri),
        study_name=str(settings.study_name or "trainlab"),
        pruner=pruner,
        pruning=pruning,
        n_trials=n_trials,
        n_jobs=n_jobs,
        replicates=replicates,
        seed=int(fixed.get("seed", config.seed)),
    )


def check_search(config: DictConfig) -> None:
    """Before the parent run: the plan, and a storage that opens (its tables made once here,
    before trials on several processes would race to make them)."""
    open_storage(plan_search(config).storage)


def _with_params(settings: DictConfig, arguments: list[str]) -> list[str]:
    params = settings.params or {}
    return [f"{key}={value}" for key, value in params.items()] + list(arguments)


class Search:
    def __init__(self, config: DictConfig, launcher: Launcher) -> None:
        self.config, self.launcher = config, launcher
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    def run(self, arguments: list[str]) -> list[Any]:
        plan = self.plan = plan_search(self.config, arguments)
        storage = self.storage = open_storage(plan.storage)
        make_sampler = instantiate(self.config.hydra.sweeper.sampler, _partial_=True)
        n_trials = plan.n_trials
        if self.config.hydra.sweeper.sampler._target_.endswith("GridSampler"):
            choices = grid_choices(plan.space)
            sampler = make_sampler(search_space=choices)
            n_trials = min(n_trials, math.prod(len(values) for values in choices.values()))
        else:
            sampler = make_sampler()
        study = optuna.create_study(
            storage=storage,
            sampler=sampler,
            pruner=build_pruner(plan.pruner, plan.pruning),
            study_name=plan.study_name,
            directions=list(plan.objectives.values()),
            load_if_exists=True,
        )
        self.study_id = storage.get_study_id_from_name(plan.study_name)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        self.link = StudyLink(
            storage=plan.storage,
            study_name=plan.study_name,
            pruner=plan.pruner,
            pruning=plan.pruning,
            objectives=list(plan.objectives),
        )
        trials = study.get_trials(deepcopy=False)
        self.next_job = 1 + max(
            (max(t.user_attrs.get(JOBS_ATTR, [-1])) for t in trials), default=-1
        )
        unfinished = [t for t in trials if not t.state.is_finished() and JOBS_ATTR in t.user_attrs]
        ended = sum(t.state.is_finished() for t in trials)
        print(
            f"Optuna study {plan.study_name} in {shown(plan.storage)}: {ended} of {n_trials} "
            f"trials ended" + (f", {len(unfinished)} cut short to finish" if unfinished else "")
        )
        if ended >= n_trials and not unfinished:
            print(
                f"Nothing to run: raise hydra.sweeper.n_trials above {ended} to search further, "
                "or name a new study (hydra.sweeper.study_name)"
            )
        for trial in unfinished:  # the last sweep was killed while these ran
            jobs = trial.user_attrs[JOBS_ATTR]
            self.launch(study, [(trial.number, dict(trial.params), jobs)])
            ended += 1
        while ended < n_trials:
            batch = []
            for _ in range(min(plan.n_jobs, n_trials - ended)):
                trial = study.ask(plan.space)
                jobs = list(range(self.next_job, self.next_job + plan.replicates))
                self.next_job += plan.replicates
                trial.set_user_attr(JOBS_ATTR, jobs)
                batch.append((trial.number, dict(trial.params), jobs))
            self.launch(study, batch)
            ended += len(batch)
        write_results(study, self.plan, self.sweep_dir)
        return []

    def launch(
        self, study: optuna.Study, batch: list[tuple[int, dict[str, Any], list[int]]]
    ) -> None:
        """Launch the batch's jobs (consecutive numbers per call) and tell each trial its result."""
        runs: list[tuple[list[str], int]] = []
        for number, params, jobs in batch:
            for replicate, job in enumerate(jobs):
                self.link.jobs[job] = [number, replicate]
                overrides = overrides_of(params, self.plan.fixed)
                if self.plan.replicates > 1:
                    overrides = [o for o in overrides if not o.startswith("seed=")]
                    overrides.append(f"seed={self.plan.seed + replicate}")
                runs.append((overrides, job))
        self.link.save(self.sweep_dir)
        returns: list[JobReturn] = []
        for start, group in _consecutive(runs):
            returns += self.launcher.launch([o for o, _ in group], initial_job_idx=start)
        by_job = {job: ret for (_, job), ret in zip(runs, returns, strict=True)}
        for number, _, jobs in batch:
            self.tell(study, number, [by_job[job] for job in jobs])

    def tell(self, study: optuna.Study, number: int, returns: list[JobReturn]) -> None:
        died = [how for ret in returns if (how := getattr(ret, "worker_died", ""))]
        if died:  # the parallel launcher's job process died: its run is KILLED, to continue
            print(
                f"Trial {number}: a job's process died ({died[0]}); the trial stays open and the "
                "same command continues it"
            )
            return
        losses = [_loss(ret) for ret in returns]
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
        attrs = self.storage.get_trial_user_attrs(trial_id)
        if not all(math.isfinite(loss) for loss in losses):
            self.told(study, number, state=State.FAIL)
            print(f"Trial {number}: FAILED (a job failed; the search goes on)")
            return
        if PRUNED_ATTR in attrs:
            self.told(study, number, state=State.PRUNED)
            point, step = attrs[PRUNED_ATTR]
            print(f"Trial {number}: pruned at report {point} (step {step})")
            return
        values = []
        for name in self.plan.objectives:
            if name == "loss":
                values.append(statistics.fmean(losses))
                continue
            measured = [attrs.get(f"{MEASURED_ATTR}.{r}", {}).get(name) for r in range(len(losses))]
            values.append(statistics.fmean(float(v) for v in measured if v is not None))
        self.told(study, number, values=values)
        shown_values = ", ".join(
            f"{n} {v:.6g}" for n, v in zip(self.plan.objectives, values, strict=True)
        )
        print(f"Trial {number}: {shown_values}")

    def told(self, study: optuna.Study, number: int, **outcome: Any) -> None:
        try:
            study.tell(number, skip_if_finished=True, **outcome)
        except RuntimeError as err:
            # The grid sampler stops the study once its last point is told, which Optuna only
            # allows inside study.optimize; the trial's state is stored before that.
            if "Study.stop" not in str(err):
                raise


def _loss(ret: JobReturn) -> float:
    try:
        return float(ret.return_value)
    except Exception:  # the job raised (trainlab's own jobs return NaN instead)
        return math.nan


def _consecutive(
    runs: list[tuple[list[str], int]],
) -> list[tuple[int, list[tuple[list[str], int]]]]:
    """The runs in groups of consecutive job numbers: one launch each (Hydra numbers a launch's
    jobs from its first)."""
    groups: list[tuple[int, list[tuple[list[str], int]]]] = []
    for run in runs:
        if groups and groups[-1][1][-1][1] + 1 == run[1]:
            groups[-1][1].append(run)
        else:
            groups.append((run[1], [run]))
    return groups
