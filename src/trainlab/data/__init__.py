"""Data: every option a LightningDataModule (tables, images, a user's own) -> splits -> batches."""
