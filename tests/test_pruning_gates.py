"""A trial's median or percentile pruner decides on a copy of the study's completed trials, and
only at report points where it could say stop (sweeps/study.py): on a real SQLite study, with
trials of other workers finishing meanwhile, the trial's answer at every point is the answer
Optuna's own `Trial.should_prune` gives, and most points off the interval skip the pruner."""

from __future__ import annotations

import random
import time

import optuna
import pytest

from trainlab.sweeps import study as study_module
from trainlab.sweeps.study import TrialHandle, build_pruner, open_storage
from trainlab.sweeps.trials import StudyLink, TrialJob

POINTS = 40


def settings(warmup: int, interval: int, startup: int, percentile: float = 50.0) -> dict:
    return {"n_warmup_steps": warmup, "interval_steps": interval, "n_startup_trials": startup,
            "percentile": percentile}  # fmt: skip


def a_study(tmp_path, name: str, pruner: str, pruning: dict, completed: int) -> optuna.Study:
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(
        study_name=name, storage=storage, pruner=build_pruner(pruner, pruning)
    )
    rng = random.Random(0)
    complete(study, [rng.uniform(0.5, 2.0) for _ in range(completed)])
    return study


def complete(study: optuna.Study, heights: list[float]) -> None:
    """Finished trials whose curves fall from these heights."""
    for height in heights:
        trial = study.ask()
        for point in range(POINTS):
            trial.report(height / (1 + point), point)
        study.tell(trial, height / POINTS)


def handle_for(
    study: optuna.Study, url: str, pruner: str, pruning: dict, number: int
) -> TrialHandle:
    link = StudyLink(storage=url, study_name=study.study_name, pruner=pruner, pruning=pruning,
                     objectives=["loss"])  # fmt: skip
    return TrialHandle(TrialJob(link=link, trial=number, replicate=0, job=number))


def the_pruners_answer(study: optuna.Study, handle: TrialHandle) -> bool:
    """Asked as Optuna's own trial asks, on what the storage holds now."""
    return optuna.trial.Trial(study, handle.trial_id).should_prune()


@pytest.mark.parametrize(
    ("pruner", "pruning", "completed"),
    [
        ("median", settings(warmup=0, interval=1, startup=0), 3),
        ("median", settings(warmup=5, interval=3, startup=2), 4),
        ("median", settings(warmup=2, interval=4, startup=5), 4),  # never enough completed
        ("percentile", settings(warmup=7, interval=2, startup=1, percentile=25.0), 5),
        ("median", settings(warmup=0, interval=5, startup=0), 0),  # nothing to compare with
    ],
)
def test_a_trial_gets_its_pruners_own_answer_at_every_point(
    tmp_path, monkeypatch, pruner, pruning, completed
):
    monkeypatch.setattr(study_module, "COMPLETED_FRESH_SECONDS", 0.0)  # a new copy every report
    name = f"gates-{pruner}"
    study = a_study(tmp_path, name, pruner, pruning, completed)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    for height in (0.1, 1.2, 5.0):  # a good trial, a middling one, a bad one
        number = study.ask().number
        handle = handle_for(study, url, pruner, pruning, number)
        asked = 0
        for point in range(POINTS):
            if point == POINTS // 2:  # trials of other workers finish meanwhile, far better
                complete(study, [0.01, 0.01, 0.01])
            stop = handle.report(height / (1 + point), point)
            asked += handle.may_stop()
            assert stop == the_pruners_answer(study, handle), (height, point)
        study.tell(number, state=optuna.trial.TrialState.PRUNED)
        if pruning["interval_steps"] > 1:
            assert asked <= POINTS // pruning["interval_steps"] + 1


def test_trials_completed_elsewhere_count_within_a_second(tmp_path):
    pruning = settings(warmup=0, interval=1, startup=1)
    study = a_study(tmp_path, "fresh", "median", pruning, completed=2)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    number = study.ask().number
    handle = handle_for(study, url, "median", pruning, number)
    assert not handle.report(0.9, 0)  # better than the two completed ones
    complete(study, [0.01, 0.01, 0.01])  # far better ones finish in other workers
    time.sleep(study_module.COMPLETED_FRESH_SECONDS)
    assert handle.report(0.9 / 2, 1)
    assert the_pruners_answer(study, handle)


@pytest.mark.filterwarnings("ignore:The reported value is ignored")  # Optuna keeps the first
def test_a_resumed_trial_counts_the_points_it_reported_before(tmp_path):
    """A trial whose job was killed reports again from its checkpoint's epoch: the pruner looks
    at every point the trial has, the earlier run's included."""
    pruning = settings(warmup=0, interval=10, startup=1)
    study = a_study(tmp_path, "resumed", "median", pruning, completed=3)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    number = study.ask().number
    first = handle_for(study, url, "median", pruning, number)
    for point in range(15):
        first.report(9.0, point)  # a bad trial, not yet pruned: the test reports on
    again = handle_for(study, url, "median", pruning, number)
    for point in range(12, POINTS):  # the checkpoint was at point 12
        assert again.report(9.0, point) == the_pruners_answer(study, again), point
