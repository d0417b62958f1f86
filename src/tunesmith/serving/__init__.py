"""Serving: an HTTP API over trained runs (OpenAI-compatible chat, classification), with dynamic batching,
API keys, a request log, Prometheus metrics, and versions swapped without a restart."""
