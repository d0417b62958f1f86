"""Hyperparameter search: real trials on the packaged MiniLM, a pruned trial, a resumed study, best.yaml."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from tests.conftest import demo_files
from tunesmith.config import build_config, load_config
from tunesmith.errors import ConfigError
from tunesmith.recipes.tune import tune


def search_config(tmp, **search):
    data = {split: str(path) for split, path in demo_files(tmp, train=64, validation=30).items()}
    tree = {
        # a random head: the trial at lr 1e-7 barely learns and trails (from the probe it would start level)
        "task": {"name": "classification", "head_init": "random"},
        "model": {"name": "minilm", "max_length": 48},
        "data": {**data, "test_fraction": 0.0},
        "method": {"name": "lora", "rank": 4},
        "train": {"epochs": 2, "batch_size": 16, "early_stopping_patience": None},
        "output_dir": str(tmp / "run"),
        "search": {
            "metric": "loss",
            "space": {"train.learning_rate": {"choices": [3e-3, 1e-7]}},
            "startup_trials": 1,
            **search,
        },
    }
    return build_config(tree)


def test_search_prunes_a_trailing_trial_resumes_and_writes_the_best_config(tmp_path):
    out = io.StringIO()
    config = search_config(
        tmp_path,
        trials=2,
        enqueue=[{"train.learning_rate": 3e-3}, {"train.learning_rate": 1e-7}],
    )
    result = tune(config, Console(file=out, width=200))
    states = [t["state"] for t in result.trials]
    assert states == ["complete", "pruned"], out.getvalue()
    good, bad = result.trials
    assert list(good["reports"]) == ["1", "2"]  # the validation loss after each epoch
    assert list(bad["reports"]) == ["1"] and bad["reports"]["1"] > good["reports"]["1"]
    assert (tmp_path / "run-search" / "trial-000" / "run.json").is_file()
    assert not (tmp_path / "run-search" / "trial-000" / "eval.json").exists()  # no test set in a search
    first_run = (tmp_path / "run-search" / "trial-000" / "run.json").stat().st_mtime_ns

    best = load_config(result.best_config)
    assert best.train.learning_rate == 3e-3 and best.train.metric == "loss"
    assert str(best.output_dir) == str(tmp_path / "run")  # ready for `tunesmith train`

    resumed = tune(search_config(tmp_path, trials=3), Console(file=io.StringIO()))
    assert [t["number"] for t in resumed.trials] == [0, 1, 2]  # one more trial, the first two kept
    assert resumed.trials[:2] == result.trials
    assert (tmp_path / "run-search" / "trial-000" / "run.json").stat().st_mtime_ns == first_run
    saved = json.loads((tmp_path / "run-search" / "trials.json").read_text())
    assert saved["metric"] == "loss" and len(saved["trials"]) == 3


def test_a_bad_space_is_refused_before_any_trial(tmp_path):
    with pytest.raises(ConfigError, match="search.space is empty"):
        tune(search_config(tmp_path, space={}), Console(file=io.StringIO()))
    with pytest.raises(ConfigError, match=r"search.space.train.epochs = 0"):
        tune(
            search_config(tmp_path, space={"train.epochs": {"low": 0, "high": 2}}),
            Console(file=io.StringIO()),
        )
    with pytest.raises(ConfigError, match="search one method"):
        tune(
            search_config(tmp_path, space={"method.name": {"choices": ["lora", "full"]}}),
            Console(file=io.StringIO()),
        )
    assert not (tmp_path / "run-search").exists()


def test_the_shipped_search_config_is_valid(tmp_path):
    from tests.conftest import ROOT
    from tunesmith.recipes.tune import check_space

    config = load_config(ROOT / "configs" / "demo-search.yaml")
    assert set(config.search.space) == {"train.learning_rate", "method.rank", "method.dropout"}
    check_space(config, config.model_dump(mode="json"), tmp_path / "check")
