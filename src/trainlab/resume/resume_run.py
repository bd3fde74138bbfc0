"""`trainlab-train resume=<run id | path/to/last.ckpt | auto>`: continue a run where it stopped.

Resuming re-opens the same MLflow run (no new run) and hands its checkpoint to
`trainer.fit(ckpt_path=...)`: Lightning restores the global step, so `train/loss` goes on at
the next step with no gap and no repeat. The recorder process finds the run and downloads what
is needed: the trainer never imports MLflow.

- `resume=<run id>` (or a checkpoint file) rebuilds the config the run recorded
  (`config/resolved.yaml`, whatever the option files say today) with the few keys a resume may
  change. The command may re-state the run's own values (the command that started it, with
  `resume=<id>` added): each key it sets, itself or through a preset or an option, is compared
  with the recorded value, and only real changes are refused, each named with both values.
- `resume=auto` finds this job's run by its job key (config/checkpoint.py: same config, same
  job of the same sweep): the latest one that did not end for good and has a committed
  checkpoint; none: a new run. Inside a cluster job (`resume` unset) the same happens, limited
  to runs of this very cluster job, so that a requeued job continues its own run.

Which checkpoint: the run's last *committed* one (recorder/commits.py). The job's folder holds
it as `last.ckpt` when it is still there (no download); otherwise the artifact. Either is taken
only when its step is at least the committed step, so history and weights meet.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import yaml
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf, open_dict

from trainlab.checkpoints.files import ARTIFACT_DIR, LAST
from trainlab.checkpoints.trust import read_metadata
from trainlab.config.checkpoint import RESUMABLE_KEYS
from trainlab.config.checks import config_from_record, override_key
from trainlab.config.flat import flatten
from trainlab.engines.base import ResumePoint
from trainlab.errors import ConfigError, one_line
from trainlab.paths import resolve_user_path, task_overrides, tracking_uri, unwritable_reason
from trainlab.tracking.connection import RecorderConnection, RecorderError
from trainlab.tracking.messages import EndStatus, FetchRequest, Reply, ResumeQuery, ResumeState
from trainlab.tracking.recorders import private_recorder
from trainlab.tracking.store_checks import absolute_uri, check_store, sqlite_path

CHECKPOINT_ARTIFACT = f"{ARTIFACT_DIR}/{LAST}"
CONFIG_ARTIFACT = "config/resolved.yaml"


def plan_resume_of(cfg: DictConfig, folder: Path) -> tuple[DictConfig, ResumePoint]:
    """`resume=<run id | checkpoint>` on this command: the run's store, asked through this
    process's recorder, and the plan below."""
    uri = absolute_uri(cfg.tracking.uri or tracking_uri())
    check_store(uri)
    recorder = private_recorder(uri)
    return plan_resume(cfg, uri, task_overrides(), recorder, folder)


def plan_resume(
    cfg: DictConfig, uri: str, overrides: list[str], recorder: RecorderConnection, folder: Path
) -> tuple[DictConfig, ResumePoint]:
    """The original run's config (with the changes a resume may make) and where its checkpoint
    lies; `cfg` is this command's config as Hydra composed it from `overrides`."""
    target = str(cfg.resume)
    path = resolve_user_path(target)
    given = target.endswith(".ckpt") or path.is_file()
    if given and not path.is_file():
        raise ConfigError(f"resume={target!r}: no such checkpoint file ({path})")
    run_id = _run_id_in(path, target) if given else target
    query = ResumeQuery(uri=uri, experiment_name="", run_id=run_id)
    state = find(recorder, query, target, uri)
    files = fetch(recorder, uri, run_id, target, folder, (CONFIG_ARTIFACT,))
    resolved = yaml.safe_load(Path(files[CONFIG_ARTIFACT]).read_text())
    merged = config_from_record(resolved)
    differs = changes(cfg, merged, overrides)
    refused = {k: v for k, v in differs.items() if k not in RESUMABLE_KEYS}
    if refused:
        listed = ", ".join(
            f"{k} ({was!r} recorded, {now!r} given)" for k, (was, now) in refused.items()
        )
        raise ConfigError(
            f"resume={target!r}: {listed} cannot change when resuming (the run keeps its "
            f"config); expected the run's own values there: only {', '.join(RESUMABLE_KEYS)} "
            "may change (and tracking=<option> says where the run is)"
        )
    with open_dict(merged):
        for key, (_, now) in differs.items():
            OmegaConf.update(merged, key, now, merge=False)
        merged.resume = run_id
        merged.tracking.uri = uri
    if given:
        return merged, resume_point(run_id, path, continue_in(state))
    return merged, committed_checkpoint(state, recorder, uri, target, folder)


