"""Data: sources (seed, synthetic, csv, diabetes) -> a split, standardized Dataset -> batches."""
