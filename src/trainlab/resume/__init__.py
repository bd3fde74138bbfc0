"""Resume, rerun and fork planned in one place (the trainer's side, no MLflow): which run, which
checkpoint, which config; and how a run ends when its recording broke."""
