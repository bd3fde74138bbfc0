"""Tracking: a recorder process owns the MLflow client; the trainer hands rows over to it."""
