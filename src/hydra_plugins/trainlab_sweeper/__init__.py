"""trainlab's Hydra sweeper (`hydra/sweeper=optuna`): Optuna >= 5 through its ask-and-tell API,
with pruning, resume, replicates and several objectives. Hydra takes sweepers only from the
`hydra_plugins` namespace package, so the plugin lives here; the search itself is
trainlab/sweeps/search.py."""
