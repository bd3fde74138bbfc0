"""Tags both sides of tracking name: how a sweep's runs are linked (as the dashboard and the
sweep's summary read them), why a run failed, which run a rerun repeats or a fork started from.
Who records a run is in liveness.py, where it came from in environment.py and source.py."""

PARENT_TAG = "mlflow.parentRunId"
JOB_TAG = "trainlab.sweep.job"
OVERRIDES_TAG = "trainlab.sweep.overrides"
ERROR_TAG = "trainlab.error"
# A trainlab.failure (tracking/liveness.py): the run's recorder stopped and no new one went on.
RECORDER_STOPPED = "recorder_stopped"
RERUN_TAG = "trainlab.rerun_of"  # a run made by `rerun=<run id>` names that run
# A run made by `fork=<run id>[@<step>]` names the run and the committed step it started from.
FORKED_FROM_TAG = "trainlab.forked_from"
FORKED_AT_TAG = "trainlab.forked_at_step"
PRUNED_TAG = "trainlab.sweep.pruned"  # "true" on a child the study's pruner stopped (FINISHED)
PRUNED_STEP_TAG = "trainlab.sweep.pruned_step"  # the last step it trained
PARETO_TAG = "trainlab.sweep.pareto"  # "true" on a child of a trial on the Pareto front

# sweep.objective and sweep.direction, on a run that names its objective: the metric a sweep's
# parent ranks it by (its final value), and which way is better.
OBJECTIVE_TAG = "trainlab.sweep.objective"
DIRECTION_TAG = "trainlab.sweep.direction"
DEFAULT_OBJECTIVES = ("final/val_loss", "final/train_loss")  # the first a run recorded


def objective_value(metrics: dict[str, float], tags: dict[str, str]) -> float | None:
    """A recorded run's objective: the metric its tag names, else final/val_loss, else
    final/train_loss; None when it recorded none of them."""
    named = tags.get(OBJECTIVE_TAG)
    for name in (named,) if named else DEFAULT_OBJECTIVES:
        if name in metrics:
            return metrics[name]
    return None
