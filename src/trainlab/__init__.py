"""trainlab: the seed notes' linear-regression pipeline grown into an experiment-tracking tool.

`trainlab.train(overrides)` runs one job from Python (trainlab/api.py); `trainlab-train` is the
same from the command line. Imported lazily: `import trainlab.<module>` (the recorder process,
the checks) does not pay for Hydra's composition machinery.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Run", "TrainError", "train"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from trainlab import api  # the API on first use only (see the docstring)

        return getattr(api, name)
    raise AttributeError(f"module 'trainlab' has no attribute {name!r}")
