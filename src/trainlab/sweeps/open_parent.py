"""A sweep's parent run, opened from the launching process: the recorder that hosts it (and the
runs of the jobs on this machine), the spec it is created or continued from, the sweep file the
jobs read (sweeps/state.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from trainlab.config.flat import flatten
from trainlab.paths import default_artifact_root, tracking_uri
from trainlab.sweeps.identity import use_sweep_dir
from trainlab.sweeps.state import Sweep, sweep_jobs, swept_keys
from trainlab.tracking.liveness import process_tags
from trainlab.tracking.messages import Reply, SweepSpec, SweepStarted
from trainlab.tracking.recorders import private_recorder, warm_for
from trainlab.tracking.source import git_commit
from trainlab.tracking.store_checks import absolute_uri, check_store, sqlite_path

# Launchers whose jobs run on this machine: they hand their runs to this process's recorder.
# Others (SLURM ...) may run jobs elsewhere: the parent run's id goes into the sweep file first.
LOCAL_LAUNCHERS = ("BasicLauncher", "JoblibLauncher", "LocalLauncher", "ForkLauncher")


def start_sweep(config: DictConfig, key: str, resume: bool, resume_run_id: str | None) -> Sweep:
    """Start the recorder that hosts the parent run (a new one, or the one it continues: named
    by `sweep.resume`, or found by its folder); write the sweep file the jobs read."""
    uri = absolute_uri(config.tracking.uri or tracking_uri())
    check_store(uri)
    recorder = private_recorder(uri, warm_for(config.tracking))
    token = uuid.uuid4().hex
    local = config.hydra.launcher._target_.rsplit(".", 1)[-1] in LOCAL_LAUNCHERS
    search = str(config.hydra.sweeper._target_).endswith("OptunaSweeper")
    kind = "search" if search else "grid"  # an Optuna search, or Hydra's grid of every value
    preset = config.hydra.runtime.choices.get("experiment")
    sweeper_params = OmegaConf.to_container(config.hydra.sweeper.params or OmegaConf.create())
    tags = {
        "mlflow.source.name": "trainlab-train -m",
        "trainlab.sweep": "parent",
        "trainlab.sweep.sweeper": config.hydra.sweeper._target_,
        "trainlab.sweep.key": key,  # the same command continues this sweep (sweeps/identity.py)
        "trainlab.sweep.launcher": config.hydra.launcher._target_,
        "trainlab.sweep.kind": kind,
        "trainlab.preset": preset or "none",  # as on a single run (run_life.py)
        **process_tags(),  # the main process: whether the sweep is still alive (liveness.py)
    }
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    sweep_dir = Path(config.hydra.sweep.dir).resolve()
    params = {
        "sweep.overrides": " ".join(config.hydra.overrides.task),
        "sweep.dir": str(sweep_dir),
        **flatten({"sweep.params": sweeper_params}),
    }
    artifact_root = str(default_artifact_root()) if sqlite_path(uri) else None
    spec = SweepSpec(
        uri=uri,
        experiment_name=config.experiment_name,
        run_name=" ".join(
            w for w in ("search" if search else "sweep", preset, sweep_dir.name) if w
        ),
        tags=tags,
        params={k: str(v) for k, v in params.items()},
        sweep_dir=str(sweep_dir),
        swept_keys=tuple(swept_keys(config)),
        artifact_root=artifact_root,
        resume_run_id=resume_run_id,
    )
    # Jobs on this machine find the parent through the recorder, so nothing waits for MLflow
    # here; jobs elsewhere need its id in the file before they start, and `sweep.resume=<id>`
    # needs that run's folder before anything runs.
    wait = not local or resume_run_id is not None
    answer: SweepStarted | None = recorder.send(spec, token, Reply.HANDLED if wait else None)
    if answer is not None and answer.sweep_dir != str(sweep_dir):
        use_sweep_dir(config, answer.sweep_dir)
        print(f"Continuing the sweep of parent run {answer.parent_run_id} in {answer.sweep_dir}")
    address = recorder.address
    sweep = Sweep(
        token=token,
        tracking_uri=uri,
        experiment_name=config.experiment_name,
        sweep_dir=answer.sweep_dir if answer is not None else str(sweep_dir),
        artifact_root=artifact_root,
        recorder_host=address.host,
        recorder_path=address.path,
        recorder_key=address.authkey.hex(),
        swept_keys=list(spec.swept_keys),
        parent_run_id=answer.parent_run_id if answer is not None else None,
        key=key,
        resumed=resume or resume_run_id is not None,
    )
    Path(sweep.sweep_dir).mkdir(parents=True, exist_ok=True)
    sweep.save()
    if search:
        print(f"Optuna search of {config.hydra.sweeper.n_trials} trials, folder {sweep.sweep_dir}")
    else:
        print(f"Sweep of {len(sweep_jobs(config))} jobs, folder {sweep.sweep_dir}")
    return sweep
