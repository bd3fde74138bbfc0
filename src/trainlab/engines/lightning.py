"""The Lightning engine (note 20): the Trainer runs the loop, callbacks watch it.

The LightningModule holds the math (models/lightning_module.py, or a module of the user's); the Trainer,
instantiated from the `trainer` schema, holds forward, backward, step and zero_grad; the
callbacks of the `callbacks` config hold what cuts across (rows, console, divergence guard, early
stopping, checkpoints and signals: trainlab.callbacks) beside any the user adds; the run's
`RecorderLogger` carries what the module logs with `self.log`. trainlab passes the Trainer only
what other groups own: the device and strategy (`device.*`), the length (`max_epochs`,
`max_steps`), the callbacks, the logger and the folder.

A recorder process that stops mid-fit (errors.RecorderStopped) is replaced (tracking/run.py): the
fit rolls back to what is durable and trains on, in this process. A new Trainer is built and
`fit(ckpt_path=<the last committed checkpoint>)` restores module, optimizer, schedulers, loops and
callbacks the way a resume does; before the run's first checkpoint the fit starts again from the
module's first weights. The random generators go back to their state at the fit's start, as in a
resumed process. Every step is then recorded once (the new recorder skips what the store holds).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import get_class
from lightning.pytorch.callbacks import Checkpoint, ProgressBar

from trainlab.callbacks.commit_checkpoints import CommitCheckpoints
from trainlab.callbacks.fork_start import ForkStart, described, trusted_config
from trainlab.callbacks.from_config import build_callbacks
from trainlab.callbacks.logger import EpochEnds, RecorderLogger
from trainlab.callbacks.rows import ROW_METRICS, StepRows
from trainlab.callbacks.step_loss import EPOCH_LOSS, EpochLoss
from trainlab.checkpoints.trust import trusted_loading
from trainlab.config.schema import as_plain_dict
from trainlab.data.batches import TensorDataModule, ValidatedDataModule, lightning_data
from trainlab.data.custom import implements
from trainlab.engines import distributed
from trainlab.engines.base import Engine, FitContext, FitResult
from trainlab.engines.hook_profiler import NoProfiling
from trainlab.errors import RecorderStopped, one_line
from trainlab.models.lightning_module import TrainlabModule

MAX_ROLLBACKS = 5  # a recorder that stops more often than this in one fit ends the run


class LightningEngine(Engine):
    """`engine=lightning`: the Trainer's loop (the module docstring says how)."""

    def fit(self, context: FitContext) -> FitResult:
        """The fit, rolled back and trained on when the run's recorder stops (see above)."""
        run, first = context.run, context.resume_from
        start = FitStart(context.module) if run is not None else None
        for rollback in range(MAX_ROLLBACKS + 1):
            try:
                return self.fit_once(context)
            except RecorderStopped as lost:
                if run is None or start is None or context.settings.device.world_size > 1:
                    raise  # several processes would have to roll back together
                if not run.opened:
                    raise  # stopped before it created the run: no run to continue
                if rollback == MAX_ROLLBACKS:
                    raise RecorderStopped(f"{lost}, {rollback + 1} times in this fit") from None
                try:
                    point = run.reopen() or first  # a run resumed from before commits: its own
                except RecorderStopped:
                    raise RecorderStopped(
                        f"{lost}; the one started in its place stopped too"
                    ) from None
                except Exception as err:
                    raise RecorderStopped(
                        f"{lost}; a new recorder could not continue the run: {one_line(err)}"
                    ) from None
                start.restore(context.module, weights=point is None)
                where = f"its checkpoint at step {point.step}" if point else "the fit's start"
                went_on = f"a new one continues run {run.run_id} from {where}"
                print(f"trainlab-train: warning: {lost}; {went_on}", flush=True)
                context = dataclasses.replace(context, resume_from=point)
        raise AssertionError("unreachable")

    def fit_once(self, context: FitContext) -> FitResult:
        settings, resume = context.settings, context.resume_from
        callbacks = [
            *distributed.callbacks(settings.device),
            *build_callbacks(settings.callbacks, context),
        ]
        if not isinstance(context.module, TrainlabModule):  # its losses come from its steps
            callbacks.append(EpochLoss())
        if context.run is not None and not any(isinstance(c, EpochEnds) for c in callbacks):
            callbacks.append(EpochEnds())  # the rows' callback is one (one callback fewer)
        if resume is not None and resume.fork is not None:  # a new run from another's checkpoint
            callbacks.append(ForkStart(resume))
        trainer = build_trainer(context, callbacks)
        data_module = context.data.datamodule or lightning_data(
            context.data,
            settings.data.batch_size,
            settings.data.shuffle,
            settings.seed,
            loader_state=resume.loader_states[0] if resume and resume.loader_states else None,
        )
        checkpoint = resume.checkpoint if resume is not None else None
        # Its objects (a module's hyper-parameters) rebuilt only where the run's config names them.
        trusted = trusted_config(as_plain_dict(settings), resume)
        with trusted_loading(checkpoint, trusted, described(resume)):
            trainer.fit(
                context.module,
                **fit_data(context, trainer, data_module),
                ckpt_path=checkpoint and str(checkpoint),
            )
        saver = next((c for c in callbacks if isinstance(c, CommitCheckpoints)), None)
        logged = scalars(trainer.callback_metrics)
        if tests_itself(context, data_module) and not trainer.interrupted:
            # As lightning-hydra-template does after its fit: the module's own test/* metrics.
            trainer.test(context.module, datamodule=data_module, verbose=False)
            logged.update(scalars(trainer.callback_metrics))
        epoch_loss = next((c for c in callbacks if isinstance(c, EpochLoss)), None)
        if epoch_loss is not None and epoch_loss.mean is not None:
            logged.setdefault(EPOCH_LOSS, epoch_loss.mean)
        result = FitResult(
            distributed.steps_done(trainer), saver.saved if saver else None, logged=logged
        )
        after = context.after_fit if context.interrupts.received is None else None  # KILLED
        work = (lambda: after(result)) if after is not None else (lambda: None)
        # The last commit is waited for after the caller's work: a recorder that stopped rolls
        # the fit back (in `fit`), and the work is done again on what the new fit trains.
        if context.run is not None and saver is not None and saver.saved is not None:
            return dataclasses.replace(result, after=context.run.fit_ended(work))
        return dataclasses.replace(result, after=work())


