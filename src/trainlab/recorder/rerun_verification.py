"""`rerun.verify=true`: a re-run's trajectory against its original's, step by step (recorder side).

The new run's `train/loss`, `weight/...` and `bias/...` are kept as they arrive (every step, exact
float64 values); the original's are read back from the store. For each key the largest absolute
difference over the steps both runs have is logged as `rerun/max_diff/<key>`, the largest of all
as `rerun/max_diff`, the verdict as tags. On the CPU the same config on the same software gives
bit-identical runs (every difference 0); when they differ, the config keys and environment tags
that differ between the two runs are named as the likely reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from trainlab.tracking.messages import Rows

COMPARED = ("train/loss", "weight/", "bias/")
# Tags of the environment a trajectory depends on (trainlab.env.*: versions, host, CUDA, GPU).
ENVIRONMENT = ("trainlab.env.", "mlflow.source.git.commit", "trainlab.git.dirty", "trainlab.device")
NOT_CONFIG = ("rerun.", "tracking.uri")  # how the rerun was asked for, not what it trains


def compared(key: str) -> bool:
    return key == COMPARED[0] or key.startswith(COMPARED[1:])


class Trajectory:
    """Every value of the compared keys as it arrives: {key: {step: value}}."""

    def __init__(self) -> None:
        self.values: dict[str, dict[int, float]] = {}

    def add(self, rows: Rows) -> None:
        steps = rows.steps.tolist()
        for index, key in enumerate(rows.keys):
            if compared(key):
                column = rows.values[:, index].tolist()
                self.values.setdefault(key, {}).update(zip(steps, column, strict=True))


@dataclass(frozen=True)
class Verification:
    metrics: dict[str, float]
    tags: dict[str, str]
    lines: tuple[str, ...]


def difference(a: float, b: float) -> float:
    if a == b or (math.isnan(a) and math.isnan(b)):
        return 0.0
    return abs(a - b) if math.isfinite(a - b) else math.inf


def verify(client: MlflowClient, original_id: str, run_id: str, new: Trajectory) -> Verification:
    original = client.get_run(original_id)
    keys = sorted(k for k in set(original.data.metrics) | set(new.values) if compared(k))
    largest: dict[str, tuple[float, int]] = {}  # key -> (difference, step)
    old_steps: set[int] = set()
    new_steps: set[int] = set()
    for key in keys:
        old = {m.step: m.value for m in client.get_metric_history(original_id, key)}
        ours = new.values.get(key, {})
        old_steps |= old.keys()
        new_steps |= ours.keys()
        shared = sorted(old.keys() & ours.keys())
        diffs = [(difference(old[s], ours[s]), s) for s in shared]
        largest[key] = max(diffs, key=lambda d: d[0]) if diffs else (math.nan, -1)
    shared_steps = len(old_steps & new_steps)
    worst_key = max(largest, key=lambda k: largest[k][0], default=None)
    worst = largest[worst_key][0] if worst_key else math.nan
    metrics = {f"rerun/max_diff/{key}": value for key, (value, _) in largest.items()}
    metrics["rerun/max_diff"] = worst
    params = sorted(k for k in keys if k != "train/loss")
    what = f"train/loss and {len(params)} parameter(s) at {shared_steps} step(s)"
    lines = [f"Rerun of {original_id}: compared {what}"]
    if len(old_steps) != len(new_steps):
        lines.append(
            f"  the original has {len(old_steps)} steps, the rerun {len(new_steps)}: only the "
            f"{shared_steps} steps both have are compared"
        )
    if shared_steps == 0 or worst_key is None:
        verdict = "nothing to compare"
        lines.append("  nothing to compare: the runs share no step of these metrics")
    elif worst == 0:
        verdict = "bit-identical"
        lines.append("  bit-identical: every value at every shared step is the same")
    else:
        verdict = "differs"
        loss = largest.get("train/loss", (math.nan, -1))
        lines.append(
            f"  largest difference {worst:.3g} in {worst_key} at step {largest[worst_key][1]}; "
            f"train/loss {loss[0]:.3g}"
        )
        lines.append(f"  why: {reason(original, client.get_run(run_id))}")
    tags = {"trainlab.rerun.verdict": verdict, "trainlab.rerun.compared": what}
    if verdict == "differs":
        tags["trainlab.rerun.reason"] = lines[-1].removeprefix("  why: ")
    return Verification(metrics, tags, tuple(lines))


def reason(original: Run, rerun: Run) -> str:
    """What differs between the two runs' configs and environments, as one line."""
    changes = [
        f"{key} {original.data.params.get(key)} -> {rerun.data.params.get(key)}"
        for key in sorted(set(original.data.params) | set(rerun.data.params))
        if not key.startswith(NOT_CONFIG)
        and original.data.params.get(key) != rerun.data.params.get(key)
    ]
    changes += [
        f"{key} {original.data.tags.get(key)} -> {rerun.data.tags.get(key)}"
        for key in sorted(set(original.data.tags) | set(rerun.data.tags))
        if key.startswith(ENVIRONMENT) and original.data.tags.get(key) != rerun.data.tags.get(key)
    ]
    old_data, new_data = digests(original), digests(rerun)
    changes += [
        f"{context} data digest {old_data.get(context)} -> {new_data.get(context)}"
        for context in sorted(set(old_data) | set(new_data))
        if old_data.get(context) != new_data.get(context)
    ]
    if changes:
        return "these differ between the runs: " + "; ".join(changes)
    return (
        "same config, data and environment: the computation is not deterministic here (GPU "
        "kernels that add in varying order; try trainer.deterministic=true)"
    )


def digests(run: Run) -> dict[str, str]:
    """{context: digest} of a run's dataset inputs."""
    found = {}
    for item in run.inputs.dataset_inputs if run.inputs else []:
        context = next((t.value for t in item.tags if t.key == MLFLOW_DATASET_CONTEXT), "")
        found[context] = item.dataset.digest
    return found
