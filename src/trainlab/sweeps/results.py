"""What an Optuna search leaves for the parent run's summary: the study's best trial (or, with
several objectives, its Pareto front) and every trial with its state, values and jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import optuna
from omegaconf import OmegaConf

from trainlab.sweeps.study import shown

JOBS_ATTR = "trainlab.jobs"  # user attribute of a trial: its job numbers, one per replicate
IMPORTANCE_AFTER = 4  # completed trials before the parent records parameter importances
RESULTS_FILE = "optimization_results.yaml"  # read by the parent run's summary
State = optuna.trial.TrialState


class SearchPlan(Protocol):
    """What of the search's plan (sweeps/search.py: Plan) the results name."""

    objectives: dict[str, str]
    storage: str
    study_name: str
    replicates: int


def write_results(study: optuna.Study, plan: SearchPlan, sweep_dir: Path) -> None:
    """What the parent run's summary reads (and keeps as sweep/optimization_results.yaml)."""
    trials = study.get_trials(deepcopy=False)
    names = list(plan.objectives)
    results: dict[str, Any] = {
        "name": "optuna",
        "study_name": plan.study_name,
        "storage": shown(plan.storage),
        "objectives": [{"name": n, "direction": d} for n, d in plan.objectives.items()],
        "replicates": plan.replicates,
    }
    complete = [t for t in trials if t.state == State.COMPLETE]
    if complete and len(names) == 1:
        best = study.best_trial
        results.update(best_params=best.params, best_value=best.value)
        results["best_jobs"] = best.user_attrs.get(JOBS_ATTR, [])
        if len(complete) >= IMPORTANCE_AFTER and len(complete[0].params) > 1:
            # Optuna's own (fANOVA), of the completed trials; a search that varied one key
            # has nothing to compare.
            importances = optuna.importance.get_param_importances(study)
            results["importances"] = {k: float(v) for k, v in importances.items()}
    elif complete:
        results["solutions"] = [
            {"trial": t.number, "params": t.params, "values": t.values,
             "jobs": t.user_attrs.get(JOBS_ATTR, [])}
            for t in study.best_trials
        ]  # fmt: skip
    results["trials"] = [
        {"trial": t.number, "state": t.state.name, "values": t.values, "params": t.params,
         "jobs": t.user_attrs.get(JOBS_ATTR, [])}
        for t in trials
    ]  # fmt: skip
    OmegaConf.save(OmegaConf.create(results), sweep_dir / RESULTS_FILE)
