"""A fork's start (`fork=<run id>[@<step>]`, resume/fork.py): the source run's checkpoint,
restored by Lightning as a resume restores it (`trainer.fit(ckpt_path=...)`: weights, loops, so
the global step goes on from the checkpoint's), less what a new run with new settings must not
inherit. Through Lightning's public hooks, on the checkpoint Lightning is about to restore:

- the callbacks' states are left out: the fork has its own best checkpoints, early-stopping
  patience and rows;
- the batcher's position is left out where the data or the seed changed;
- where the optimizer, scheduler and model configs are the source's own (a fork that changes
  `max_epochs` or the data), optimizer and schedulers go on exactly as they were. Otherwise
  the optimizer keeps its per-parameter state (momentum, Adam's moments) when it is of the same
  kind (the same hyper-parameter names in the same groups of the same sizes) and takes this
  run's hyper-parameters (lr, weight_decay ...); another optimizer starts fresh (the weights
  only); the schedulers start fresh, counted from the fork.

`on_load_checkpoint` runs before Lightning builds the optimizers, `on_fit_start` after it built
them and before it restores their state: the checkpoint's optimizer entries are rewritten there
from this run's new optimizers (for strategies that restore after setup, already in the first).

`check_fits`, before the fork's run exists: a model the checkpoint's weights do not fit (another
shape, another layer) is one line, not a failed run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from trainlab.checkpoints.trust import trusted_loading
from trainlab.engines.base import ResumePoint
from trainlab.errors import ConfigError

SCHEDULE_KEYS = ("initial_lr",)  # what a scheduler adds to a param group: not the optimizer's


def trusted_config(config: Mapping[str, Any], point: ResumePoint | None) -> dict[str, Any]:
    """What a checkpoint may rebuild: the classes this run's config names, and for a fork also
    those its source run's recorded config names (its checkpoint was written by that run)."""
    if point is None or point.fork is None:
        return dict(config)
    return {"run": dict(config), "source": point.fork.config}


def described(point: ResumePoint | None) -> str:
    """How the checkpoint was given, for a line about it."""
    if point is None:
        return "resume=None"
    return f"fork={point.run_id}@{point.step}" if point.fork else f"resume={point.run_id}"


def check_fits(module: L.LightningModule, point: ResumePoint, config: Mapping[str, Any]) -> None:
    """One line when the checkpoint's weights do not fit this run's module (read lazily:
    only the names and shapes)."""
    what = described(point)
    with trusted_loading(point.checkpoint, trusted_config(config, point), what):
        saved = torch.load(point.checkpoint, map_location="cpu", weights_only=True, mmap=True)
    theirs, mine = saved.get("state_dict", {}), module.state_dict()
    for name in sorted(set(theirs) | set(mine)):
        there, here = _shape(theirs.get(name)), _shape(mine.get(name))
        if there == here:
            continue
        if there is None:
            problem = f"{name} {here} is not in the checkpoint"
        elif here is None:
            problem = f"the checkpoint's {name} {there} is not in this model"
        else:
            problem = f"{name} is {there} in the checkpoint and {here} in this model"
        raise ConfigError(
            f"{what}: the checkpoint cannot take this model: {problem}; expected the model of "
            f"run {point.run_id} (a fork may change the optimizer, scheduler, lengths, data and "
            "seed, not the model's shape)"
        )


def _shape(value: Any) -> tuple[int, ...] | None:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


class ForkStart(Callback):
    def __init__(self, point: ResumePoint) -> None:
        assert point.fork is not None
        self.same_optimizer = point.fork.same_optimizer
        self.keep_loader = bool(point.loader_states)
        self.loaded: dict[str, Any] | None = None

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint["callbacks"] = {}
        if not self.keep_loader:
            fit_loop = checkpoint.get("loops", {}).get("fit_loop", {})
            fit_loop.get("state_dict", {}).pop("combined_loader", None)
        self.loaded = checkpoint
        if trainer.optimizers:  # a strategy that restores after setting up
            self.rewrite(trainer)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.loaded is not None:
            self.rewrite(trainer)

    def rewrite(self, trainer: L.Trainer) -> None:
        checkpoint, self.loaded = self.loaded, None
        if checkpoint is None or self.same_optimizer:
            return
        fresh = [optimizer.state_dict() for optimizer in trainer.optimizers]
        saved = checkpoint.get("optimizer_states", [])
        checkpoint["optimizer_states"] = [
            carried(saved[i], new) if i < len(saved) else new for i, new in enumerate(fresh)
        ]
        checkpoint["lr_schedulers"] = [
            c.scheduler.state_dict() for c in trainer.lr_scheduler_configs
        ]


def carried(saved: dict[str, Any], fresh: dict[str, Any]) -> dict[str, Any]:
    """The saved optimizer state with this run's hyper-parameters, where it is of the same kind
    as this run's optimizer; else this run's fresh state."""
    old, new = saved.get("param_groups", []), fresh["param_groups"]
    same = len(old) == len(new) and all(
        _settings(a) == _settings(b) and len(a["params"]) == len(b["params"])
        for a, b in zip(old, new, strict=True)
    )
    if not same:
        return fresh
    groups = [{**b, "params": a["params"]} for a, b in zip(old, new, strict=True)]
    return {"state": saved.get("state", {}), "param_groups": groups}


def _settings(group: dict[str, Any]) -> set[str]:
    return {key for key in group if key != "params" and key not in SCHEDULE_KEYS}
