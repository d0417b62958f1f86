"""Readers (CSV, JSONL, Parquet) that locate every problem by file and line, and splits."""
