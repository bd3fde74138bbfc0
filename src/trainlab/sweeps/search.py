"""An Optuna search through Hydra's launcher: ask trials, launch their jobs, tell each result.

`hydra/sweeper=optuna` (src/hydra_plugins/trainlab_sweeper) hands its `sweep` here. Each trial
is `sweep.replicates` jobs (the same values, seeds seed, seed+1 ...); the study (an RDB storage,
see sweeps/study.py) gets the mean of a trial's replicates, or PRUNED when its first replicate
was pruned (callbacks/study_reports.py), or FAIL when a replicate failed.

With trainlab's `parallel` launcher the trials are asynchronous: `n_jobs` trials run at once, and
as soon as any ends (finished, failed, pruned) the study is told and the next trial is asked and
started in the freed slot; no trial waits for a batch's slowest. Hydra's submitit launchers are
asynchronous the same way, a thread per slot waiting on a batch of one (sweeps/launch_threads.py).
Other launchers (Hydra's API: a batch returns when all its jobs ended, and their jobs may run in
the sweep's own process) get batches of `n_jobs` trials, said once in the log.

The search goes on until `n_trials` trials have been started in all, counting those a continued
sweep's study already has; a trial the last sweep left unfinished (killed) is launched again
with the same jobs, whose runs continue from their checkpoints or report the result they already
have (job.py), and is told once; a trial whose job's process died stays open for the same
command to continue. With a seeded sampler each trial is asked with a seed of its own (the
sampler's seed and the trial's number), so a continued search draws what the uninterrupted one
would have, never the first trials' points again.
"""

from __future__ import annotations

import logging
import math
import statistics
import sys
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.utils import instantiate
from omegaconf import DictConfig

from trainlab.paths import home
from trainlab.sweeps.launch_threads import thread_slots
from trainlab.sweeps.plan import plan_search, pruning_warning
from trainlab.sweeps.results import JOBS_ATTR, write_results
from trainlab.sweeps.space import grid_choices, overrides_of
from trainlab.sweeps.study import MEASURED_ATTR, PRUNED_ATTR, build_pruner, open_storage, shown
from trainlab.sweeps.trials import StudyLink

log = logging.getLogger(__name__)
State = optuna.trial.TrialState
Trial = tuple[int, dict[str, Any], list[int]]  # number, params, job numbers


