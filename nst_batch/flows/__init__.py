"""Prefect flows: they compose tasks (and keep the run's book: see stylize_batch)."""
