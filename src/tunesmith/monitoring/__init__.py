"""Keeping a served model good: versions of a run, drift detection on logged traffic, re-tuning from
corrections."""
