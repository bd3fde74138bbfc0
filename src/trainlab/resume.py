"""Checkpoints and resume: `trainlab-train resume=<run id | path/to/last.ckpt>` continues a run.

The last checkpoint (Lightning's own format: weights, optimizer and scheduler state, loop
progress, the batcher's shuffle state) is saved into the job's output folder when the fit ends,
also when a signal stopped it, and logged as the artifact `checkpoints/last.ckpt` of the run.

Resuming re-opens the same MLflow run (no new run), rebuilds the original config from the run's
`config/overrides.yaml` and `config/resolved.yaml` artifacts, and hands the checkpoint to
`trainer.fit(ckpt_path=...)`: Lightning restores the global step, so `train/loss` goes on at the
next step with no gap and no repeat.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf, open_dict

from trainlab.paths import CONFIG_DIR, resolve_user_path
from trainlab.schema import ConfigError
from trainlab.signals import Interrupts
from trainlab.tracking import MlflowRun

CHECKPOINT_ARTIFACT = "checkpoints/last.ckpt"
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


class LastCheckpoint(L.Callback):
    """Saves `<folder>/last.ckpt` when the fit ends and logs it as `checkpoints/last.ckpt`."""

    def __init__(self, folder: Path, run: MlflowRun | None) -> None:
        self.path = folder / "last.ckpt"
        self.run = run
        self.saved = False

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # So that `resume=<path>` finds the MLflow run the checkpoint belongs to.
        checkpoint["trainlab"] = {"run_id": self.run.run_id if self.run else None}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.path)
        self.saved = True
        if self.run is not None:
            self.run.client.log_artifact(self.run.run_id, str(self.path), "checkpoints")


@dataclass
class ResumePoint:
    run_id: str
    checkpoint: Path
    step: int  # the first step the resumed fit logs
    # The batcher's shuffle state. Lightning restores it only when it stopped inside an epoch,
    # not from a checkpoint taken at the end of one (its "resumed on epoch end" case).
    loader_states: list[dict[str, Any]] = field(default_factory=list)

    def restore(self, batches: Any) -> None:
        if self.loader_states:
            batches.load_state_dict(self.loader_states[0])


def plan_resume(cfg: DictConfig, uri: str, overrides: list[str], folder: Path) -> tuple:
    """The original run's config (with the allowed overrides) and where its checkpoint lies."""
    target = str(cfg.resume)
    path = resolve_user_path(target)
    if target.endswith(".ckpt") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"resume={target!r}: no such checkpoint file ({path})")
        run_id = _run_id_in(path, target)
    else:
        run_id, path = target, None
    # No new empty store (and MLflow's table-creation log lines) for a run that cannot be there.
    no_store = uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists()
    try:
        if no_store:
            raise MlflowException(f"no store at {uri}")
        client = MlflowClient(tracking_uri=uri)
        client.get_run(run_id)
    except MlflowException:
        raise ConfigError(
            f"resume={target!r}: no run {run_id!r} in the store {uri}; expected a run id "
            "printed by trainlab-train (or tracking.uri= pointing at its store)"
        ) from None
    if path is None:
        path = _download(client, run_id, CHECKPOINT_ARTIFACT, folder, target)
    changed = [o for o in overrides if _key(o) != "resume"]
    for override in changed:
        if _key(override) not in RESUMABLE_KEYS:
            raise ConfigError(
                f"resume={target!r}: {override!r} cannot change when resuming (the run keeps its "
                f"config); expected only {', '.join(RESUMABLE_KEYS)}"
            )
    original = yaml.safe_load(
        _download(client, run_id, "config/overrides.yaml", folder, target).read_text()
    )
    resolved = yaml.safe_load(
        _download(client, run_id, "config/resolved.yaml", folder, target).read_text()
    )
    merged = OmegaConf.merge(_compose(original.get("overrides", [])), resolved)
    merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(changed))
    with open_dict(merged):
        merged.resume = run_id
        merged.tracking.uri = uri
    state = torch.load(path, map_location="cpu", weights_only=True)
    loader_states = state["loops"]["fit_loop"]["state_dict"].get("combined_loader", [])
    return merged, ResumePoint(run_id, path, int(state["global_step"]), loader_states)


@dataclass
class InterruptReport:
    """What the pipeline has made so far, for the lines printed when a signal stops it."""

    run: MlflowRun | None = None
    module: L.LightningModule | None = None
    checkpoint: LastCheckpoint | None = None
    steps: int = 0


@contextmanager
def report_interrupt(interrupts: Interrupts) -> Iterator[InterruptReport]:
    """On Ctrl-C or SIGTERM: say where the run stopped and how to resume it."""
    report = InterruptReport()
    try:
        yield report
    except KeyboardInterrupt:
        if report.run is not None:
            saved = report.checkpoint is not None and report.checkpoint.saved
            step = report.module.global_step if report.module is not None else report.steps
            where = f"; checkpoint {report.checkpoint.path}" if saved else ""
            print(
                f"Interrupted by {interrupts.name or 'KeyboardInterrupt'} after step {step - 1}: "
                f"run {report.run.run_id} is KILLED{where}"
            )
            if saved:
                print(f"Resume with: trainlab-train resume={report.run.run_id}")
        raise


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _run_id_in(path: Path, target: str) -> str:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        run_id = state.get("trainlab", {}).get("run_id")
    except Exception as err:
        raise ConfigError(f"resume={target!r}: not a readable checkpoint ({err})") from None
    if not run_id:
        raise ConfigError(f"resume={target!r}: the checkpoint names no MLflow run to continue")
    return str(run_id)


def _download(client: MlflowClient, run_id: str, artifact: str, folder: Path, target: str) -> Path:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep stderr clean
    destination = folder / "resume"
    destination.mkdir(parents=True, exist_ok=True)
    try:
        local = Path(client.download_artifacts(run_id, artifact, str(destination)))
    except (MlflowException, OSError):
        raise ConfigError(
            f"resume={target!r}: run {run_id} has no artifact {artifact}; only runs that "
            "trainlab-train saved a checkpoint for can be resumed"
        ) from None
    return local


def _compose(overrides: list[str]) -> DictConfig:
    """The original job's composition (for the config groups' schemas)."""
    if GlobalHydra.instance().is_initialized():
        return compose(config_name="train", overrides=overrides)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)
