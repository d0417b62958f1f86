"""Prometheus metrics for GET /metrics: request counts by path and status, latency histograms per model,
batch sizes, queue depth, unwritten log rows, the serving version, and the latest drift score that
`tunesmith monitor` wrote (RUN/drift.json), read at scrape time."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self, state: Callable[[], dict[str, Any]]):
        """`state()` returns {"models": {name: ServedModel}, "queued": {name: n}, "log_pending": n}."""
        disable_created_metrics()  # no *_created series: they double the output and nobody graphs them
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tunesmith_http_requests",
            "HTTP requests by path and status code",
            ["path", "status"],
            registry=self.registry,
        )
        self.http_seconds = Histogram(
            "tunesmith_http_request_seconds",
            "Time from request to the last byte of the response, by path",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference_seconds = Histogram(
            "tunesmith_inference_seconds",
            "Time a model request took, queueing included, by model and endpoint",
            ["model", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_inputs = Histogram(
            "tunesmith_batch_inputs",
            "Texts per forward pass (dynamic batching)",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.registry.register(_StateCollector(state))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector:
    def __init__(self, state: Callable[[], dict[str, Any]]):
        self.state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = self.state()
        info = GaugeMetricFamily(
            "tunesmith_model_info", "Served models (value 1) with their version", labels=["model", "version"]
        )
        queued = GaugeMetricFamily("tunesmith_queue_inputs", "Inputs waiting per model", labels=["model"])
        drift = GaugeMetricFamily(
            "tunesmith_drift_score",
            "Latest drift scores from `tunesmith monitor` (domain classifier ROC-AUC, MMD, PSI, ...)",
            labels=["model", "detector"],
        )
        alert = GaugeMetricFamily(
            "tunesmith_drift_alert", "1 when the latest monitor found drift, else 0", labels=["model"]
        )
        age = GaugeMetricFamily(
            "tunesmith_drift_report_timestamp_seconds", "When the latest monitor ran", labels=["model"]
        )
        for name, served in state["models"].items():
            info.add_metric([name, served.version], 1)
            queued.add_metric([name], state["queued"].get(name, 0))
            report = _drift_report(served.root / "drift.json")
            if report is None:
                continue
            for detector, result in report.get("detectors", {}).items():
                if isinstance(result.get("score"), (int, float)):
                    drift.add_metric([name, detector], float(result["score"]))
            alert.add_metric([name], 1.0 if report.get("drift") else 0.0)
            age.add_metric([name], float(report.get("created", 0)))
        pending = GaugeMetricFamily("tunesmith_log_pending_rows", "Request-log rows not yet written")
        pending.add_metric([], state["log_pending"])
        yield from (info, queued, drift, alert, age, pending)


def _drift_report(path: Any) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
