"""Versions of a deployed run: which one serves, promotion and rollback by serving.json, refusals."""

from __future__ import annotations

import json

import pytest

from tunesmith.errors import UserError
from tunesmith.monitoring.retune import decide
from tunesmith.versions import Deployment


def finished(folder):
    (folder / "model").mkdir(parents=True)
    (folder / "config.yaml").write_text("task: classification\n")
    (folder / "model" / "tunesmith.json").write_text("{}")


def test_versions_promote_and_roll_back(tmp_path):
    finished(tmp_path)
    deployment = Deployment(tmp_path)
    assert deployment.versions() == ["v1"] and deployment.current() == "v1"
    assert deployment.next_version() == "v2"
    (tmp_path / "versions" / "v2").mkdir(parents=True)  # unfinished: no model yet
    with pytest.raises(UserError, match="no finished version v2"):
        deployment.serve("v2", "promote")
    assert deployment.next_version() == "v3"  # an abandoned folder's name is never reused
    finished(tmp_path / "versions" / "v3")
    deployment.serve("v3", "promote")
    assert deployment.current() == "v3" and deployment.current_folder() == tmp_path / "versions" / "v3"
    deployment.serve("v1", "rollback")
    state = json.loads((tmp_path / "serving.json").read_text())
    assert state["current"] == "v1"
    assert [(h["from"], h["version"]) for h in state["history"]] == [("v1", "v3"), ("v3", "v1")]
    for bad in ("../x", "v0", "2", "v1/.."):
        with pytest.raises(UserError, match="not a version name"):
            deployment.folder(bad)


def test_a_broken_serving_file_is_a_clear_error(tmp_path):
    finished(tmp_path)
    (tmp_path / "serving.json").write_text("{not json")
    with pytest.raises(UserError, match="serving.json: unreadable"):
        Deployment(tmp_path).current()


def test_promotion_rule():
    better = {"metric": "macro_f1", "candidate": 0.71, "serving": 0.70, "greater_is_better": True}
    worse = {**better, "candidate": 0.65}
    assert decide(better, "if_not_worse", 0.0)[0]
    assert not decide(worse, "if_not_worse", 0.0)[0]
    assert decide(worse, "if_not_worse", 0.06)[0]
    assert not decide(better, "never", 0.0)[0] and decide(worse, "always", 0.0)[0]
    loss = {"metric": "loss", "candidate": 1.2, "serving": 1.0, "greater_is_better": False}
    assert not decide(loss, "if_not_worse", 0.0)[0]