def trial_seed(seed: int, number: int) -> int:
    """The sampler's seed for trial `number` of a search seeded with `seed`."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class Search:
    def __init__(self, config: DictConfig, launcher: Launcher) -> None:
        self.config, self.launcher = config, launcher
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    def run(self, arguments: list[str]) -> list[Any]:
        plan = self.plan = plan_search(self.config, arguments)
        storage = self.storage = open_storage(plan.storage)
        sampler_config = self.config.hydra.sweeper.sampler
        self.make_sampler = instantiate(sampler_config, _partial_=True)
        self.seed = sampler_config.get("seed")
        n_trials = plan.n_trials
        if sampler_config._target_.endswith("GridSampler"):
            choices = grid_choices(plan.space)
            self.make_sampler = instantiate(sampler_config, _partial_=True, search_space=choices)
            # Its seed orders the grid, which the trials' grid ids point into: one sampler for
            # the whole search; it never repeats a point (it draws among the unvisited ones).
            self.seed = None
            n_trials = min(n_trials, math.prod(len(values) for values in choices.values()))
        study = optuna.create_study(
            storage=storage,
            sampler=self.make_sampler(),
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
        warning = pruning_warning(plan)
        if warning:
            print(f"trainlab-train: warning: {warning}", file=sys.stderr)
        if ended >= n_trials and not unfinished:
            print(
                f"Nothing to run: raise hydra.sweeper.n_trials above {ended} to search further, "
                "or name a new study (hydra.sweeper.study_name)"
            )
        again = [(t.number, dict(t.params), t.user_attrs[JOBS_ATTR]) for t in unfinished]
        new = max(n_trials - ended - len(again), 0)
        slots = self.slots() if self.config.hydra.sweeper.asynchronous else None
        if slots is not None:
            self.run_async(study, again, new, slots)
        else:
            self.run_batches(study, again, new)
        write_results(study, self.plan, self.sweep_dir)
        default = f"sqlite:///{home() / 'optuna.db'}"
        where = "" if plan.storage == default else f" STUDY_DB='{shown(plan.storage)}'"
        print(f"Study {plan.study_name} in optuna-dashboard: make study{where}")
        return []

    def ask(self, study: optuna.Study) -> Trial:
        """A new trial, asked with its own seed when the sampler is seeded (see above)."""
        if self.seed is not None:
            number = len(study.get_trials(deepcopy=False))
            study.sampler = self.make_sampler(seed=trial_seed(int(self.seed), number))
        trial = study.ask(self.plan.space)
        jobs = list(range(self.next_job, self.next_job + self.plan.replicates))
        self.next_job += self.plan.replicates
        trial.set_user_attr(JOBS_ATTR, jobs)
        return trial.number, dict(trial.params), jobs

    def jobs_of(self, batch: list[Trial]) -> list[tuple[list[str], int]]:
        """Each trial's jobs (overrides, job number), written to the study file the jobs read."""
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
        return runs

    def run_batches(self, study: optuna.Study, again: list[Trial], new: int) -> None:
        """Hydra's launcher API: a batch of n_jobs trials, told when all its jobs are back."""
        name = str(self.config.hydra.launcher._target_).rsplit(".", 1)[-1]
        log.info(
            f"{name} launches trials in batches of {self.plan.n_jobs} (asynchronous trials: "
            "hydra/launcher=parallel or submitit_*, hydra.sweeper.asynchronous=true)"
        )
        for trial in again:  # the last sweep was killed while these ran
            self.launch(study, [trial])
        while new > 0:
            batch = [self.ask(study) for _ in range(min(self.plan.n_jobs, new))]
            self.launch(study, batch)
            new -= len(batch)

    def launch(self, study: optuna.Study, batch: list[Trial]) -> None:
        """Launch the batch's jobs (consecutive numbers per call) and tell each trial its result."""
        runs = self.jobs_of(batch)
        returns: list[JobReturn] = []
        for start, group in _consecutive(runs):
            returns += self.launcher.launch([o for o, _ in group], initial_job_idx=start)
        by_job = {job: ret for (_, job), ret in zip(runs, returns, strict=True)}
        for number, _, jobs in batch:
            self.tell(study, number, [by_job[job] for job in jobs])

    def slots(self) -> Any:
        """Slots for asynchronous trials: the parallel launcher's forks, or threads over a
        submitit launcher's batches of one (sweeps/launch_threads.py); None for the others."""
        size = self.plan.n_jobs * self.plan.replicates
        if hasattr(self.launcher, "slots"):
            return self.launcher.slots(size)
        return thread_slots(self.launcher, size)

    def run_async(self, study: optuna.Study, again: list[Trial], new: int, slots: Any) -> None:
        """A trial asked and started whenever a slot frees; each told as soon as it ends."""
        log.info(
            f"Asynchronous trials: {slots.size} jobs at once, the next trial asked as soon as "
            "one ends"
        )
        waiting: deque[tuple[list[str], int]] = deque()
        open_trials: dict[int, tuple[list[int], dict[int, JobReturn]]] = {}
        trial_of: dict[int, int] = {}

        def queue(trial: Trial) -> None:
            open_trials[trial[0]] = (trial[2], {})
            trial_of.update({job: trial[0] for job in trial[2]})
            waiting.extend(self.jobs_of([trial]))

        for trial in again:
            queue(trial)
        try:
            while waiting or new > 0 or slots.running:
                while slots.free and (waiting or new > 0):
                    if not waiting:
                        queue(self.ask(study))
                        new -= 1
                    slots.start(*waiting.popleft())
                job, returned = slots.next_done()
                number = trial_of.pop(job)
                jobs, returns = open_trials[number]
                returns[job] = returned
                if len(returns) == len(jobs):
                    del open_trials[number]
                    self.tell(study, number, [returns[j] for j in jobs])
        except BaseException:  # Ctrl-C, SIGTERM: the running jobs stop at a step, no new one
            slots.stop()
            raise
        finally:
            slots.close()

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
