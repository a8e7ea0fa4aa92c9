"""Where a run writes: storage (local or S3) and the checks on what the output root takes."""