def changes(cfg: DictConfig, recorded: DictConfig, overrides: list[str]) -> dict[str, Any]:
    """{key: (recorded value, this command's)} for every key this command sets whose value is
    not the recorded one. What it sets: the keys its overrides name, and for `group=option` the
    keys that option sets: the whole group, or, for a preset (`experiment=...`, a `_global_`
    package), its own keys and the groups its defaults list picks. `tracking=<option>` only
    says where the run is: the caller read the store from it, and the run keeps its recorded
    tracking settings."""
    set_here: set[str] = set()
    for override in overrides:
        key = override_key(override)
        if key in ("resume", "tracking"):
            continue
        option = override.split("=", 1)[1] if "=" in override else None
        group = _group_option(key, option) if option and "." not in key else None
        set_here |= group if group is not None else {key}
    theirs = flatten(OmegaConf.to_container(recorded, resolve=True))
    mine = flatten(OmegaConf.to_container(cfg, resolve=False))
    found = {}
    for key in sorted(set(mine) | set(theirs)):
        if not any(key == k or key.startswith(f"{k}.") for k in set_here):
            continue
        now = OmegaConf.select(cfg, key, default=None)  # resolved
        if now != theirs.get(key):
            found[key] = (theirs.get(key), now)
    return found


def _group_option(group: str, option: str) -> set[str] | None:
    """The keys (and key prefixes) option `option` of config group `group` sets, read from the
    config sources Hydra composed this job from; None when `group` is no config group."""
    if not GlobalHydra.instance().is_initialized():
        return {group}
    sources = GlobalHydra.instance().config_loader().get_sources()
    source = next((s for s in sources if s.is_config(f"{group}/{option}")), None)
    if source is None:
        return None
    loaded = source.load_config(f"{group}/{option}")
    if loaded.header.get("package") != "_global_":
        return {group}
    content = OmegaConf.to_container(loaded.config, resolve=False)
    assert isinstance(content, dict)
    picked = content.pop("defaults", None) or []
    keys = set(flatten(content))
    for entry in picked:  # `override /optimizer: sgd`: that group, whatever it holds
        if isinstance(entry, dict):
            keys |= {name.removeprefix("override").strip().lstrip("/") for name in entry}
    return keys


def find_run(
    recorder: RecorderConnection, query: ResumeQuery, folder: Path
) -> tuple[ResumeState, ResumePoint | None] | None:
    """`resume=auto`: this job's run and the checkpoint to continue it from (None: the run of
    this cluster job already FINISHED), or None: a new run."""
    state = find(recorder, query, "auto", query.uri)
    if state is None:
        return None
    if state.status in (EndStatus.FINISHED.value, EndStatus.FAILED.value):  # ended for good
        return state, None
    if state.committed_step is None:  # a continued sweep's trial cut short before a checkpoint
        return state, ResumePoint(run_id=state.run_id, checkpoint=None, step=0)
    return state, committed_checkpoint(state, recorder, query.uri, "auto", folder)


def committed_checkpoint(
    state: ResumeState, recorder: RecorderConnection, uri: str, target: str, folder: Path
) -> ResumePoint:
    """The newest readable checkpoint at or after the run's commit mark: the job folder's
    `last.ckpt` if it qualifies, else the run's artifact."""
    local = Path(state.checkpoint_dir) / LAST if state.checkpoint_dir else None
    local_problem = _unusable(local, state.committed_step) if local is not None else "not kept"
    if local is not None and local_problem is None:
        return resume_point(state.run_id, local, continue_in(state))
    files = fetch(recorder, uri, state.run_id, target, folder, (CHECKPOINT_ARTIFACT,))
    artifact = Path(files[CHECKPOINT_ARTIFACT])
    problem = _unusable(artifact, state.committed_step)
    if problem is not None:
        raise ConfigError(
            f"resume={target!r}: run {state.run_id}'s checkpoint {CHECKPOINT_ARTIFACT} {problem}, "
            f"and the job folder's {local or LAST} {local_problem.replace('be read', 'be read either', 1)}; "
            "start a new run"
        )
    return resume_point(state.run_id, artifact, continue_in(state))


