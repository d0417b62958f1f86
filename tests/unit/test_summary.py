"""run.json's content is a pure function of what the stages measured: tested here without training."""

from __future__ import annotations

from tunesmith.recipes.summary import Facts, not_kept_line, summarise
from tunesmith.sections import TrainConfig
from tunesmith.training.checkpoint import LoopState
from tunesmith.training.loop import LoopResult

FACTS = Facts(
    task="classification",
    method="lora",
    model="minilm",
    examples={"train": 100, "validation": 20, "test": 30},
    trainable_parameters=1_000,
    total_parameters=20_000,
    start="base",
    mean_length=12.5,
    device="cpu",
    processes=1,
    seconds=10.123,
    peak={"peak_memory_bytes": 5, "peak_memory_of": "process resident memory"},
    estimate=None,
)


def result(**state) -> LoopResult:
    return LoopResult(LoopState(**state), samples_per_second=8.0, seconds=9.0, step_seconds=7.456)


def test_a_run_whose_checkpoint_beat_the_base_holds_the_tuned_model():
    summary = summarise(FACTS, result(step=30, best=0.9, best_step=20, start=0.8, tuned_best=0.9), "macro_f1")
    assert summary["holds"] == "tuned"
    assert summary["optimizer_steps"] == 30 and summary["best_step"] == 20
    assert summary["best_validation_macro_f1"] == 0.9 and summary["base_validation_macro_f1"] == 0.8
    assert summary["train_seconds"] == 10.12 and summary["train_step_seconds"] == 7.46
    assert summary["train_tokens_per_second"] == 100.0  # 8 samples/s of 12.5 tokens
    assert summary["examples"] == {"train": 100, "validation": 20, "test": 30}
    assert summary["peak_memory_of"] == "process resident memory" and summary["estimate"] is None


def test_a_run_where_no_checkpoint_beat_the_start_holds_the_start():
    state = {"step": 30, "best": 0.8, "best_step": 0, "start": 0.8, "tuned_best": 0.7}
    assert summarise(FACTS, result(**state), "macro_f1")["holds"] == "base"
    from_a_run = Facts(**{**FACTS.__dict__, "start": "start"})
    assert summarise(from_a_run, result(**state), "macro_f1")["holds"] == "start"
    new_head = Facts(**{**FACTS.__dict__, "start": None})  # a random head never competes
    assert summarise(new_head, result(step=30, best=0.5, best_step=0), "macro_f1")["holds"] == "tuned"


def test_the_not_kept_line_says_whether_tuning_was_worse_or_only_not_clearly_better():
    cfg = TrainConfig(metric="macro_f1", keep_confidence=0.9)
    worse = not_kept_line(LoopState(start=0.8, tuned_best=0.7), "the base model", cfg)
    assert worse.startswith("fine-tuning did not beat the base model on validation (macro_f1: 0.8000")
    unclear = not_kept_line(
        LoopState(start=0.8, tuned_best=0.81, tuned_best_share=0.6), "the base model", cfg
    )
    assert "did not clearly beat the base model" in unclear and "in only 60% of bootstrap" in unclear
    assert "train.keep=tuned keeps the fine-tuned weights instead" in unclear
