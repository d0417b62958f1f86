"""Several processes on torch's engine (torchrun, gloo on this CPU): 2 processes take the same optimizer steps
as 1 process accumulating 2 micro-batches, dropout included, with DDP and with FSDP; only the main process
writes; a checkpoint written by 2 processes loads into 1, and one written by 1 resumes in 2. Deselect with
-m 'not distributed'."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import demo_files
from tests.e2e.test_cli import assert_user_error, train_cli, tunesmith

pytestmark = [pytest.mark.slow, pytest.mark.distributed]
SETTINGS = (
    "train.epochs=1",
    "train.keep=tuned",  # the mechanics under test: the fine-tuned weights, whatever they score
    "train.batch_size=8",
    "train.gradient_accumulation=2",
    "train.learning_rate=0.003",
    "evaluation.forgetting=false",
    # 2 processes are compared with 1 to 1e-4: in fp32, as bf16 autocast (precision auto on a CPU with native
    # bf16) rounds each process's share of a batch apart
    "train.precision=fp32",
)
LORA_DROPOUT = ("method.dropout=0.1",)  # classification's default is 0: keep LoRA's own masks under test


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distributed")
    data = demo_files(tmp, train=72, validation=24, test=24)  # 9 micro-batches: the last window has 1
    runs = {}
    for n in (1, 2):
        runs[n] = tmp / f"run-{n}"
        proc = train_cli(runs[n], data, "minilm", "lora", "--nproc", str(n), *SETTINGS, *LORA_DROPOUT)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[f"{n}-stdout"] = proc.stdout
    runs["data"] = data
    return runs


def assert_same_weights(one: dict[str, torch.Tensor], two: dict[str, torch.Tensor]) -> None:
    """Equal to float tolerance. Sums run in another order across processes (gradients, clipping norms), and
    Adam's step divides by the root of the second moment, which lifts the last bits of a near-zero gradient
    to a few 1e-5 in a few elements (one element by 1.01e-4 on one of our CPUs; an Adam step moves a weight by
    about the learning rate, 1e-3 to 3e-3 in these runs); over all elements the weights agree to well under
    1e-6 on average (a small tensor, a head's bias, can average more on its own: 2.4e-6 on that CPU)."""
    assert one.keys() == two.keys() and len(one) > 10
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=5e-4)
    apart = sum(int(((one[k] - two[k]).abs() > 1e-4).sum()) for k in one)
    assert apart <= sum(t.numel() for t in one.values()) // 10_000  # at most 1 element in 10,000 past 1e-4
    total = sum(t.numel() for t in one.values())
    mean = sum((one[k] - two[k]).abs().sum().item() for k in one) / total
    assert mean < 1e-6, f"the weights differ by {mean:.2e} on average"


def test_two_processes_reach_the_weights_of_one_process_accumulating_two(pair):
    one = load_file(pair[1] / "model" / "adapter_model.safetensors")
    two = load_file(pair[2] / "model" / "adapter_model.safetensors")
    assert_same_weights(one, two)
    assert max(one[k].abs().max().item() for k in one if "lora_B" in k) > 1e-3  # it trained


def test_only_the_main_process_writes_and_prints(pair):
    lines = [json.loads(x) for x in (pair[2] / "metrics.jsonl").read_text().splitlines()]
    reference = [json.loads(x) for x in (pair[1] / "metrics.jsonl").read_text().splitlines()]
    assert [(r["event"], r["step"]) for r in lines] == [(r["event"], r["step"]) for r in reference]
    assert [r["loss"] for r in lines] == pytest.approx([r["loss"] for r in reference], abs=1e-5)
    summary = json.loads((pair[2] / "run.json").read_text())
    assert summary["processes"] == 2 and summary["optimizer_steps"] == 5
    assert pair["2-stdout"].count("run folder:") == 1 and pair["2-stdout"].count("data check:") == 1


def test_a_checkpoint_of_two_processes_loads_into_one(pair):
    from tunesmith.inference import load_run
    from tunesmith.training.checkpoint import latest_checkpoint, load_checkpoint
    from tunesmith.training.loop import build_optimizer, build_scheduler

    trained = load_run(pair[2])
    for name, p in trained.model.named_parameters():
        p.requires_grad_("lora_" in name or "modules_to_save" in name)
    optimizer = build_optimizer(trained.model, trained.config.train)
    scheduler = build_scheduler(optimizer, trained.config.train, 5)
    state = load_checkpoint(latest_checkpoint(pair[2] / "checkpoints"), trained.model, optimizer, scheduler)
    assert state.step == 5 and state.finished
    assert optimizer.state_dict()["state"]  # Adam moments came back for every trainable tensor


