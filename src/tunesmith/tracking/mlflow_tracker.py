"""MLflow: one MLflow run per tunesmith run, in `train.mlflow_uri` (a team's tracking server, a database, a
folder), by default a SQLite file next to the run folders: `mlflow ui --backend-store-uri
sqlite:///runs/mlflow.db`.

Params: the resolved config, dotted. Metrics by step: train/, validation/; at the end test/ (base, tuned, the
gain and its interval), forgetting/, plan/ (estimated vs measured). Texts (data check, plan, base vs tuned) and
the run's files (config.yaml, run.json, eval.json, data_check.json, report.html, model/) as artifacts. A
retune's promotion or a rollback registers each version as a model version of the registered model
"tunesmith-RUN" (tagged with its tunesmith version) and points the alias "serving" at the one that serves.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from pathlib import Path
from typing import Any

from tunesmith.sections import default_mlflow_uri
from tunesmith.tracking import TRACKERS
from tunesmith.tracking.base import Tracker

STATUS = {"finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
BATCH = 100
"""Params per request (MLflow takes up to 100 params in one log_batch)."""
METRICS_BATCH = 1000
"""Metrics per request (MLflow's limit for one log_batch)."""
RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
"""A tracking server that does not answer is given up on within about half a minute (MLflow's own
defaults retry for minutes); the user's own values of these variables win."""
ALIAS = "serving"


def quiet_mlflow() -> None:
    """MLflow's own INFO lines (creating a database's tables) off the run's output; a server that does not
    answer given up on in seconds (RETRIES). The user's MLFLOW_LOGGING_LEVEL and retry settings win."""
    for key, value in RETRIES.items():
        os.environ.setdefault(key, value)
    if "MLFLOW_LOGGING_LEVEL" not in os.environ:
        logging.getLogger("mlflow").setLevel(logging.WARNING)
    # each retry of a request to a server that is down would print a line: tunesmith says it once instead
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


def registered_name(root: Path) -> str:
    return f"tunesmith-{Path(root).resolve().name}"


@TRACKERS.register("mlflow")
class MlflowTracker(Tracker):
    name = "mlflow"
    needs = "mlflow"

    @classmethod
    def available(cls) -> bool:
        return importlib.util.find_spec("mlflow") is not None

    def start(self, resume: bool) -> dict[str, Any]:
        from mlflow.tracking import MlflowClient

        quiet_mlflow()
        uri = self.saved.get("uri") or self.cfg.mlflow_uri or default_mlflow_uri(self.run_root)
        self.client = MlflowClient(uri)
        if resume and self.saved.get("run_id"):
            self.run_id = self.saved["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return dict(self.saved)
        experiment = self._experiment(uri)
        run = self.client.create_run(
            experiment,
            run_name=self.run_root.name,
            tags={"tunesmith.run_folder": str(self.run_root.resolve())},
        )
        self.run_id = run.info.run_id
        return {"uri": uri, "experiment_id": experiment, "run_id": self.run_id}

    def _experiment(self, uri: str) -> str:
        """The experiment's id, created on first use; a local database keeps its files beside it (MLflow's
        default would be ./mlruns wherever the command runs)."""
        name = self.cfg.mlflow_experiment
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = None
        if uri.startswith("sqlite:///"):
            location = Path(uri.removeprefix("sqlite:///")).parent.joinpath("mlartifacts").as_uri()
        return self.client.create_experiment(name, artifact_location=location)

    def params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + BATCH])

    def metrics(self, values: dict[str, float], step: int) -> None:
        self.metrics_many([(values, step)])

    def metrics_many(self, batches: list[tuple[dict[str, float], int]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for values, step in batches for k, v in values.items()]
        for start in range(0, len(items), METRICS_BATCH):
            self.client.log_batch(self.run_id, metrics=items[start : start + METRICS_BATCH])

    def text(self, name: str, markdown: str) -> None:
        self.client.log_text(self.run_id, markdown, f"{name.replace(' ', '_')}.md")

    def artifacts(self, paths: list[Path]) -> None:
        for path in paths:
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), path.name)
            elif path.is_file():
                self.client.log_artifact(self.run_id, str(path))

    def finish(self, status: str) -> None:
        self.client.set_terminated(self.run_id, STATUS[status])

    @classmethod
    def record_serving(cls, root: Path, versions: dict[str, dict[str, Any]], state: dict[str, Any]) -> str:
        """Every tunesmith version with an MLflow run becomes a model version (once), and the alias "serving"
        moves to the one serving now; the change is a tag on the registered model."""
        from mlflow.tracking import MlflowClient

        tracked = {v: s for v, s in versions.items() if s.get("run_id")}
        if not tracked:
            return ""
        quiet_mlflow()
        client = MlflowClient(tracked[min(tracked, key=lambda v: int(v[1:]))]["uri"])
        name = registered_name(root)
        if client.search_registered_models(f"name = '{name}'") == []:
            client.create_registered_model(name, tags={"tunesmith.run_folder": str(Path(root).resolve())})
        known = {
            mv.tags.get("tunesmith.version"): mv.version
            for mv in client.search_model_versions(f"name = '{name}'")
        }
        for version, saved in sorted(tracked.items(), key=lambda item: int(item[0][1:])):
            if version not in known:
                made = client.create_model_version(
                    name,
                    f"runs:/{saved['run_id']}/model",
                    run_id=saved["run_id"],
                    tags={"tunesmith.version": version},
                )
                known[version] = made.version
        current, change = state["current"], state["history"][-1]
        if current not in known:
            return f"MLflow: {current} has no MLflow run; alias {ALIAS!r} left where it was"
        client.set_registered_model_alias(name, ALIAS, known[current])
        said = f"now serving {current} (was {change['from']}): {change['reason']}"
        client.set_registered_model_tag(name, f"tunesmith.serving.{len(state['history'])}", said)
        return f"MLflow: {name} version {known[current]} ({current}) has the alias {ALIAS!r}"