def logs_per_step(context: FitContext, callbacks: list[L.Callback]) -> bool:
    """Whether anything in the fit may `self.log` a value per step: a module or a callback that
    trainlab did not write (a user's LearningRateMonitor reads `log_every_n_steps` too)."""
    own = isinstance(context.module, TrainlabModule)
    return not own or any(not type(c).__module__.startswith("trainlab.") for c in callbacks)


def fit_data(
    context: FitContext, trainer: L.Trainer, data_module: L.LightningDataModule
) -> dict[str, Any]:
    """What `trainer.fit` is given for the data: the datamodule, or, for trainlab's own tensors
    in a single process (whose device the Trainer knows before the fit), its loaders. Given a
    datamodule, Lightning asks at every step whether it overrides each of the three batch-transfer
    hooks, a measurable part of a small model's step (docs/performance.md, P2)."""
    if context.data.datamodule is not None or not isinstance(data_module, TensorDataModule):
        return {"datamodule": data_module}
    if trainer.world_size > 1:  # each process sets up its own share (TensorDataModule)
        return {"datamodule": data_module}
    device = trainer.strategy.root_device
    loaders = {"train_dataloaders": data_module.train_batches(device)}
    if isinstance(data_module, ValidatedDataModule):
        loaders["val_dataloaders"] = data_module.val_batches(device)
    return loaders


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The one-number values of what the module logged (Lightning's callback_metrics)."""
    return {
        name: float(value)
        for name, value in metrics.items()
        if isinstance(value, torch.Tensor) and value.numel() == 1
    }


def tests_itself(context: FitContext, data_module: L.LightningDataModule) -> bool:
    """A LightningModule of the user's with a test_step, on a datamodule with a test loader."""
    module = context.module
    if isinstance(module, TrainlabModule) or context.data.datamodule is None:
        return False
    own_step = type(module).test_step is not L.LightningModule.test_step
    return own_step and implements(data_module, "test") and context.interrupts.received is None


class FitStart:
    """The module's weights (a CPU copy) and the random generators as the fit started: where a
    roll-back goes (the generators always, the weights when the run has no checkpoint yet)."""

    def __init__(self, module: L.LightningModule) -> None:
        self.weights = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
        self.generators = (torch.get_rng_state(), np.random.get_state(), random.getstate())
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def restore(self, module: L.LightningModule, weights: bool) -> None:
        torch.set_rng_state(self.generators[0])
        np.random.set_state(self.generators[1])
        random.setstate(self.generators[2])
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)
        if weights:
            module.load_state_dict(self.weights)


def build_trainer(context: FitContext, callbacks: list[L.Callback]) -> L.Trainer:
    """`trainer._target_` (Lightning's Trainer) with the schema's knobs and what trainlab owns."""
    settings = context.settings
    logger: RecorderLogger | bool = False
    if context.run is not None:
        rows = any(isinstance(c, StepRows) for c in callbacks)
        logger = RecorderLogger(context.run, ROW_METRICS if rows else ())
    # The trainer schema holds scalars only: its class is called with its keys. Hydra's
    # instantiate would first make the dataclass an OmegaConf config, which costs as much as
    # building the Trainer itself.
    make = get_class(settings.trainer._target_)
    knobs = {k: v for k, v in dataclasses.asdict(settings.trainer).items() if k != "_target_"}
    # Without a logger, or with nothing that logs per step (trainlab's own module and
    # callbacks never do; the rows are recorded apart), spare Lightning its per-step pass over
    # the logged values: a measurable part of a seed step (docs/performance.md, P1).
    quiet = {} if logger and logs_per_step(context, callbacks) else {"log_every_n_steps": 0}
    return make(
        **(knobs | quiet),
        accelerator=context.accelerator,
        devices=settings.device.devices,
        num_nodes=settings.device.num_nodes,
        strategy=distributed.choose_strategy(settings.device),
        precision=settings.device.precision,
        max_epochs=settings.max_epochs,
        max_steps=settings.max_steps,
        callbacks=callbacks,
        logger=logger,
        profiler=NoProfiling(),  # Lightning's pass-through, cheaper per hook (see its module)
        # Lightning refuses a Checkpoint or ProgressBar callback when these are off, and adds
        # its own when they are on and none is given: they follow the callbacks.
        enable_checkpointing=any(isinstance(c, Checkpoint) for c in callbacks),
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),
        default_root_dir=str(context.checkpoint_dir.parent),
    )
