"""Metrics, the base-model baseline, and base-vs-tuned reports."""
