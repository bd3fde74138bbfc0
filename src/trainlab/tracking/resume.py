"""`trainlab-train resume=<run id | path/to/last.ckpt>`: continue a run where it stopped.

Resuming re-opens the same MLflow run (no new run), rebuilds the config the run recorded
(`config/resolved.yaml`, whatever the option files say today) with the few keys a resume may
change, and hands the run's checkpoint to `trainer.fit(ckpt_path=...)`: Lightning restores the
global step, so `train/loss` goes on at the next step with no gap and no repeat. The recorder
process downloads the artifacts: the trainer never imports MLflow.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

from trainlab.config.checks import config_from_record, override_key
from trainlab.engines.base import ResumePoint
from trainlab.engines.checkpoints import ARTIFACT_DIR, LAST
from trainlab.errors import ConfigError
from trainlab.paths import resolve_user_path
from trainlab.tracking import protocol as msg
from trainlab.tracking.client import Recorder, RecorderError
from trainlab.tracking.store import sqlite_path

CHECKPOINT_ARTIFACT = f"{ARTIFACT_DIR}/{LAST}"
# What a resumed run may change: how long it trains and how it reports, never what it trains.
RESUMABLE_KEYS = (
    "max_epochs",
    "max_steps",
    "print_every",
    "engine.progress_bar",
    "guard.nonfinite",
    "guard.check_every",
    "tracking.uri",
    "tracking.flush_every_seconds",
)


def plan_resume(
    target: str, uri: str, overrides: list[str], recorder: Recorder, folder: Path
) -> tuple[DictConfig, ResumePoint]:
    """The original run's config (with the allowed overrides) and where its checkpoint lies."""
    path = resolve_user_path(target)
    given = target.endswith(".ckpt") or path.is_file()
    if given and not path.is_file():
        raise ConfigError(f"resume={target!r}: no such checkpoint file ({path})")
    run_id = _run_id_in(path, target) if given else target
    changed = [o for o in overrides if override_key(o) != "resume"]
    for override in changed:
        if override_key(override) not in RESUMABLE_KEYS:
            raise ConfigError(
                f"resume={target!r}: {override!r} cannot change when resuming (the run keeps its "
                f"config); expected only {', '.join(RESUMABLE_KEYS)}"
            )
    files = fetch(recorder, uri, run_id, target, folder, with_checkpoint=not given)
    resolved = yaml.safe_load(Path(files["config/resolved.yaml"]).read_text())
    merged = OmegaConf.merge(config_from_record(resolved), OmegaConf.from_dotlist(changed))
    with open_dict(merged):
        merged.resume = run_id
        merged.tracking.uri = uri
    checkpoint = path if given else Path(files[CHECKPOINT_ARTIFACT])
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    loader_states = state["loops"]["fit_loop"]["state_dict"].get("combined_loader", [])
    return merged, ResumePoint(run_id, checkpoint, int(state["global_step"]), tuple(loader_states))


def fetch(
    recorder: Recorder, uri: str, run_id: str, target: str, folder: Path, with_checkpoint: bool
) -> dict[str, str]:
    """The run's recorded config (and checkpoint), downloaded by the recorder process."""
    database = sqlite_path(uri)
    # No new empty store (and MLflow's table creation) for a run that cannot be there.
    missing = database is not None and not database.exists()
    wanted = ("config/resolved.yaml", *((CHECKPOINT_ARTIFACT,) if with_checkpoint else ()))
    try:
        if missing:
            raise RecorderError(f"no store at {uri}")
        request = msg.FetchRequest(uri, run_id, wanted, str(folder / "resume"))
        return recorder.send(msg.FETCH, "", request, reply="handled")
    except RecorderError as err:
        if "RESOURCE_DOES_NOT_EXIST" in str(err) or "not found" in str(err).lower() or missing:
            raise ConfigError(
                f"resume={target!r}: no run {run_id!r} in the store {uri}; expected a run id "
                "printed by trainlab-train (or tracking.uri= pointing at its store)"
            ) from None
        raise ConfigError(
            f"resume={target!r}: run {run_id} has no artifact {CHECKPOINT_ARTIFACT} or "
            "config/resolved.yaml; only runs that trainlab-train saved a checkpoint for can "
            f"be resumed ({err})"
        ) from None


def _run_id_in(path: Path, target: str) -> str:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        run_id = state.get("trainlab", {}).get("run_id")
    except Exception as err:
        raise ConfigError(f"resume={target!r}: not a readable checkpoint ({err})") from None
    if not run_id:
        raise ConfigError(f"resume={target!r}: the checkpoint names no MLflow run to continue")
    return str(run_id)
