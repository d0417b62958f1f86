"""The planner on the packaged MiniLM and real data: each method measured in a fresh process."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from tunesmith.config import build_config
from tunesmith.errors import ConfigError
from tunesmith.recipes.finetune import finetune
from tunesmith.recipes.plan import Plan, plan, recommend

pytestmark = pytest.mark.slow


def config(data, out=None, method="lora", **train):
    return build_config(
        {
            "model": {"name": "minilm", "max_length": 48},
            "data": {k: str(v) for k, v in data.items()},
            "method": {"name": method},
            "train": {"epochs": 1, "batch_size": 8, **train},
            "output_dir": str(out) if out else None,
        }
    )


@pytest.fixture(scope="module")
def planned(tmp_path_factory) -> Plan:
    from tests.conftest import demo_files

    tmp = tmp_path_factory.mktemp("plan")
    data = demo_files(tmp, train=60, validation=30, test=30)
    return plan(config(data), ["full", "lora", "prompt", "prefix"], None, lambda _: None)


def test_each_method_is_measured_part_by_part(planned):
    by = {e.method: e for e in planned.estimates}
    assert set(by) == {"full", "lora", "prompt"}
    assert "encoder models take no past keys" in planned.skipped["prefix"]
    # MiniLM without its first-token pooler (the head reads the mean of the last hidden states) + the head
    assert by["full"].trainable_parameters == by["full"].total_parameters == 22_566_531
    assert by["prompt"].trainable_parameters < by["lora"].trainable_parameters < 1_000_000
    for e in by.values():
        assert e.gradients_bytes == 4 * e.trainable_parameters  # float32 gradients
        assert e.optimizer_bytes == 2 * e.gradients_bytes  # AdamW's two moments
        assert 4 * e.total_parameters <= e.weights_bytes <= 4.1 * e.total_parameters
        assert e.activations_bytes > 0 and e.evaluation_bytes >= e.weights_bytes
        assert 100 * 2**20 < e.runtime_bytes < 2 * 2**30  # a Python process with torch and transformers
        assert e.steps_per_epoch == 8 and e.epoch_seconds > 0
    assert by["full"].peak_bytes > by["lora"].peak_bytes
    assert planned.recommended == "lora"


def test_the_recommendation_is_the_preferred_method_that_fits(planned):
    by = {e.method: e for e in planned.estimates}
    between = Plan(planned.estimates, budget=(by["lora"].peak_bytes + by["full"].peak_bytes) // 2)
    recommend(between)
    assert between.recommended == "lora" and not between.fits(by["full"])
    only_prompt = Plan(
        [by["full"], by["prompt"]], budget=(by["prompt"].peak_bytes + by["full"].peak_bytes) // 2
    )
    recommend(only_prompt)
    assert only_prompt.recommended == "prompt"
    none = Plan(planned.estimates, budget=2**20)
    recommend(none)
    assert none.recommended is None and "none fits in 1 MiB" in none.reason


def test_train_refuses_a_run_over_its_memory_budget_and_names_a_cheaper_method(planned, small_data, tmp_path):
    by = {e.method: e for e in planned.estimates}
    budget = (by["lora"].peak_bytes + by["full"].peak_bytes) // 2  # full does not fit, lora does
    out = tmp_path / "run"
    with pytest.raises(
        ConfigError, match=r"this full run needs ≈ .* over train.memory_budget=\d+B; method lora fits"
    ):
        finetune(config(small_data, out, "full", memory_budget=f"{budget}B"), Console(file=io.StringIO()))
    assert not out.exists()
