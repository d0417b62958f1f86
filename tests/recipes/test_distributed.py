"""Several processes on torch's engine (torchrun, gloo on this CPU): 2 processes take the same optimizer steps
as 1 process accumulating 2 micro-batches, dropout included; only the main process writes; a checkpoint
written by 2 processes loads into 1. Deselect with -m 'not distributed'."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import demo_files
from tests.e2e.test_cli import assert_user_error, train_cli

pytestmark = [pytest.mark.slow, pytest.mark.distributed]
SETTINGS = (
    "train.epochs=1",
    "train.batch_size=8",
    "train.gradient_accumulation=2",
    "train.learning_rate=0.003",
    "evaluation.forgetting=false",
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distributed")
    data = demo_files(tmp, train=64, validation=24, test=24)
    runs = {}
    for n in (1, 2):
        runs[n] = tmp / f"run-{n}"
        proc = train_cli(runs[n], data, "minilm", "lora", "--nproc", str(n), *SETTINGS)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[f"{n}-stdout"] = proc.stdout
    runs["data"] = data
    return runs


def test_two_processes_reach_the_weights_of_one_process_accumulating_two(pair):
    one = load_file(pair[1] / "model" / "adapter_model.safetensors")
    two = load_file(pair[2] / "model" / "adapter_model.safetensors")
    assert one.keys() == two.keys() and len(one) > 10
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=1e-5)
    moved = max((one[k] - two[k]).abs().max().item() for k in one if "lora_B" in k)
    assert moved < 1e-5 and max(one[k].abs().max().item() for k in one if "lora_B" in k) > 1e-3


def test_only_the_main_process_writes_and_prints(pair):
    lines = [json.loads(x) for x in (pair[2] / "metrics.jsonl").read_text().splitlines()]
    reference = [json.loads(x) for x in (pair[1] / "metrics.jsonl").read_text().splitlines()]
    assert [(r["event"], r["step"]) for r in lines] == [(r["event"], r["step"]) for r in reference]
    assert [r["loss"] for r in lines] == pytest.approx([r["loss"] for r in reference], abs=1e-5)
    summary = json.loads((pair[2] / "run.json").read_text())
    assert summary["processes"] == 2 and summary["optimizer_steps"] == 4
    assert pair["2-stdout"].count("run folder:") == 1 and pair["2-stdout"].count("data check:") == 1


def test_a_checkpoint_of_two_processes_loads_into_one(pair):
    from tunesmith.inference import load_run
    from tunesmith.training.checkpoint import latest_checkpoint, load_checkpoint
    from tunesmith.training.loop import build_optimizer, build_scheduler

    trained = load_run(pair[2])
    for name, p in trained.model.named_parameters():
        p.requires_grad_("lora_" in name or "modules_to_save" in name)
    optimizer = build_optimizer(trained.model, trained.config.train)
    scheduler = build_scheduler(optimizer, trained.config.train, 4)
    state = load_checkpoint(latest_checkpoint(pair[2] / "checkpoints"), trained.model, optimizer, scheduler)
    assert state.step == 4 and state.finished
    assert optimizer.state_dict()["state"]  # Adam moments came back for every trainable tensor


def test_an_accumulation_the_processes_cannot_share_is_refused(pair, tmp_path):
    proc = train_cli(tmp_path / "r", pair["data"], "minilm", "lora", "--nproc", "2", "train.epochs=1")
    assert_user_error(proc, "with 2 processes, train.gradient_accumulation must be a multiple of 2")
    assert not (tmp_path / "r").exists()


def test_a_run_crashed_in_one_process_resumes_in_two_to_the_same_weights(pair, tmp_path):
    """Checkpoints hold the unwrapped weights and the global position in the epoch's micro-batches, so the
    process count may change between a crash and the resume."""
    import io

    from rich.console import Console

    from tunesmith.config import build_config
    from tunesmith.recipes.finetune import finetune

    more = (*SETTINGS[1:], "train.epochs=2", "train.eval_every_steps=2", "train.early_stopping_patience=null")
    straight = tmp_path / "straight"
    assert train_cli(straight, pair["data"], "minilm", "lora", *more).returncode == 0

    class Crash(Exception):
        pass

    def crash(state, loss):
        if state.step == 5:  # after the checkpoint of step 4, in the second epoch
            raise Crash()

    crashed = tmp_path / "crashed"
    tree = {
        "model": {"name": "minilm"},
        "data": {k: str(v) for k, v in pair["data"].items()},
        "method": {"name": "lora"},
        "output_dir": str(crashed),
    }
    with pytest.raises(Crash):
        finetune(build_config(tree, list(more)), Console(file=io.StringIO()), on_step=[crash])
    proc = train_cli_resume(crashed)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from step-0000004" in proc.stdout

    def final(run):
        pointer = json.loads((run / "checkpoints" / "latest.json").read_text())["checkpoint"]
        return load_file(run / "checkpoints" / pointer / "trainable.safetensors")

    expected, resumed = final(straight), final(crashed)
    assert expected.keys() == resumed.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=1e-5)


def train_cli_resume(run):
    from tests.e2e.test_cli import tunesmith

    return tunesmith("train", "--resume", "--out", run, "--nproc", "2")
