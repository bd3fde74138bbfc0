"""`TrialReports`: a trial of an Optuna sweep reports to its study, and stops when pruned.

Listed among trainlab's callbacks (config/schema.py), it is built only for a job of an Optuna
sweep, whose trial the pipeline opens in its study (`FitContext.trial`, sweeps/study.py's
TrialHandle); any other run gets none. Every trial names its MLflow run and model in the study (user
attributes `mlflow.run_id`, `trainlab.model`); the rest only where the study wants to hear from
it (sweeps/trials.py: a pruner, or an objective that only the job can measure). At the end of every epoch (or every
`hydra.sweeper.pruning.every_n_steps` steps) the first replicate of the trial reports the
objective metric (`val/loss` when the module validates, else the mean train/loss since the last
report) and asks the pruner; when it says stop, the Trainer stops at that step boundary, as at
`max_steps`: the last checkpoint is written and commits the rows, the run ends FINISHED with the
tags `trainlab.sweep.pruned=true` and `trainlab.sweep.pruned_step=<last step trained>` (a pruned
trial is a result, not a failure), and the study learns it was pruned. The other replicates stop
at their next report point once their trial is pruned. At the fit's end a trial records what it
measured (`fit/seconds`, `model/parameters`) in its run and in the study, for objectives.

Every report is written through to the study (one RDB write), so trials in
other processes and on other nodes see it; a median or percentile pruner is asked only at the
points where it could stop the trial, on a copy of the completed trials read again once a second
(sweeps/study.py, TrialHandle).
"""

from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING, Any

import lightning as L
import torch

from trainlab.callbacks.rows import VAL_KEY
from trainlab.callbacks.step_loss import StepLoss
from trainlab.engines.base import RunHandle, StudyTrial
from trainlab.errors import one_line

if TYPE_CHECKING:
    from trainlab.engines.base import FitContext

SECONDS_KEY, PARAMETERS_KEY = "fit/seconds", "model/parameters"


class TrialReports(L.Callback):
    @classmethod
    def for_run(cls, fit: FitContext) -> TrialReports | None:
        if fit.trial is None:
            return None
        reports = cls(fit.trial, fit.run)
        reports.watched = fit.settings.sweep.objective or VAL_KEY
        return reports

    def __init__(self, trial: StudyTrial, run: RunHandle | None) -> None:
        self.trial, self.run = trial, run
        self.prunes = trial.prunes
        self.reports = trial.prunes and trial.replicate == 0  # one writer per report point
        self.every = trial.every_n_steps
        self.measures = trial.measures  # objectives only the job can measure, or pruning
        self.loss = StepLoss()
        self.watched = VAL_KEY  # the metric reported (sweep.objective's, when it names one)
        self.window: list[torch.Tensor] = []
        self.pruned: tuple[int, int] | None = None  # report point, last step trained
        self.seconds_before = 0.0  # a resumed fit's earlier part
        self.started = 0.0
        self.broken: str | None = None  # the study could not be reached: training goes on

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.loss.start(trainer)
        self.started = time.monotonic()
        if trainer.is_global_zero and self.run is not None:
            model = getattr(pl_module, "model", pl_module)
            try:  # the study names each trial's runs and model (optuna-dashboard shows them)
                self.trial.named(
                    self.run.run_id, f"{type(model).__module__}.{type(model).__name__}"
                )
            except Exception as err:
                self.broken = one_line(err)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = self.loss.after_batch(trainer, outputs)
        if loss is None or not self.prunes:
            return
        self.window.append(loss.detach())
        if self.every is not None and trainer.global_step % self.every == 0:
            self.report_point(trainer, trainer.global_step)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.prunes and self.every is None:
            self.report_point(trainer, trainer.current_epoch)

    def report_point(self, trainer: L.Trainer, point: int) -> None:
        """Report (first replicate) or look (the others); stop the Trainer when pruned."""
        window, self.window = self.window, []
        if self.broken is not None or self.pruned is not None or not trainer.is_global_zero:
            return
        try:
            if self.reports:
                stop = self.trial.report(self.objective(trainer, window), point)
                if stop:
                    self.trial.mark_pruned(point, trainer.global_step - 1)
            else:
                stop = self.trial.pruned() is not None
        except Exception as err:  # a locked or unreachable study: this trial is not pruned
            self.broken = one_line(err)
            print(
                f"trainlab-train: warning: trial {self.trial.number} cannot reach its study "
                f"({self.broken}); it trains to the end",
                file=sys.stderr,
                flush=True,
            )
            return
        if stop:
            self.pruned = (point, trainer.global_step - 1)
            trainer.should_stop = True

    def objective(self, trainer: L.Trainer, window: list[torch.Tensor]) -> float:
        """What the pruner compares: the metric sweep.objective names (val/loss by default) as
        the module logged it last, else the mean training loss since the last report."""
        value = trainer.callback_metrics.get(self.watched)
        if value is not None:
            return float(value)
        return float(torch.stack(window).double().mean()) if window else math.nan

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        seconds = self.seconds_before + time.monotonic() - self.started
        parameters = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
        measured = {"fit_seconds": seconds, "parameters": float(parameters)}
        if self.run is not None:
            step = max(trainer.global_step - 1, 0)
            self.run.add([SECONDS_KEY, PARAMETERS_KEY], [seconds, float(parameters)], step)
            if self.pruned is not None:
                self.run.set_tags(self.trial.pruned_tags(self.pruned[1]))
        if self.pruned is not None:
            point, step = self.pruned
            where = f"epoch {point}" if self.every is None else f"step {point}"
            print(f"Trial {self.trial.number} pruned at {where} (last step {step})", flush=True)
        if self.broken is None and self.measures:
            try:
                self.trial.measured(measured)
            except Exception as err:
                print(f"trainlab-train: warning: trial {self.trial.number}: {one_line(err)}")

    def state_dict(self) -> dict[str, Any]:
        seconds = self.seconds_before + (time.monotonic() - self.started if self.started else 0.0)
        return {"seconds": seconds, "pruned": list(self.pruned) if self.pruned else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.seconds_before = float(state_dict.get("seconds", 0.0))
        pruned = state_dict.get("pruned")
        self.pruned = (int(pruned[0]), int(pruned[1])) if pruned else None
