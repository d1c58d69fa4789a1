"""runix runtime: what runs a locked training run (data pipeline, model, trainer)."""
