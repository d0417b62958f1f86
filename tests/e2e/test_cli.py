"""The CLI as a user runs it: a subprocess, real files, real exit codes and messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_csv


def tunesmith(
    *args: object, stdin: str | None = None, cwd: Path | None = None, preexec_fn=None
) -> subprocess.CompletedProcess:
    """`tunesmith ARGS` in a subprocess; `preexec_fn` runs in the child before it starts (e.g. a resource limit)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "tunesmith", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
        preexec_fn=preexec_fn,
    )


def train_cli(run: Path, data: dict[str, Path], model: object, method: str, *more: object):
    """`tunesmith train` on the train/validation/test files of `data` into `run`; `more`: flags, overrides."""
    files = ["--data", data["train"], "--validation", data["validation"], "--test", data["test"]]
    return tunesmith("train", "--model", model, *files, "--method", method, "--out", run, *more)


def assert_user_error(proc: subprocess.CompletedProcess, message: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert proc.stderr.startswith("tunesmith: ")
    assert "Traceback" not in proc.stderr


def test_bad_file_gives_exit_2_and_the_line(tmp_path, small_data):
    bad = tmp_path / "bad.csv"
    bad.write_text('text,label\nfine,doc\n"unclosed,net\nmore,doc\n')
    proc = tunesmith("train", "--data", bad, "--out", tmp_path / "run")
    assert_user_error(proc, "bad.csv line 3: a quoted field opened on this line is never closed")
    assert not (tmp_path / "run").exists()


def test_bad_input_leaves_an_existing_run_folder_untouched(tmp_path, small_data):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("task: classification\n")
    (run / "precious.txt").write_text("earlier results")
    before = sorted((p.name, p.read_bytes()) for p in run.iterdir())
    missing = write_csv(tmp_path / "m.csv", [("some text", "")])
    for args in (
        ["--data", missing, "--out", run, "--overwrite"],
        ["--data", small_data["train"], "--out", run, "--method", "nope", "--overwrite"],
        ["--data", small_data["train"], "--out", run],
    ):
        proc = tunesmith("train", *args)
        assert proc.returncode == 2, proc.stderr
        assert sorted((p.name, p.read_bytes()) for p in run.iterdir()) == before
    assert_user_error(tunesmith("train", "--data", missing, "--out", run), "m.csv line 2: empty label")
    assert_user_error(
        tunesmith("train", "--data", small_data["train"], "--out", run),
        "is not empty; use --resume to continue it, --overwrite to replace it",
    )


def test_config_errors_list_valid_names(tmp_path, small_data):
    assert_user_error(
        tunesmith("train", "--data", small_data["train"], "--out", tmp_path / "r", "--method", "lorra"),
        "unknown method 'lorra'; valid methods: adalora, adapter, dora, freeze, full, ia3, loha, lokr, lora, "
        "prefix, prompt, qlora\n",
    )
    assert_user_error(
        tunesmith("train", "--data", small_data["train"], "--out", tmp_path / "r", "train.epoch=3"),
        "unknown key 'train.epoch' (did you mean epochs?); valid keys: epochs",
    )


def test_hub_id_offline_fails_with_how_to_give_a_local_path(tmp_path, small_data):
    proc = tunesmith(
        "train", "--data", small_data["train"], "--out", tmp_path / "r", "--model", "bert-base-uncased"
    )
    assert_user_error(proc, "Give a local folder instead: --model /path/to/model")


def test_not_a_run_folder(tmp_path):
    assert_user_error(tunesmith("predict", tmp_path, "hello"), "is not a tunesmith run folder")


@pytest.mark.slow
def test_train_eval_predict_journey(tmp_path, small_data):
    run = tmp_path / "tickets"
    proc = train_cli(
        run,
        small_data,
        "minilm",
        "lora",
        "--task",
        "classification",
        "train.epochs=1",
        "train.batch_size=8",
        "train.learning_rate=0.003",
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "base" in proc.stdout
        and "tuned" in proc.stdout
        and f"run folder: {run}" in proc.stdout.replace("\n", "")
    )
    assert "frozen pretrained encoder with only a linear head trained" in proc.stdout.replace("\n", " ")

    proc = tunesmith("eval", run, "--data", small_data["test"], "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    saved = json.loads((run / "eval.json").read_text())
    assert report["tuned"]["macro_f1"] == pytest.approx(saved["tuned"]["macro_f1"])
    assert report["base"]["macro_f1"] == pytest.approx(saved["base"]["macro_f1"])
    interval = report["interval"]["macro_f1"]  # the paired bootstrap of tuned - base
    assert interval["delta"] == pytest.approx(report["delta"]["macro_f1"])
    assert interval["low"] <= interval["delta"] <= interval["high"]
    assert set(report["interval"]) == {
        "accuracy",
        "macro_precision",
        "macro_recall",
        "macro_f1",
        "weighted_f1",
    }

    proc = tunesmith("predict", run, "development files for libfoo", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["label"] in {"doc", "libdevel", "net"} and sum(out["probabilities"].values()) == pytest.approx(
        1, abs=1e-5
    )

    proc = tunesmith("predict", run, stdin="network time daemon\nmanual pages for foo\n")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 2

    proc = tunesmith("predict", run, "--file", small_data["test"], "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 30

    texts = tmp_path / "texts.txt"
    texts.write_text("network time daemon\n\nmanual pages for foo\n")
    proc = tunesmith("predict", run, "--file", texts)
    assert proc.returncode == 0, proc.stderr
    assert [line.split("\t")[-1] for line in proc.stdout.strip().splitlines()] == [
        "network time daemon",
        "manual pages for foo",
    ]
    texts.write_bytes("fine\ncaf\xe9\n".encode("latin-1"))
    assert_user_error(tunesmith("predict", run, "--file", texts), "texts.txt line 2: not valid UTF-8")

    bad = write_csv(tmp_path / "unseen.csv", [("a text", "doc"), ("b text", "games")])
    assert_user_error(
        tunesmith("eval", run, "--data", bad),
        'unseen.csv line 3: label "games" never occurs in the training data',
    )

    proc = tunesmith("export", run, "--format", "merged", "--json")
    assert proc.returncode == 0, proc.stderr
    exported = json.loads(proc.stdout)
    assert exported["ok"] and exported["folder"] == str(run / "export-merged")
    assert exported["max_abs_logit_difference"] <= exported["tolerance"] == 1e-4
    assert_user_error(
        tunesmith("export", run, "--format", "tflite"), "unknown format 'tflite'; valid formats"
    )
    assert_user_error(
        tunesmith("export", run, "--format", "gguf"), "GGUF export is for decoder (causal) models"
    )
    assert_user_error(
        tunesmith("export", run, "--format", "merged"), "export-merged is not empty; use --overwrite"
    )


def test_a_method_that_cannot_serve_the_task_is_refused_before_any_model_loads(tmp_path, small_data):
    qa = Path(__file__).parents[2] / "data" / "debian-qa" / "train.jsonl"
    for args, message in (
        (
            ["--data", small_data["train"], "--method", "prefix"],
            "method prefix cannot fine-tune the classification task on minilm: transformers' encoder "
            "models take no past keys and values",
        ),
        (
            ["--task", "qa", "--data", qa, "--method", "prompt"],
            "method prompt cannot fine-tune the qa task on minilm: the virtual tokens would shift",
        ),
    ):
        assert_user_error(tunesmith("train", *args, "--out", tmp_path / "run"), message)
        assert not (tmp_path / "run").exists()


def test_plan_measures_methods_and_recommends_one(tmp_path, small_data):
    data = ["--model", "minilm", "--data", small_data["train"], "--validation", small_data["validation"]]
    proc = tunesmith(
        "plan", *data, "--method", "lora,prefix", "--memory-budget", "16GB", "--json", "train.batch_size=8"
    )
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert [m["method"] for m in plan["methods"]] == ["lora"] and plan["methods"][0]["fits"] is True
    assert plan["recommended"] == "lora" and "encoder models take no past keys" in plan["skipped"]["prefix"]
    assert plan["methods"][0]["peak_bytes"] > plan["methods"][0]["weights_bytes"] > 80 * 2**20
    proc = tunesmith("plan", *data, "--method", "ia3", "--memory-budget", "1MB")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "ia3" in text and "none fits in 1 MiB; the smallest is ia3" in text
    assert_user_error(tunesmith("plan", *data, "--method", "lorra"), "unknown method 'lorra'")
    assert_user_error(tunesmith("plan", *data, "--memory-budget", "lots"), "not a memory size: 'lots'")


def test_compare_runs_as_table_json_and_html(tmp_path, small_data, tiny_bert_dir):
    from html.parser import HTMLParser

    runs = []
    for method in ("lora", "freeze"):
        run = tmp_path / method
        proc = train_cli(run, small_data, tiny_bert_dir, method, "train.epochs=1", "train.batch_size=16")
        assert proc.returncode == 0, proc.stderr
        runs.append(run)

    page = tmp_path / "report" / "compare.html"
    proc = tunesmith("compare", *runs, "--json", "--html", page)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["method"] for r in rows] == ["lora", "freeze"]
    for row, run in zip(rows, runs, strict=True):
        saved = json.loads((run / "eval.json").read_text())
        assert row["tuned"]["macro_f1"] == saved["tuned"]["macro_f1"]
        assert row["delta"]["macro_f1"] == pytest.approx(
            saved["tuned"]["macro_f1"] - saved["base"]["macro_f1"]
        )
        assert row["peak_memory_measured"] and row["peak_memory_bytes"] > 10 * 2**20
        assert 0 < row["embedding_similarity"] <= 1  # forgetting of an encoder
    assert rows[0]["trainable_parameters"] != rows[1]["trainable_parameters"]

    cells: list[str] = []

    class Cells(HTMLParser):
        def handle_data(self, data: str) -> None:
            cells.append(data)

    Cells().feed(page.read_text())
    assert {"lora", "freeze", "macro_f1", "forgetting", "peak memory"} <= set(cells)

    proc = tunesmith("compare", *runs)
    assert proc.returncode == 0 and "runs compared" in proc.stdout and "macro_f1" in proc.stdout

    proc = tunesmith("compare", runs[0], tmp_path / "nothing-here")
    assert proc.returncode == 2 and "nothing-here has no run.json" in proc.stderr
