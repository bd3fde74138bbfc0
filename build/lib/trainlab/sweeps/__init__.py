"""Hydra multirun sweeps: one MLflow parent run, one child run per job."""
