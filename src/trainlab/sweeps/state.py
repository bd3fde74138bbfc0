"""What a multirun's main process tells its jobs, and what a job knows about its sweep.

The main process writes `<sweep dir>/mlflow_sweep.yaml` before the first job starts; every job
reads it, whatever the launcher (joblib workers, submitit jobs on other machines that share the
folder: environment variables may not reach them). A job on this machine hands its run to the
main process's recorder (one writer for the whole sweep, no MLflow import in the job); a job
elsewhere starts a recorder of its own and links its run to the parent by id.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from trainlab.config.checks import override_key
from trainlab.errors import ConfigError
from trainlab.paths import in_multirun
from trainlab.sweeps.trials import StudyLink
from trainlab.tracking.connection import TrackingTarget
from trainlab.tracking.messages import Address, Reply
from trainlab.tracking.recorders import private_recorder, shared_recorder
from trainlab.tracking.tags import JOB_TAG, OVERRIDES_TAG, PARENT_TAG

SWEEP_FILE = "mlflow_sweep.yaml"
STOP_FILE = "STOPPED"  # written by the job that stopped the sweep (sweep.stop_on_failure=true)
PARENT_WAIT_SECONDS = 120  # a job elsewhere waits this long for the parent run's id
# Set by the parallel launcher with gpus_per_job (hydra_plugins/trainlab_launcher/fork_slots.py):
# the devices the job's process sees, recorded on its run.
JOB_DEVICES_ENV, DEVICES_TAG = "TRAINLAB_JOB_DEVICES", "trainlab.devices"
# A child's configuration (its swept values less the seed: replicates share it, so the
# dashboard groups them), and the Optuna study and trial a search's child measured.
CONFIG_TAG = "trainlab.sweep.config"
STUDY_TAG, TRIAL_TAG = "trainlab.sweep.study", "trainlab.sweep.trial"


@dataclass
class Sweep:
    token: str  # the sweep's name at its recorder
    tracking_uri: str
    experiment_name: str
    sweep_dir: str
    artifact_root: str | None
    recorder_host: str
    recorder_path: str
    recorder_key: str  # hex; the file is readable by its owner only
    swept_keys: list[str] = field(default_factory=list)
    parent_run_id: str | None = None  # written at once only for launchers that run jobs elsewhere
    key: str = ""  # the sweep's identity (sweeps/identity.py)
    resumed: bool = False  # a continued sweep: a job whose run already ended is not trained again

    @property
    def file(self) -> Path:
        return Path(self.sweep_dir, SWEEP_FILE)

    def save(self) -> None:
        partial = self.file.with_suffix(".partial")
        partial.touch(mode=0o600)
        partial.write_text(yaml.safe_dump(asdict(self), sort_keys=False))
        os.replace(partial, self.file)

    @classmethod
    def load(cls, sweep_dir: str | Path) -> Sweep | None:
        file = Path(sweep_dir, SWEEP_FILE)
        return cls(**yaml.safe_load(file.read_text())) if file.is_file() else None

    @property
    def recorder_address(self) -> Address:
        return Address(
            host=self.recorder_host,
            path=self.recorder_path,
            authkey=bytes.fromhex(self.recorder_key),
        )


@dataclass(frozen=True)
class SweepJob:
    """One job of a tracked multirun: its sweep, number and overrides."""

    sweep: Sweep
    num: int
    overrides: list[str]

    def swept_overrides(self) -> list[str]:
        keys = set(self.sweep.swept_keys)
        return [o for o in self.overrides if override_key(o) in keys] or self.overrides

    def run_name(self) -> str:
        return " ".join(self.swept_overrides()) or f"job {self.num}"

    def target(self, run_name: str | None) -> TrackingTarget:
        """The job's run: a child of the sweep's parent, in the parent's store and experiment,
        whatever the job's own config says."""
        tags = {JOB_TAG: str(self.num), OVERRIDES_TAG: json.dumps(self.overrides)}
        if os.environ.get(JOB_DEVICES_ENV):
            tags[DEVICES_TAG] = os.environ[JOB_DEVICES_ENV]
        config = [o for o in self.swept_overrides() if override_key(o) != "seed"]
        tags[CONFIG_TAG] = " ".join(config) or "default"
        link = StudyLink.load(self.sweep.sweep_dir)
        if link is not None and self.num in link.jobs:
            tags[STUDY_TAG], tags[TRIAL_TAG] = link.study_name, str(link.jobs[self.num][0])
        address = self.sweep.recorder_address
        if address.reachable_here():
            recorder, token = shared_recorder(address), self.sweep.token
        else:
            recorder, token = private_recorder(self.sweep.tracking_uri), None
            tags[PARENT_TAG] = self.parent_run_id()
        return TrackingTarget(
            recorder=recorder,
            uri=self.sweep.tracking_uri,
            experiment_name=self.sweep.experiment_name,
            run_name=run_name or self.run_name(),
            tags=tags,
            artifact_root=self.sweep.artifact_root,
            sweep_token=token,
            wait=Reply.QUEUED,
            open_run_on_early_failure=True,
        )

    def parent_run_id(self) -> str:
        deadline = time.monotonic() + PARENT_WAIT_SECONDS
        sweep = self.sweep
        while sweep.parent_run_id is None:
            if time.monotonic() > deadline:
                raise ConfigError(f"{sweep.file}: the sweep's parent run id never arrived")
            time.sleep(0.5)
            sweep = Sweep.load(sweep.sweep_dir) or sweep
        return sweep.parent_run_id


def current_job() -> SweepJob | None:
    """The sweep this job belongs to; None outside a multirun or when the sweep is untracked."""
    if not in_multirun():
        return None
    hydra_cfg = HydraConfig.get()
    sweep = Sweep.load(hydra_cfg.sweep.dir)
    if sweep is None:
        return None
    return SweepJob(
        sweep=sweep, num=int(hydra_cfg.job.num), overrides=list(hydra_cfg.overrides.task)
    )


def sweep_arguments(config: DictConfig) -> list[str]:
    """The sweep's overrides: a preset's hydra.sweeper.params, then the command line's (which
    win for the same key)."""
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    return [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)


def swept_keys(config: DictConfig) -> list[str]:
    """Keys the sweep varies."""
    parsed = OverridesParser.create().parse_overrides(sweep_arguments(config))
    keys = [override_key(o.get_key_element()) for o in parsed if o.is_sweep_override()]
    return list(dict.fromkeys(keys))


def sweep_jobs(config: DictConfig) -> list[list[str]]:
    """The overrides of every job a grid over the sweep would run (the cartesian product, as
    Hydra's basic sweeper expands it); a search's interval counts as a choice of its two ends."""
    choices: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(sweep_arguments(config)):
        key = override.get_key_element()
        if override.is_interval_sweep():
            ends = override.value()
            choices[key] = [f"{key}={ends.start}", f"{key}={ends.end}"]
        elif override.is_sweep_override():
            choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            choices[key] = [f"{key}={override.get_value_element_as_str()}"]
    return [list(job) for job in itertools.product(*choices.values())]
