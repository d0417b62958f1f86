"""Chaos: `tunesmith train` as a real process, killed at random moments (SIGKILL: nothing runs after it;
SIGTERM: the graceful stop) and resumed each time, must end with the weights of a run never killed, and the
run folder must be readable after every kill. A write the file system refuses stops the run with one line
and exit 1, and keeps the previous checkpoint.

The by-hand sweep (20 SIGKILL points, about 5 minutes on 2 cores):

    TUNESMITH_CHAOS_POINTS=20 .venv/bin/python -m pytest -q tests/chaos -k sigkill
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.e2e.test_cli import tunesmith
from tunesmith.training.checkpoint import latest_checkpoint

pytestmark = pytest.mark.slow

POINTS = int(os.environ.get("TUNESMITH_CHAOS_POINTS", "6"))
"""Kills per signal in `make test` (each kill costs a restart of about 10 s); the by-hand sweep takes more."""


def write_config(folder: Path, data: dict[str, Path], model: Path) -> Path:
    tree = {
        "model": {"name": str(model), "max_length": 48},
        "data": {k: str(v) for k, v in data.items()},
        "method": {"name": "lora", "rank": 4},
        "train": {
            "epochs": 5,
            "batch_size": 8,
            "learning_rate": 1e-3,
            "early_stopping_patience": None,
            "keep": "tuned",
            "checkpoint_every_minutes": 0.01,  # mid-epoch checkpoints too, about every step
            "estimate": "never",
        },
        "evaluation": {"forgetting": False, "bootstrap_resamples": 100},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def train(config: Path, out: Path, resume: bool, **kw) -> subprocess.Popen:
    args = ["--out", str(out), "--resume"] if resume else ["--config", str(config), "--out", str(out)]
    if not resume and out.exists():
        args.append("--overwrite")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    journal = out.parent / f"{out.name}.stdout"  # every attempt's output, for a failure's message
    with journal.open("a") as handle:
        handle.write(f"\n=== {' '.join(args)}\n")
    return subprocess.Popen(
        [sys.executable, "-m", "tunesmith", "train", *args],
        stdout=journal.open("a"),
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kw,
    )


def assert_readable(out: Path) -> None:
    """What a kill may leave: no run yet, or a run whose latest checkpoint and best model load whole."""
    if not (out / "config.yaml").is_file():
        return
    folder = latest_checkpoint(out / "checkpoints")
    if folder is not None:
        assert load_file(folder / "trainable.safetensors")
        json.loads((folder / "state.json").read_text())
    model = out / "model"
    if model.exists() or (out / ".model.old").exists():
        whole = model if (model / "tunesmith.json").is_file() else out / ".model.old"
        assert (whole / "tunesmith.json").is_file(), sorted(p.name for p in out.iterdir())


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(latest_checkpoint(out / "checkpoints") / "trainable.safetensors")


@pytest.fixture(scope="module")
def straight(tmp_path_factory, tiny_bert_dir):
    from tests.conftest import SMALL_LABELS, demo_rows, write_csv

    folder = tmp_path_factory.mktemp("chaos")
    data = {
        "train": write_csv(folder / "train.csv", demo_rows("train", SMALL_LABELS, 120)),
        "validation": write_csv(folder / "validation.csv", demo_rows("validation", SMALL_LABELS, 30)),
        "test": write_csv(folder / "test.csv", demo_rows("test", SMALL_LABELS, 30)),
    }
    config = write_config(folder, data, tiny_bert_dir)
    started = time.monotonic()
    process = train(config, folder / "straight", resume=False)
    assert process.wait(timeout=600) == 0, process.stderr.read()
    return config, folder, time.monotonic() - started


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_killed_at_random_moments_and_resumed_it_ends_with_the_same_weights(straight, signum):
    config, folder, seconds = straight
    out = folder / signal.Signals(signum).name.lower()
    rng = random.Random(int(signum))
    kills = 0
    history: list[str] = []
    while True:
        process = train(config, out, resume=(out / "config.yaml").is_file())
        if kills < POINTS:
            # anywhere: start-up, a step, a checkpoint, a validation, the test evaluation
            time.sleep(rng.uniform(0.2, 0.45 * seconds))
            if process.poll() is None:
                process.send_signal(signum)
                kills += 1
        code = process.wait(timeout=600)
        stderr = process.stderr.read()
        history.append(f"attempt {len(history) + 1}: exit {code}; {stderr.strip()[-300:]}")
        assert_readable(out)
        if code == 0 or ((out / "run.json").is_file() and (out / "eval.json").is_file()):
            break  # done (a kill after its last file and before its exit leaves it done)
        assert "Traceback" not in stderr or signum == signal.SIGKILL, stderr
        if signum == signal.SIGTERM and "interrupted at step" in stderr:
            assert code == 143 and stderr.rstrip().endswith(f"tunesmith train --out {out} --resume")
    assert kills >= POINTS // 2, f"only {kills} kills landed before the run ended"
    reference, resumed = weights(folder / "straight"), weights(out)
    assert reference.keys() == resumed.keys()
    differ = {
        k: (reference[k] - resumed[k]).abs().max().item()
        for k in reference
        if not torch.equal(reference[k], resumed[k])
    }
    journal = (out.parent / f"{out.name}.stdout").read_text()
    resumes = [line for line in journal.splitlines() if "resuming from" in line or line.startswith("===")]
    assert not differ, f"{len(differ)} tensors differ, up to {max(differ.values()):.2e}\n" + "\n".join(
        history + resumes
    )
    assert (out / "run.json").is_file() and (out / "model" / "tunesmith.json").is_file()
    assert not (out / ".lock").exists()


def test_a_refused_write_stops_with_one_line_and_keeps_what_was_written(straight, tiny_bert_dir):
    """A file-size limit (the OS refusing a write, as a full disk does) set under the size of a full
    fine-tune's weights: the run stops at its first checkpoint or best model with one line and exit 1, and
    the previous checkpoint and model are kept."""
    config, folder, _ = straight
    tree = yaml.safe_load(config.read_text())
    tree["method"] = {"name": "full"}
    tree["train"]["epochs"] = 2
    full = folder / "full.yaml"
    full.write_text(yaml.safe_dump(tree))
    out = folder / "full-disk"
    process = train(full, out, resume=False)
    assert process.wait(timeout=600) == 0, process.stderr.read()
    before = latest_checkpoint(out / "checkpoints")
    (out / "eval.json").unlink()  # as if it had stopped before its test evaluation: resumable again
    saved = json.loads((before / "state.json").read_text())
    saved["state"].update(finished=False, epoch=1, batches_done=0)  # and before its last epoch
    (before / "state.json").write_text(json.dumps(saved))
    model_files = sorted((p.name, p.stat().st_size) for p in (out / "model").iterdir())

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))  # the weights are about 4 MB

    process = train(full, out, resume=True, preexec_fn=limit)
    code = process.wait(timeout=600)
    stderr = process.stderr.read()
    assert code == 1, stderr
    assert stderr.strip().splitlines()[-1].startswith("tunesmith: cannot write "), stderr
    assert "Traceback" not in stderr
    assert latest_checkpoint(out / "checkpoints") == before and load_file(before / "trainable.safetensors")
    assert sorted((p.name, p.stat().st_size) for p in (out / "model").iterdir()) == model_files
    assert not list((out / "checkpoints").glob(".*.tmp")) and not (out / ".model.new").exists()


def limited(*args: object, limit: int | None = None) -> subprocess.CompletedProcess:
    """`tunesmith ARGS`, under a file-size limit of `limit` bytes when given (the OS refusing the write)."""

    def setup() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return tunesmith(*args, preexec_fn=setup if limit else None)


def files_of(folder: Path) -> list[tuple[str, bytes]]:
    return sorted((str(p.relative_to(folder)), p.read_bytes()) for p in folder.rglob("*") if p.is_file())


def assert_refused(proc: subprocess.CompletedProcess, what: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"tunesmith: cannot write {what}") and "kept" in last, proc.stderr


def test_a_refused_report_or_export_is_one_line_and_keeps_the_earlier_one(straight):
    """The report and an export written again under a file-size limit smaller than them: exit 1, one line,
    and the earlier report and export are there byte for byte, with nothing half-written beside them."""
    _, folder, _ = straight
    run, export = folder / "straight", folder / "export"
    assert limited("report", run).returncode == 0
    page = (run / "report.html").read_bytes()
    assert limited("compare", run, "--html", folder / "compare.html").returncode == 0
    table = (folder / "compare.html").read_bytes()
    proc = limited("export", run, "--format", "merged", "--out", export)
    assert proc.returncode == 0, proc.stderr
    exported = files_of(export)

    assert_refused(limited("report", run, limit=len(page) // 2), "the report")
    assert (run / "report.html").read_bytes() == page
    assert_refused(
        limited("compare", run, "--html", folder / "compare.html", limit=len(table) // 2), "the comp"
    )
    assert (folder / "compare.html").read_bytes() == table
    merged = limited("export", run, "--format", "merged", "--out", export, "--overwrite", limit=1_000_000)
    assert_refused(merged, "the merged export")  # the weights are about 4 MB
    assert files_of(export) == exported
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".") and p.name != ".lock") == []
