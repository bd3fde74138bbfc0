"""`hydra/sweeper=optuna`: the Hydra side of trainlab's Optuna search.

Hydra instantiates this class from the sweeper's config (config.py) and calls `setup` and
`sweep`; the search itself (study, batches of trials through the configured launcher, pruning,
resume, replicates) is trainlab.sweeps.search, imported only when a sweep runs: Hydra imports
this module at every start, and Optuna with SQLAlchemy takes ~0.3 s.
"""

from __future__ import annotations

from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        # The keys of config.OptunaSweeperConfig; the search reads them from the whole config
        # (hydra.sweeper), which setup() brings.
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from trainlab.sweeps.search import Search  # Optuna: only for a search (see above)

        assert self.config is not None
        return Search(self.config, self.launcher).run(arguments)
