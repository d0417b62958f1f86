"""Which LoRA learning rate should DPO start with? tunesmith's preference task over three sets of real pairs,
each a different preference signal, one learning rate at a time; everything else the task's defaults.

Sets (built from the shipped Debian data, pairs in TRL's prompt/chosen/rejected form):
- house-style: data/debian-preference (the helper's house answer over the maintainer's rambling paragraph or
  over another package's synopsis);
- chat-relevance: data/debian-chat questions, the package's own answer over the next chat's answer;
- summary-relevance: data/debian-summaries, "Summarize: DOCUMENT", the package's own synopsis over the next
  document's synopsis.

Each run: SmolLM2-135M-Instruct, LoRA (the method's defaults), DPO beta 0.1, batch 8, 1 epoch over the first
--train pairs, scored on the first 40 test pairs: held-out reward accuracy, reward margin, and the per-token KL
to the reference (how far the model moved).

    python bench/preference_defaults.py [--lrs 1e-4 5e-4 1e-3] [--seeds 1] [--train 96] [--json FILE]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x]


def house_style(split: str) -> list[dict]:
    return lines(DATA / "debian-preference" / f"{split}.jsonl")


def chat_relevance(split: str) -> list[dict]:
    chats = [r["messages"] for r in lines(DATA / "debian-chat" / f"{split}.jsonl")]
    return [
        {"prompt": a[:-1], "chosen": a[-1]["content"], "rejected": b[-1]["content"]}
        for a, b in zip(chats, chats[1:] + chats[:1], strict=True)
    ]


def summary_relevance(split: str) -> list[dict]:
    rows = lines(DATA / "debian-summaries" / f"{split}.jsonl")
    return [
        {
            "prompt": [{"role": "user", "content": f"Summarize: {a['document']}"}],
            "chosen": a["summary"],
            "rejected": b["summary"],
        }
        for a, b in zip(rows, rows[1:] + rows[:1], strict=True)
        if a["summary"].strip().lower() != b["summary"].strip().lower()
    ]


SETS = {"house-style": house_style, "chat-relevance": chat_relevance, "summary-relevance": summary_relevance}


def run_one(name: str, lr: float, seed: int, train: int) -> dict:
    from rich.console import Console

    from tunesmith.config import build_config
    from tunesmith.recipes.finetune import finetune

    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for split, n in (("train", train), ("test", 40)):
            files[split] = Path(tmp) / f"{split}.jsonl"
            files[split].write_text("".join(json.dumps(r) + "\n" for r in SETS[name](split)[:n]))
        cfg = build_config(
            {
                "task": {"name": "preference", "eval_generate_examples": 0},
                "model": {"name": "smollm2-135m-instruct", "max_length": 384},
                "data": {
                    "train": str(files["train"]),
                    "test": str(files["test"]),
                    "validation_fraction": 0.0,
                },
                "method": {"name": "lora"},
                "train": {
                    "epochs": 1,
                    "batch_size": 8,
                    "learning_rate": lr,
                    "seed": seed,
                    "early_stopping_patience": None,
                },
                "evaluation": {"forgetting": False},
                "output_dir": str(Path(tmp) / "run"),
            }
        )
        result = finetune(cfg, Console(file=io.StringIO()))
        tuned = json.loads((result.run / "eval.json").read_text())["tuned"]
    return {k: tuned[k] for k in ("reward_accuracy", "reward_margin", "reference_kl", "preference_accuracy")}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 5e-4, 1e-3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--train", type=int, default=96)
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    parser.add_argument("--json", type=Path)
    a = parser.parse_args()
    results: dict[str, dict[str, list[dict]]] = {}
    print(f"{'set':18} {'lr':>7} {'seed':>4} {'reward acc':>10} {'margin':>7} {'KL':>6} {'pref acc':>8}")
    for name in a.sets:
        for lr in a.lrs:
            for seed in a.seeds:
                r = run_one(name, lr, seed, a.train)
                results.setdefault(name, {}).setdefault(str(lr), []).append(r)
                print(
                    f"{name:18} {lr:7.0e} {seed:4d} {r['reward_accuracy']:10.3f} {r['reward_margin']:7.2f} "
                    f"{r['reference_kl']:6.3f} {r['preference_accuracy']:8.3f}",
                    flush=True,
                )
    print("means over sets and seeds:")
    for lr in a.lrs:
        rows = [r for name in a.sets for r in results[name][str(lr)]]
        print(
            f"lr {lr:7.0e}: reward acc {statistics.mean(r['reward_accuracy'] for r in rows):.3f} "
            f"margin {statistics.mean(r['reward_margin'] for r in rows):.2f} "
            f"KL {statistics.mean(r['reference_kl'] for r in rows):.3f}"
        )
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
