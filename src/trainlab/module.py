"""Where runs recorded before trainlab's package layers name their model: their
config/resolved.yaml says `_target_: trainlab.module.LinearRegression`. Kept so that they still
resume, re-run and predict; new code imports from trainlab.models."""

from trainlab.models.lightning_module import RegressionModule
from trainlab.models.linear import LinearRegression

__all__ = ["LinearRegression", "RegressionModule"]
