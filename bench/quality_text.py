"""The quality panel's text-writing sets: does tunesmith's default fine-tune beat the untuned model, and TRL's
SFT recipe, on real data nobody tuned the defaults on?

Datasets (scripts/build_quality_panel.py): `debian-synopsis` (summarization: a long Debian package description
-> its one-line synopsis, sections the demo does not use) and `chatterbot-chat` (chat: a question from the
ChatterBot corpus -> its answer). Model: the packaged SmolLM2-135M-Instruct. Arms, each in its own child
process, every seed:

- `base`: the untuned model answering the same prompts (tunesmith's base, from the defaults run);
- `tunesmith`: `tunesmith train --task summarization|chat --method lora`, nothing else set;
- `trl`: TRL's SFTTrainer as its docs advise for LoRA (r=16, alpha 32, dropout 0.05 on every linear layer of
  the blocks, lr 2e-4, 3 epochs, batch 8, loss on the completion only; bf16 off on a CPU), on the same
  prompts rendered with the model's chat template.

Every model is scored by the same code: tunesmith's task evaluation (greedy answers, ROUGE-L against the
reference) on the test split.

    python bench/quality_text.py [--datasets debian-synopsis chatterbot-chat] [--seeds 1 2 3] [--json FILE]

Last line: `min_gain_vs_base +X.XXX mean_gain_vs_trl +X.XXX` (test ROUGE-L, means over seeds).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tunesmith.processes import run_apart

ROOT = Path(__file__).resolve().parents[1]
PANEL = ROOT / "bench" / "panel"
MODEL = "smollm2-135m-instruct"
TASKS = {"debian-synopsis": "summarization", "chatterbot-chat": "chat"}
TRL = {"rank": 16, "alpha": 32, "dropout": 0.05, "learning_rate": 2e-4, "epochs": 3, "batch_size": 8}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def base_tree(job: dict, out: Path) -> dict:
    return {
        "task": {"name": TASKS[job["dataset"]]},
        "model": {"name": MODEL},
        "data": {**job["files"], "format": "jsonl"},
        "train": {"seed": job["seed"]},
        "evaluation": {"forgetting": False},
        "output_dir": str(out),
    }


def run_tunesmith(job: dict, out) -> None:
    import io

    from rich.console import Console

    from tunesmith.config import build_config
    from tunesmith.recipes.finetune import finetune

    with tempfile.TemporaryDirectory() as tmp:
        cfg = build_config(base_tree(job, Path(tmp) / "run"), job["overrides"])
        result = finetune(cfg, Console(file=io.StringIO()))
        summary, evaluation = result.summary, result.evaluation
        out.put(
            {
                "rougeL": evaluation["tuned"]["rougeL"],
                "base_rougeL": evaluation["base"]["rougeL"],
                "holds": summary.get("holds"),
                "train_seconds": summary["train_seconds"],
                "peak_rss_mb": peak_rss_mb(),
            }
        )


def run_trl(job: dict, out) -> None:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from tunesmith.config import build_config
    from tunesmith.models.catalog import resolve_model
    from tunesmith.recipes.prepare import prepare

    with tempfile.TemporaryDirectory() as tmp:
        # tunesmith's own reading of the data: the same prompts, splits and scoring for both sides
        prepared = prepare(build_config(base_tree(job, Path(tmp) / "unused")))
        task = prepared.task
        path = resolve_model(MODEL).source
        tokenizer = AutoTokenizer.from_pretrained(path)
        rows = []
        for example in prepared.splits.train:
            messages = task.turns(example)
            prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
            rows.append({"prompt": prompt, "completion": messages[-1]["content"] + tokenizer.eos_token})
        model = AutoModelForCausalLM.from_pretrained(path)
        peft_config = LoraConfig(
            r=TRL["rank"],
            lora_alpha=TRL["alpha"],
            lora_dropout=TRL["dropout"],
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
        config = SFTConfig(
            output_dir=tmp,
            num_train_epochs=TRL["epochs"],
            per_device_train_batch_size=TRL["batch_size"],
            learning_rate=TRL["learning_rate"],
            max_length=512,
            completion_only_loss=True,
            bf16=False,  # TRL's default bf16=True refuses to run on a CPU
            seed=job["seed"],
            report_to=[],
            save_strategy="no",
            disable_tqdm=True,
            logging_steps=1000,
        )
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=peft_config,
        )
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        trained = trainer.model.eval()
        features = task.encode(prepared.splits.test, prepared.tokenizer)
        evaluation = task.evaluate(trained, features, 16, prepared.tokenizer.pad_token_id)
    out.put(
        {
            "rougeL": evaluation.metrics["rougeL"],
            "train_seconds": round(seconds, 2),
            "peak_rss_mb": peak_rss_mb(),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=list(TASKS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--arms", nargs="+", default=["tunesmith", "trl"])
    parser.add_argument("--arm", action="append", default=[], help="NAME=key=value,... a tunesmith sweep arm")
    parser.add_argument("--json", type=Path)
    a = parser.parse_args()
    if not (PANEL / "panel.json").is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "build_quality_panel.py")], check=True)
    arms: dict[str, list[str] | None] = {name: (None if name == "trl" else []) for name in a.arms}
    for spec in a.arm:
        name, _, overrides = spec.partition("=")
        arms[name] = [o for o in overrides.split(",") if o]
    runs: dict[str, dict[str, list[dict]]] = {}
    for dataset in a.datasets:
        files = {s: str(PANEL / dataset / f"{s}.jsonl") for s in ("train", "validation", "test")}
        runs[dataset] = {arm: [] for arm in arms}
        for seed in a.seeds:
            for arm, overrides in arms.items():
                job = {"dataset": dataset, "files": files, "seed": seed, "overrides": overrides or []}
                r = run_apart(run_trl if overrides is None else run_tunesmith, job)
                runs[dataset][arm].append({"seed": seed, **r})
                base = f" (base {r['base_rougeL']:.3f}, holds {r['holds']})" if "base_rougeL" in r else ""
                print(
                    f"{dataset:16} {arm:10} seed {seed}: test ROUGE-L {r['rougeL']:.3f}{base}  "
                    f"{r['train_seconds']:.0f} s  {r['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
        if a.json:
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    gains_base, gains_trl = [], []
    for dataset, arms_runs in runs.items():
        print(f"\n{dataset}")
        means = {}
        for arm, rs in arms_runs.items():
            values = [r["rougeL"] for r in rs]
            means[arm] = statistics.mean(values)
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            print(f"  {arm:10} ROUGE-L {means[arm]:.3f} ± {sd:.3f}")
        bases = [r["base_rougeL"] for rs in arms_runs.values() for r in rs if "base_rougeL" in r]
        if bases and "tunesmith" in means:
            print(f"  {'base':10} ROUGE-L {statistics.mean(bases):.3f}")
            gains_base.append(means["tunesmith"] - statistics.mean(bases))
        if "trl" in means and "tunesmith" in means:
            gains_trl.append(means["tunesmith"] - means["trl"])
    parts = []
    if gains_base:
        parts.append(f"min_gain_vs_base {min(gains_base):+.3f}")
    if gains_trl:
        parts.append(f"mean_gain_vs_trl {statistics.mean(gains_trl):+.3f}")
    print(" ".join(parts))


if __name__ == "__main__":
    main()