def test_an_accumulation_the_processes_cannot_share_is_refused(pair, tmp_path):
    proc = train_cli(tmp_path / "r", pair["data"], "minilm", "lora", "--nproc", "2", "train.epochs=1")
    assert_user_error(proc, "with 2 processes, train.gradient_accumulation must be a multiple of 2")
    assert not (tmp_path / "r").exists()


MORE = (*SETTINGS[1:], "train.epochs=2", "train.eval_every_steps=2", "train.early_stopping_patience=null")


@pytest.fixture(scope="module")
def straight(pair, tmp_path_factory):
    """An uninterrupted single-process run of 2 epochs, validated (and checkpointed) every 2 steps."""
    run = tmp_path_factory.mktemp("straight") / "run"
    assert train_cli(run, pair["data"], "minilm", "lora", *MORE).returncode == 0
    return run


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_a_run_crashed_in_one_process_resumes_in_two_to_the_same_weights(pair, straight, strategy, tmp_path):
    """Checkpoints hold whole tensors by name and the global position in the epoch's micro-batches, so the
    process count may change between a crash and the resume; under FSDP they load into shards."""
    import io

    from rich.console import Console

    from tunesmith.config import build_config
    from tunesmith.recipes.finetune import finetune

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
        "distributed": {"strategy": strategy},  # one process ignores it; the resume in two uses it
        "output_dir": str(crashed),
    }
    with pytest.raises(Crash):
        finetune(build_config(tree, list(MORE)), Console(file=io.StringIO()), on_step=[crash])
    proc = train_cli_resume(crashed)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from step-0000004" in proc.stdout

    expected, resumed = final_checkpoint(straight), final_checkpoint(crashed)
    assert expected.keys() == resumed.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=1e-5)


def final_checkpoint(run):
    pointer = json.loads((run / "checkpoints" / "latest.json").read_text())["checkpoint"]
    return load_file(run / "checkpoints" / pointer / "trainable.safetensors")


def train_cli_resume(run):
    return tunesmith("train", "--resume", "--out", run, "--nproc", "2")


@pytest.fixture(scope="module")
def fsdp(pair, tmp_path_factory):
    """LoRA and full fine-tuning, each in 1 process and in 2 FSDP processes (the LoRA one in 1 process is the
    pair's: one process ignores the strategy). The LoRA run is 2 "machines" of 1 process each, joined by
    torchrun's multi-node flags on this host, as two real machines would be. In the last window of 1
    micro-batch, one process runs a zero-weight pass to match the other's."""
    tmp = tmp_path_factory.mktemp("fsdp")
    data = pair["data"]
    runs = {"data": data, ("lora", 1): pair[1], ("lora", 1, "stdout"): pair["1-stdout"]}
    for method, lr, n in (("lora", "0.003", 2), ("full", "0.0001", 1), ("full", "0.0001", 2)):
        run = runs[method, n] = tmp / f"{method}-{n}"
        more = (*SETTINGS[:-2], f"train.learning_rate={lr}", SETTINGS[-1], "distributed.strategy=fsdp")
        if method == "lora":
            proc = two_machines(run, data, method, (*more, *LORA_DROPOUT))
        else:
            proc = train_cli(run, data, "minilm", method, "--nproc", str(n), *more)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[method, n, "stdout"] = proc.stdout
    return runs


