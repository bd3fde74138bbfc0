"""The trainer's side of tracking (no MLflow): it hands rows over to a recorder process
(trainlab/recorder/), which owns the MLflow client; messages.py is all they say to each other."""
