"""What finishing a run carries to the recorder beside its metrics: the rows its plots are drawn
from, the trained model as it is served, the held-out rows the recorder scores. Plain arrays and
a CPU module (pickled with the message); no MLflow here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only in annotations: the checks before torch need no numpy either
    import numpy as np


@dataclass(frozen=True)
class PlotData:
    """What the fit and residual plots are drawn from (at most a few thousand rows)."""

    x: dict[str, np.ndarray]  # "train"/"validation" -> raw inputs
    y: dict[str, np.ndarray]  # -> targets
    predicted: dict[str, np.ndarray]  # -> predictions (a classifier's: class probabilities)
    feature_names: list[str]
    target_names: list[str]
    classes: tuple[str, ...] = ()  # a classifier's class names; y then holds class indices


@dataclass(frozen=True)
class ModelPayload:
    """The trained model as it is served: raw inputs in, predictions out."""

    module: bytes  # a torch nn.Module on the CPU, in eval mode, with its classes (portable.py)
    example: np.ndarray  # a few raw input rows
    output: np.ndarray  # the model's output for them
    feature_names: list[str]
    target_names: list[str]
    register: str | None = None
    alias: str = "current"
    format: str = "pickle"  # or "pt2" (tracking.model_format)
    classes: tuple[str, ...] = ()  # a classifier: its output is one probability per class
    # What rebuilds the network from the run's config where torch.export cannot export it:
    # {"model": the config's model group, "shapes": its constructor's shape arguments}.
    rebuild: dict[str, Any] | None = None


@dataclass(frozen=True)
class Evaluation:
    """The held-out rows (data.test_split) and what the trained model made of them: the
    recorder scores them (`test/*` metrics) and draws the evaluation plots."""

    targets: np.ndarray  # regression: (rows, targets); classification: class indices
    predicted: np.ndarray  # regression: outputs; classification: (rows, classes) probabilities
    target_names: list[str]
    classes: tuple[str, ...] = ()