def two_machines(run, data, method, more):
    """Node 1 in the background, node 0 in the foreground: `--nnodes 2 --node-rank R --master-addr HOST`."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nodes = ["--nproc", "1", "--nnodes", "2", "--master-addr", "127.0.0.1", "--master-port", str(port)]
    files = ["--data", data["train"], "--validation", data["validation"], "--test", data["test"]]
    command = ["train", "--model", "minilm", *files, "--method", method, "--out", run, *nodes, *more]
    second = subprocess.Popen(
        [sys.executable, "-m", "tunesmith", *map(str, command), "--node-rank", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = tunesmith(*command, "--node-rank", "0")
    _, errors = second.communicate(timeout=120)
    assert second.returncode == 0, errors[-3000:]
    return first


@pytest.mark.parametrize(("method", "weights"), [("lora", "adapter_model"), ("full", "model")])
def test_fsdp_in_two_processes_reaches_the_weights_of_one(fsdp, method, weights):
    one = load_file(fsdp[method, 1] / "model" / f"{weights}.safetensors")
    two = load_file(fsdp[method, 2] / "model" / f"{weights}.safetensors")
    assert_same_weights(one, two)
    summary = json.loads((fsdp[method, 2] / "run.json").read_text())
    assert summary["processes"] == 2 and summary["optimizer_steps"] == 5
    assert "with fsdp over 2 processes: each holds at least" in fsdp[method, 2, "stdout"]
    assert fsdp[method, 2, "stdout"].count("run folder:") == 1


def test_a_whole_model_trained_with_fsdp_predicts_in_one_process_as_the_single_process_one(fsdp):
    import csv

    from tunesmith.inference import load_run
    from tunesmith.recipes.predict import predict_texts

    with fsdp["data"]["test"].open(newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)][:6]
    one, two = (predict_texts(load_run(fsdp["full", n]), texts) for n in (1, 2))
    for a, b in zip(one, two, strict=True):
        assert [label for label, _ in a] == [label for label, _ in b]
        assert [p for _, p in a] == pytest.approx([p for _, p in b], abs=1e-4)


def test_a_checkpoint_written_by_fsdp_loads_into_one_process(fsdp):
    """The checkpoint holds whole tensors (gathered from the shards) and Adam's moments by parameter name."""
    from tunesmith.inference import load_run
    from tunesmith.training.checkpoint import latest_checkpoint, load_checkpoint
    from tunesmith.training.loop import build_optimizer, build_scheduler

    folder = latest_checkpoint(fsdp["lora", 2] / "checkpoints")
    trained = load_run(fsdp["lora", 2])
    trainable = dict(trained.model.named_parameters())
    for name, p in trainable.items():
        p.requires_grad_("lora_" in name or "modules_to_save" in name)
    optimizer = build_optimizer(trained.model, trained.config.train)
    scheduler = build_scheduler(optimizer, trained.config.train, 5)
    state = load_checkpoint(folder, trained.model, optimizer, scheduler)
    assert state.step == 5 and state.finished
    saved = load_file(folder / "trainable.safetensors")
    for name, tensor in saved.items():
        assert torch.equal(trainable[name].detach(), tensor)
        moments = optimizer.state[trainable[name]]
        assert moments["exp_avg"].shape == tensor.shape and moments["exp_avg_sq"].abs().sum() > 0


