"""`trainlab-train fork=<run id>[@<step>]`: a new run that starts from a run's committed checkpoint.

W&B's `fork_from`, in MLflow's and Hydra's terms. The new run's config is the source run's
recorded one with this command's overrides on top, as a rerun's is (resume/rerun.py): change
the optimizer, the learning rate, the scheduler, `max_epochs`, `seed` ... The fit starts from the
checkpoint the way a resume does (resume/resume_run.py finds and checks it; Lightning's
`trainer.fit(ckpt_path=...)` restores it), so the global step goes on from the checkpoint's; what
a new run with new settings must not inherit is left out at the fit's start
(callbacks/fork_start.py). The parent's history stays in the parent: the fork records its own
steps from the checkpoint's on, its params are its whole config (`fork` recorded as
`<run id>@<step>`), and it is tagged `trainlab.forked_from` and `trainlab.forked_at_step`.

Which steps can be forked: the ones a run committed with a checkpoint it still keeps, its last
(`trainlab.checkpoint.step`, `checkpoints/last.ckpt`) and its best-k slots (the tags
`trainlab.checkpoint.best-<i>`); another step is one line that lists them. A model the checkpoint
cannot take (another shape) is one line before the new run exists (callbacks/fork_start.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from trainlab.checkpoints.files import ARTIFACT_DIR
from trainlab.checkpoints.trust import read_metadata
from trainlab.config.checks import config_from_record
from trainlab.engines.base import ForkSource, ResumePoint
from trainlab.errors import ConfigError
from trainlab.resume.rerun import fetch_config, overridden_keys, with_overrides
from trainlab.resume.resume_run import committed_checkpoint, fetch, resume_point
from trainlab.tracking.connection import RecorderConnection
from trainlab.tracking.messages import Reply, ResumeQuery, ResumeState
from trainlab.tracking.store_checks import dashboard_line

# Where a fork's optimizer state may go on as it was: none of these changed.
OPTIMIZER_GROUPS = ("optimizer", "scheduler", "model")


def fork_target(value: str) -> tuple[str, int | None]:
    """`<run id>` or `<run id>@<step>` -> (run id, step or None); one line when malformed."""
    run_id, at, step = value.partition("@")
    if not run_id.strip() or (at and not step.isdigit()):
        raise ConfigError(
            f"fork={value!r}: not a run to fork; expected fork=<run id> or "
            "fork=<run id>@<step> with a step the run committed a checkpoint at"
        )
    return run_id.strip(), int(step) if at else None


def plan_fork(
    cfg: DictConfig,
    uri: str,
    overrides: list[str],
    recorder: RecorderConnection,
    folder: Path,
    merge: bool = True,
) -> tuple[DictConfig, ResumePoint]:
    """The fork's config and where its fit starts. `merge`: the source run's recorded config
    with this command's overrides on top; without it (a rerun of a fork) `cfg` is already
    the whole config."""
    what = f"fork={cfg.fork}"
    run_id, step = fork_target(str(cfg.fork))
    keys = overridden_keys(overrides, what, "fork") if merge else []
    recorded = fetch_config(recorder, uri, run_id, folder, what)
    merged = with_overrides(recorded, cfg, keys) if merge else cfg.copy()
    if merged.engine.name != "lightning":
        raise ConfigError(
            f"{what}: engine={merged.engine.name} starts every run from its first weights; "
            "expected engine=lightning (a fork starts from a Lightning checkpoint)"
        )
    state: ResumeState = recorder.send(
        ResumeQuery(uri=uri, experiment_name="", run_id=run_id), reply=Reply.HANDLED
    )
    point = checkpoint_at(state, step, recorder, uri, folder, what)
    check_length(merged, point, what)
    source = config_from_record(recorded)
    same = {key: _plain(source, key) == _plain(merged, key) for key in (*OPTIMIZER_GROUPS, "data")}
    same_data = same.pop("data") and source.seed == merged.seed
    fork = ForkSource(
        run_id=run_id,
        dashboard=dashboard_line(uri, state.experiment_id, run_id),
        config=OmegaConf.to_container(source, resolve=True),  # type: ignore[arg-type]
        same_optimizer=all(same.values()),
    )
    point = dataclasses.replace(
        point,
        checkpoint_dir=None,  # the fork writes its own checkpoints in its own folder
        loader_states=point.loader_states if same_data else (),
        fork=fork,
    )
    with open_dict(merged):
        if merge:  # the source may have been a rerun: the fork is not one
            merged.rerun.run, merged.rerun.verify = None, False
        merged.fork = f"{run_id}@{point.step}"
    return merged, point


def checkpoint_at(
    state: ResumeState,
    step: int | None,
    recorder: RecorderConnection,
    uri: str,
    folder: Path,
    what: str,
) -> ResumePoint:
    """The source run's checkpoint of a committed step: its last (through the resume's own
    choice of the folder's file or the artifact), or a best-k slot that holds that step."""
    slots = dict(state.best)
    try:
        if step is None or step == state.committed_step:
            return committed_checkpoint(state, recorder, uri, what, folder)
        if step in slots:
            return best_checkpoint(state, step, slots[step], recorder, uri, folder, what)
    except ConfigError as err:  # the resume's line, said as the fork's
        line = str(err).replace(f"resume={what!r}", what)
        raise ConfigError(line.replace("can be resumed", "can be forked")) from None
    kept = sorted({*slots, *([state.committed_step] if state.committed_step is not None else [])})
    listed = ", ".join(str(s) for s in kept) if kept else "none"
    raise ConfigError(
        f"{what}: run {state.run_id} never committed a checkpoint it keeps at step {step}; "
        f"expected one of its committed steps with a checkpoint: {listed}"
    )