def unreadable(err: Exception) -> str:
    if "Weights only load failed" in str(err):
        # torch's message is a paragraph on weights_only; a file that is no checkpoint of
        # tensors and plain values (a plain pickle, a torn copy, text) is never unpickled.
        return "not a file of tensors and plain values, which is all a checkpoint is read as"
    return one_line(err)[:200]


def _unusable(path: Path, committed: int | None) -> str | None:
    """Why the checkpoint cannot continue the run (missing, unreadable and why, behind the
    commit mark), or None when it can."""
    if not path.is_file():
        return "is missing"
    try:
        step = int(_load(path)["global_step"])
    except ConfigError as err:  # a class that no checkpoint of trainlab's names
        return f"cannot be read ({err})"
    except Exception as err:  # torn by a kill during a copy, not a checkpoint
        return f"cannot be read ({unreadable(err)})"
    if committed is not None and step < committed:
        return f"holds step {step}, older than the committed step {committed}"
    return None


def resume_point(run_id: str, checkpoint: Path, folder: Path | None) -> ResumePoint:
    state = _load(checkpoint)
    loader_states = state["loops"]["fit_loop"]["state_dict"].get("combined_loader", [])
    return ResumePoint(
        run_id=run_id,
        checkpoint=checkpoint,
        step=int(state["global_step"]),
        loader_states=tuple(loader_states),
        checkpoint_dir=folder,
    )


def continue_in(state: ResumeState | None) -> Path | None:
    """The run's checkpoint folder, where the resumed fit goes on writing, if still usable."""
    if state is None or not state.checkpoint_dir:
        return None
    folder = Path(state.checkpoint_dir)
    return folder if folder.is_dir() and unwritable_reason(folder) is None else None


def find(
    recorder: RecorderConnection, query: ResumeQuery, target: str, uri: str
) -> ResumeState | None:
    """The recorder's answer to `query` (the run named, or this job's run to continue)."""
    run_id = query.run_id
    database = sqlite_path(uri)
    if database is not None and not database.exists():
        if run_id is None:
            return None  # resume=auto on a store that does not exist yet: a new run
        raise _no_run(target, run_id, uri)
    try:
        return recorder.send(query, reply=Reply.HANDLED)
    except RecorderError as err:
        if run_id is not None and _not_found(err):
            raise _no_run(target, run_id, uri) from None
        raise


def fetch(
    recorder: RecorderConnection,
    uri: str,
    run_id: str,
    target: str,
    folder: Path,
    wanted: tuple[str, ...],
) -> dict[str, str]:
    """Artifacts of the run, downloaded by the recorder process."""
    try:
        request = FetchRequest(
            uri=uri, run_id=run_id, artifacts=wanted, folder=str(folder / "resume")
        )
        return recorder.send(request, reply=Reply.HANDLED)
    except RecorderError as err:
        if _not_found(err) and CONFIG_ARTIFACT in wanted:
            raise ConfigError(
                f"resume={target!r}: run {run_id} has no artifact {CONFIG_ARTIFACT}; only runs "
                "that trainlab-train recorded can be resumed"
            ) from None
        raise ConfigError(
            f"resume={target!r}: run {run_id} has no artifact {', '.join(wanted)}; only runs "
            f"that trainlab-train saved a checkpoint for can be resumed ({err})"
        ) from None


def _not_found(err: Exception) -> bool:
    return "RESOURCE_DOES_NOT_EXIST" in str(err) or "not found" in str(err).lower()


def _no_run(target: str, run_id: str, uri: str) -> ConfigError:
    return ConfigError(
        f"resume={target!r}: no run {run_id!r} in the store {uri}; expected a run id printed by "
        "trainlab-train (or tracking.uri= pointing at its store)"
    )


def _load(path: Path) -> dict:
    """A checkpoint's bookkeeping, read as data (checkpoints/trust.py)."""
    # torch warns about a pickle it is about to refuse (its protocol); the refusal is said once.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return read_metadata(path)


def _run_id_in(path: Path, target: str) -> str:
    try:
        run_id = _load(path).get("trainlab", {}).get("run_id")
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError(
            f"resume={target!r}: not a checkpoint trainlab-train wrote ({unreadable(err)}); "
            "expected a run id or a last.ckpt"
        ) from None
    if not run_id:
        raise ConfigError(f"resume={target!r}: the checkpoint names no MLflow run to continue")
    return str(run_id)
