"""Training data: loading into canonical records, quality checks, append-stable splits, diffs."""