def test_fsdp_with_the_default_keep_validates_the_start_and_restarts_as_one_process(fsdp, tmp_path):
    """train.keep=better: step 0 validates the start model (the probe's head) through FSDP's root, then the
    fresh head is loaded into the shards. Both validations, and the model the run keeps, match one process."""
    settings = [s for s in SETTINGS if not s.startswith("train.keep")]
    logs, kept = {}, {}
    for n in (1, 2):
        run = tmp_path / f"run-{n}"
        proc = train_cli(
            run, fsdp["data"], "minilm", "lora", "--nproc", str(n), *settings, "distributed.strategy=fsdp"
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = (run / "metrics.jsonl").read_text().splitlines()
        logs[n] = [e for e in map(json.loads, lines) if e["event"] == "validation"]
        kept[n] = load_file(run / "model" / "adapter_model.safetensors")
    assert [e["step"] for e in logs[2]] == [e["step"] for e in logs[1]] == [0, 5]
    for one, two in zip(logs[1], logs[2], strict=True):
        assert two["loss"] == pytest.approx(one["loss"], abs=1e-4)
        assert (two["macro_f1"], two["best"]) == (one["macro_f1"], one["best"])
    assert_same_weights(kept[1], kept[2])


def test_fsdp_refuses_a_method_it_cannot_shard_before_starting(tmp_path, fsdp):
    proc = train_cli(
        tmp_path / "r",
        fsdp["data"],
        "minilm",
        "adalora",
        "--nproc",
        "2",
        *SETTINGS,
        "distributed.strategy=fsdp",
    )
    assert_user_error(proc, "method adalora cannot train with distributed.strategy=fsdp")
    assert not (tmp_path / "r").exists()


def interruptible(run, data, model, *more):
    """`tunesmith train --nproc 2` as a terminal starts it: its own process group, as a shell's job is."""
    import os
    import subprocess
    import sys

    files = ["--data", data["train"], "--validation", data["validation"], "--test", data["test"]]
    command = ["train", "--model", model, *files, "--method", "lora", "--out", run, "--nproc", "2", *more]
    return subprocess.Popen(
        [sys.executable, "-m", "tunesmith", *map(str, command)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"},
        start_new_session=True,
    )


def wait_for_step(run, step: int, process) -> None:
    import time

    log = run / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if log.is_file() and any(json.loads(x)["step"] >= step for x in log.read_text().splitlines() if x):
            return
        time.sleep(0.02)
    raise AssertionError(f"no step {step} logged: {process.communicate()[1][-3000:]}")


TINY = (
    "model.max_length=48",
    "method.rank=4",
    "train.log_every_steps=1",
    "train.estimate=never",
    *SETTINGS[1:],
    "train.epochs=30",  # 5 optimizer steps an epoch: 150 steps, about 10 s on 2 cores
    "train.early_stopping_patience=null",  # all 150: early stopping would end it at step 15, before a signal lands
)


@pytest.fixture(scope="module")
def tiny_straight(tiny_bert_dir, tmp_path_factory):
    """An uninterrupted 2-process run of a tiny BERT, 150 optimizer steps; returns its folder and data."""
    tmp = tmp_path_factory.mktemp("tiny-ddp")
    data = demo_files(tmp, train=72, validation=24, test=24)
    process = interruptible(tmp / "straight", data, tiny_bert_dir, *TINY)
    _, errors = process.communicate(timeout=600)
    assert process.returncode == 0, errors[-3000:]
    return tmp / "straight", data


@pytest.mark.parametrize(
    ("signum", "to"), [(15, "the launcher"), (2, "the terminal's process group")], ids=["sigterm", "ctrl-c"]
)
def test_a_signal_to_a_two_process_run_checkpoints_once_and_resume_reaches_the_same_weights(
    tiny_straight, tiny_bert_dir, tmp_path, signum, to
):
    """SIGTERM to the launching process (a scheduler's kill PID) or Ctrl-C (SIGINT to the terminal's process
    group, which the workers are not in) reaches both workers, which finish the optimizer step, agree on it,
    checkpoint it and stop; one message, the shell's exit code, nothing from torchrun; --resume in 2 processes
    ends with the uninterrupted run's weights."""
    import os

    straight, data = tiny_straight
    run = tmp_path / "run"
    process = interruptible(run, data, tiny_bert_dir, *TINY)
    wait_for_step(run, 12, process)  # in the third epoch
    if to == "the launcher":
        process.send_signal(signum)
    else:
        os.killpg(process.pid, signum)
    _, errors = process.communicate(timeout=300)
    assert process.returncode == 128 + signum, errors[-3000:]
    lines = errors.strip().splitlines()
    assert lines[-1].startswith("tunesmith: interrupted at step ")
    assert lines[-1].endswith(f"continue with: tunesmith train --out {run} --resume")
    assert (
        errors.count("stopping after this optimizer step") == 1 and errors.count("interrupted at step") == 1
    )
    assert (
        "Traceback" not in errors and "torch.distributed" not in errors and "ChildFailedError" not in errors
    )
    stopped = int(lines[-1].split()[4])
    assert 12 <= stopped < 150
    state = json.loads((latest_checkpoint_of(run) / "state.json").read_text())["state"]
    assert state["step"] == stopped

    proc = train_cli_resume(run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected, resumed = final_checkpoint(straight), final_checkpoint(run)
    assert expected.keys() == resumed.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=0)


def latest_checkpoint_of(run):
    from tunesmith.training.checkpoint import latest_checkpoint

    return latest_checkpoint(run / "checkpoints")


DPO_SETTINGS = (
    "--task",
    "preference",
    "model.max_length=192",
    "method.rank=4",
    "method.dropout=0",
    "train.epochs=2",  # the second epoch reads the stored reference
    "train.batch_size=4",
    "train.gradient_accumulation=2",
    "train.learning_rate=0.001",
    "train.keep=tuned",
    "train.estimate=never",
    "task.eval_generate_examples=0",
    "evaluation.forgetting=false",
)


@pytest.fixture(scope="module")
def dpo_one(tmp_path_factory):
    """DPO data and a 1-process run accumulating 2 micro-batches (one process ignores the strategy)."""
    from tests.recipes.test_preference import pairs, write

    tmp = tmp_path_factory.mktemp("dpo")
    data = {
        split: write(tmp / f"{split}.jsonl", pairs(split, n))
        for split, n in (("train", 16), ("validation", 2), ("test", 4))
    }
    proc = train_cli(tmp / "run-1", data, "smollm2-135m-instruct", "lora", "--nproc", "1", *DPO_SETTINGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return data, load_file(tmp / "run-1" / "model" / "adapter_model.safetensors")


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_dpo_in_two_processes_reaches_the_weights_of_one_accumulating_two(dpo_one, tmp_path, strategy):
    """Preference tuning through the same engine: each pair packed with its prompt once, the reference from
    the adapter switched off (then stored), 2 processes equal to 1 accumulating 2 micro-batches."""
    data, one = dpo_one
    run = tmp_path / "run-2"
    more = (*DPO_SETTINGS, f"distributed.strategy={strategy}")
    proc = train_cli(run, data, "smollm2-135m-instruct", "lora", "--nproc", "2", *more)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_weights(one, load_file(run / "model" / "adapter_model.safetensors"))
    report = json.loads((run / "eval.json").read_text())
    assert report["tuned"]["reward_accuracy"] > report["base"]["reward_accuracy"]