def best_checkpoint(
    state: ResumeState,
    step: int,
    artifact: str,
    recorder: RecorderConnection,
    uri: str,
    folder: Path,
    what: str,
) -> ResumePoint:
    """A best-k slot: the job folder's file when it still holds `step`, else the artifact."""
    name = artifact.removeprefix(f"{ARTIFACT_DIR}/")
    local = Path(state.checkpoint_dir) / name if state.checkpoint_dir else None
    if local is not None and local.is_file() and _step_of(local) == step:
        return resume_point(state.run_id, local, None)
    path = Path(fetch(recorder, uri, state.run_id, what, folder, (artifact,))[artifact])
    held = _step_of(path)
    if held != step:
        raise ConfigError(
            f"{what}: run {state.run_id}'s {artifact} holds step {held}, not {step} (a better "
            "checkpoint took its slot); expected a step it still keeps"
        )
    return resume_point(state.run_id, path, None)


def check_length(config: DictConfig, point: ResumePoint, what: str) -> None:
    """`max_epochs` and `max_steps` count from the source run's start, as the steps do: one
    line when the fork would train nothing (or Lightning would refuse the checkpoint)."""
    saved = read_metadata(point.checkpoint)
    # Epochs whose training is done: Lightning's own count (an epoch-end checkpoint's `epoch` is
    # the epoch it ended, which a restore counts as done).
    progress = saved.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {})
    epoch = int(progress.get("current", {}).get("processed", saved.get("epoch", 0)))
    if config.max_epochs <= epoch:
        raise ConfigError(
            f"{what}: the checkpoint is at epoch {epoch} (step {point.step}): max_epochs="
            f"{config.max_epochs} leaves nothing to train; expected max_epochs > {epoch} "
            "(epochs count from the source run's start)"
        )
    if config.max_steps != -1 and config.max_steps <= point.step:
        raise ConfigError(
            f"{what}: the checkpoint is at step {point.step}: max_steps={config.max_steps} leaves "
            f"nothing to train; expected max_steps > {point.step} or -1"
        )


def _step_of(path: Path) -> int | None:
    try:
        return int(read_metadata(path)["global_step"])
    except Exception:  # torn or unreadable: not the slot's step
        return None


def _plain(config: DictConfig, key: str) -> Any:
    return OmegaConf.to_container(config[key], resolve=True)
