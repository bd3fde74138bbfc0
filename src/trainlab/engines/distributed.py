"""Several processes, one run: which Lightning DDP strategy a job uses and which process tracks.

What `device.strategy=auto` picks when `devices * num_nodes > 1`:

- a single run on this machine: `ddp`. Lightning's launcher re-runs the same command line once
  per extra process (LOCAL_RANK=1, 2, ...) in the same Hydra output folder; those processes
  train and print nothing and open no MLflow run.
- inside a Hydra multirun (`-m`): `ddp_spawn`. Re-running the command line would re-run the
  whole sweep (Lightning #11300, hydra #2070); spawn starts the extra processes from inside the
  job instead. The callbacks travel pickled to every rank; only global rank 0 writes to the run
  (its MLflow client is rebuilt there from the run's URI and id).
- under SLURM or torchrun, which start every process themselves: `ddp` without a launcher.
  Every task runs the whole job; the one with global rank 0 opens and writes the run.

Gradients are averaged by DDP; the data is sharded by `TensorBatches` (each rank takes an
equal, disjoint share of every global batch; data/batches.py), so a DDP run follows the single-process run.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

from trainlab.config.runtime import DeviceConfig
from trainlab.errors import ConfigError
from trainlab.logs import quiet_libraries
from trainlab.paths import in_multirun

STEPS_KEY = "trainlab/global_step"


def cluster_starts_processes() -> bool:
    return SLURMEnvironment.detect() or TorchElasticEnvironment.detect()


def choose_strategy(device: DeviceConfig) -> str:
    """The Lightning strategy for this job (see the module docstring for what is used where)."""
    if device.world_size == 1:
        return "auto"
    relaunches_command = not cluster_starts_processes() and in_multirun()
    if device.strategy == "auto":
        return "ddp_spawn" if relaunches_command else "ddp"
    if device.strategy == "ddp" and relaunches_command:
        raise ConfigError(
            "device.strategy='ddp' re-runs the command line in each extra process, which re-runs "
            "the whole Hydra multirun (Lightning #11300); expected device.strategy=auto or "
            "ddp_spawn inside -m"
        )
    return device.strategy


def callbacks(device: DeviceConfig) -> list[L.Callback]:
    """Callbacks that come first in a DDP job (empty for one process)."""
    return [GlobalLoss()] if device.world_size > 1 else []


class GlobalLoss(L.Callback):
    """Makes the step's loss the mean over all ranks for the callbacks after it.

    Each rank computes the loss of its own share; with equal shares their mean is the loss of
    the whole global batch, the number a single-process run would print and track.
    """

    def __reduce__(self) -> tuple[Any, tuple]:
        # Unpickled in a ddp_spawn rank, a fresh interpreter: the first trainlab code to run
        # there quiets the libraries as the job's own process did.
        return (_unpickled_in_spawned_rank, ())

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if isinstance(outputs, dict) and "loss" in outputs:
            # reduce() works in place: give it a copy.
            outputs["loss"] = trainer.strategy.reduce(
                outputs["loss"].detach().clone(), reduce_op="mean"
            )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # ddp_spawn sends callback_metrics (not the loop's step count) back to the main process.
        trainer.callback_metrics[STEPS_KEY] = torch.tensor(float(trainer.global_step))

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Leave together and close the process group: a rank that exits while another still
        # holds gloo connections to it can abort that one (spawned ranks skip atexit hooks).
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            trainer.strategy.barrier("trainlab.teardown")
            torch.distributed.destroy_process_group()


def _unpickled_in_spawned_rank() -> GlobalLoss:
    quiet_libraries()
    return GlobalLoss()


def steps_done(trainer: L.Trainer) -> int:
    """Optimizer steps taken by fit, also in the main process of a ddp_spawn job."""
    if trainer.global_step:
        return trainer.global_step
    spawned = trainer.callback_metrics.get(STEPS_KEY)
    return int(spawned.item()) if spawned is not None else 0
