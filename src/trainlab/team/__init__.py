"""The team service: the MLflow tracking server on PostgreSQL, its logins and users, and the
S3-compatible object store for its artifacts."""
