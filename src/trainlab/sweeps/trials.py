"""What an Optuna sweep tells its jobs: `<sweep dir>/optuna_study.yaml`, and a job's trial.

The search (sweeps/search.py) rewrites the file before each batch it launches; a job reads it
to learn whether it is a trial that reports to the study (pruning, or objectives only the job
can measure), which trial and replicate it is, and where the study lives. A file in the sweep's
folder, as for the sweep itself (sweeps/state.py): it reaches jobs on other nodes that share the
folder, whatever the launcher. No Optuna here: the pipeline asks `current_trial` for every run.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.core.hydra_config import HydraConfig

from trainlab.paths import in_multirun

STUDY_FILE = "optuna_study.yaml"
# What a job measures for the study besides its loss (which it returns to the sweeper).
MEASURED = ("fit_seconds", "parameters")


@dataclass
class StudyLink:
    storage: str  # an Optuna RDB URL (the file is readable by its owner only)
    study_name: str
    pruner: str  # none | median | percentile | successive_halving | hyperband
    pruning: dict[str, Any]  # the sweeper's `pruning` settings
    objectives: list[str]  # names, in the study's order ("loss" alone for one objective)
    jobs: dict[int, list[int]] = field(default_factory=dict)  # job number -> [trial, replicate]

    @property
    def reports(self) -> bool:
        """Whether a trial's job talks to the study at all."""
        return self.pruner != "none" or any(name in MEASURED for name in self.objectives)

    def save(self, sweep_dir: str | Path) -> None:
        file = Path(sweep_dir, STUDY_FILE)
        partial = file.with_suffix(".partial")
        partial.touch(mode=0o600)
        partial.write_text(yaml.safe_dump(asdict(self), sort_keys=False))
        os.replace(partial, file)

    @classmethod
    def load(cls, sweep_dir: str | Path) -> StudyLink | None:
        file = Path(sweep_dir, STUDY_FILE)
        if not file.is_file():
            return None
        fields = yaml.safe_load(file.read_text())
        fields["jobs"] = {int(k): v for k, v in (fields.get("jobs") or {}).items()}
        return cls(**fields)


@dataclass(frozen=True)
class TrialJob:
    """One job of one trial: the study it reports to, its trial number and replicate."""

    link: StudyLink
    trial: int
    replicate: int
    job: int


def current_trial() -> TrialJob | None:
    """This job's trial when it is a job of an Optuna sweep (which reports to its study when
    `link.reports`; every trial names its run and model there)."""
    if not in_multirun():
        return None
    hydra_cfg = HydraConfig.get()
    link = StudyLink.load(hydra_cfg.sweep.dir)
    job = int(hydra_cfg.job.num)
    if link is None or job not in link.jobs:
        return None
    trial, replicate = link.jobs[job]
    return TrialJob(link=link, trial=trial, replicate=replicate, job=job)
