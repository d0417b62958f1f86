"""The quality panel: does fine-tuning with tunesmith's defaults beat the base model and the peers' recipes,
on real data nobody tuned the defaults on?

For every dataset of the panel (scripts/build_quality_panel.py builds it from data packages; it is not
committed) and every seed, side by side in one run, each in its own child process (so peak RSS is its own):

- `base`: the frozen MiniLM with a linear probe on mean-pooled embeddings (what tunesmith reports as the base;
  read from the defaults run, which fits it on the same training split);
- `tunesmith`: `tunesmith train --task classification --model minilm --method lora`, nothing else set;
- `full`: the same with `--method full`;
- `hf`: the plain Hugging Face Trainer + PEFT recipe (bench/hf_recipe.py: LoRA r=16, alpha 32, lr 5e-4,
  max_length 128 padded, 3 epochs, batch 16);
- `hf-expert`: the same recipe as the Trainer's docs advise (per-batch padding, length-grouped batches,
  the best epoch kept on validation macro-F1).

Extra tunesmith configurations for a sweep: `--arm NAME=key=value,key=value` (dotted config overrides).

    python bench/quality.py [--datasets rt-reviews tweets ...] [--seeds 1 2 3] [--arms tunesmith hf ...]
                            [--arm lr2e3=train.learning_rate=2e-3] [--json bench/results/quality.json]
    python bench/quality.py --merge A.json B.json [--json bench/results/quality.json]   # no training

`--merge` joins the runs of earlier `--json` files (a long panel run split over sessions: other seeds, arms
or sets; a run repeated for the same set, arm and seed keeps the later file's) and prints the same tables.

Prints a table per dataset (test macro-F1 mean and sd over seeds, training samples/s, peak RSS) and, last:
`min_gain_vs_base +X.XXX mean_gain_vs_hf +X.XXX speed_vs_expert X.XX` (the worst dataset's tunesmith - base;
the mean over datasets of tunesmith - hf; tunesmith's samples/s over hf-expert's, mean over datasets).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tunesmith.processes import run_apart

ROOT = Path(__file__).resolve().parents[1]
PANEL = ROOT / "bench" / "panel"
HF_LORA = {"rank": 16, "alpha": 32, "dropout": 0.1}
HF_LR, HF_EPOCHS = 5e-4, 3
BUILT_IN = ("tunesmith", "full", "hf", "hf-expert")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_tunesmith(job: dict, out) -> None:
    import io

    from rich.console import Console

    from tunesmith.config import build_config
    from tunesmith.recipes.finetune import finetune

    with tempfile.TemporaryDirectory() as tmp:
        tree = {
            "task": {"name": "classification"},
            "model": {"name": "minilm"},
            "data": job["files"],
            "train": {"seed": job["seed"]},
            "evaluation": {"forgetting": False},  # general ability is not what the panel measures
            "output_dir": str(Path(tmp) / "run"),
        }
        cfg = build_config(tree, job["overrides"])
        result = finetune(cfg, Console(file=io.StringIO()))
        summary, evaluation = result.summary, result.evaluation
        out.put(
            {
                "macro_f1": evaluation["tuned"]["macro_f1"],
                "base_macro_f1": evaluation["base"]["macro_f1"],
                "samples_per_second": summary["examples"]["train"]
                * _epochs_run(summary, cfg)
                / summary["train_seconds"],
                "train_seconds": summary["train_seconds"],
                "holds": summary.get("holds"),
                "base_validation": summary.get(f"base_validation_{cfg.train.metric}"),
                "best_tuned_validation": summary.get("best_tuned_validation"),
                "best_tuned_beats_base_share": summary.get("best_tuned_beats_base_share"),
                "max_length": cfg.model.max_length,
                "learning_rate": cfg.train.learning_rate,
                "peak_rss_mb": peak_rss_mb(),
            }
        )


def _epochs_run(summary: dict, cfg) -> float:
    """Epochs trained (early stopping may end a run before train.epochs)."""
    from tunesmith.training.loop import steps_per_epoch

    return summary["optimizer_steps"] / steps_per_epoch(summary["examples"]["train"], cfg.train)


def run_hf(job: dict, out) -> None:
    import torch

    sys.path.insert(0, str(ROOT / "bench"))
    from hf_recipe import train_and_test

    from tunesmith.training.setup import mixed_precision

    # the Trainer in bf16 where tunesmith's precision auto picks it, so the speed ratio is like for like
    bf16 = mixed_precision("auto", torch.device("cuda" if torch.cuda.is_available() else "cpu")) == "bf16"
    result = train_and_test(
        job["files"], HF_LORA, HF_EPOCHS, HF_LR, job["seed"], expert=job["expert"], bf16=bf16
    )
    out.put({**result, "peak_rss_mb": peak_rss_mb()})


def parse_arms(names: list[str], extra: list[str]) -> dict[str, list[str] | None]:
    """Arm name -> tunesmith overrides (None for the Trainer arms)."""
    arms: dict[str, list[str] | None] = {}
    for name in names:
        if name not in BUILT_IN:
            raise SystemExit(f"unknown arm {name!r}; built in: {', '.join(BUILT_IN)} (or --arm NAME=k=v,...)")
        arms[name] = {"tunesmith": [], "full": ["method.name=full"]}.get(name)
    for spec in extra:
        name, _, overrides = spec.partition("=")
        arms[name] = [o for o in overrides.split(",") if o]
    return arms


def run_job(arm: str, overrides: list[str] | None, files: dict, seed: int) -> dict:
    if overrides is None:
        return run_apart(run_hf, {"files": files, "seed": seed, "expert": arm == "hf-expert"})
    return run_apart(run_tunesmith, {"files": files, "seed": seed, "overrides": overrides})


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(runs: dict) -> dict:
    """Per dataset and arm: mean and sd of test macro-F1, mean samples/s, highest peak RSS; and `base`."""
    out: dict[str, dict] = {}
    for dataset, arms in runs.items():
        rows: dict[str, dict] = {}
        bases = [r["base_macro_f1"] for rs in arms.values() for r in rs if "base_macro_f1" in r]
        if bases:
            mean, sd = mean_sd(bases)
            rows["base"] = {"macro_f1": mean, "macro_f1_sd": sd}
        for arm, rs in arms.items():
            if not rs:  # an arm a run in progress has not reached yet
                continue
            mean, sd = mean_sd([r["macro_f1"] for r in rs])
            rows[arm] = {
                "macro_f1": mean,
                "macro_f1_sd": sd,
                "samples_per_second": statistics.mean(r["samples_per_second"] for r in rs),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
                "seeds": len(rs),
            }
        out[dataset] = rows
    return out


def merge_runs(paths: list[Path]) -> dict:
    """The runs of several --json files, by dataset, arm and seed; a later file's run replaces an earlier one's."""
    merged: dict[str, dict[str, dict[int, dict]]] = {}
    for path in paths:
        for dataset, arms in json.loads(path.read_text())["runs"].items():
            for arm, rs in arms.items():
                for r in rs:
                    merged.setdefault(dataset, {}).setdefault(arm, {})[r["seed"]] = r
    return {
        dataset: {arm: [by_seed[s] for s in sorted(by_seed)] for arm, by_seed in arms.items()}
        for dataset, arms in merged.items()
    }


def write_runs(runs: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": runs, "summary": summarise(runs)}, indent=2) + "\n")


def report(runs: dict, out: Path | None) -> None:
    if out:
        write_runs(runs, out)
    summary = summarise(runs)
    for dataset, rows in summary.items():
        print_table(dataset, rows)
    print(headline(summary))


def headline(summary: dict) -> str:
    gains_base, gains_hf, speed = [], [], []
    for rows in summary.values():
        ours = rows.get("tunesmith")
        if ours is None:
            continue
        if "base" in rows:
            gains_base.append(ours["macro_f1"] - rows["base"]["macro_f1"])
        if "hf" in rows:
            gains_hf.append(ours["macro_f1"] - rows["hf"]["macro_f1"])
        if "hf-expert" in rows:
            speed.append(ours["samples_per_second"] / rows["hf-expert"]["samples_per_second"])
    parts = []
    if gains_base:
        parts.append(f"min_gain_vs_base {min(gains_base):+.3f}")
    if gains_hf:
        parts.append(f"mean_gain_vs_hf {statistics.mean(gains_hf):+.3f}")
    if speed:
        parts.append(f"speed_vs_expert {statistics.mean(speed):.2f}")
    return " ".join(parts)


def print_table(dataset: str, rows: dict) -> None:
    print(f"\n{dataset}")
    print(f"  {'arm':14} {'test macro-F1':>16} {'samples/s':>10} {'peak RSS MB':>12}")
    for arm, r in rows.items():
        f1 = f"{r['macro_f1']:.3f} ± {r['macro_f1_sd']:.3f}"
        sps = f"{r['samples_per_second']:10.1f}" if "samples_per_second" in r else f"{'':10}"
        rss = f"{r['peak_rss_mb']:12.0f}" if "peak_rss_mb" in r else ""
        print(f"  {arm:14} {f1:>16} {sps} {rss}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", help="panel datasets (default: every classification set)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument(
        "--arms", nargs="*", default=list(BUILT_IN), help="built-in arms (none: only --arm ones)"
    )
    parser.add_argument("--arm", action="append", default=[], help="NAME=key=value,... a tunesmith sweep arm")
    parser.add_argument("--json", type=Path, help="write every run and the summary here")
    parser.add_argument("--merge", type=Path, nargs="+", help="join these --json files' runs; trains nothing")
    a = parser.parse_args()
    if a.merge:
        report(merge_runs(a.merge), a.json)
        return
    if not (PANEL / "panel.json").is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "build_quality_panel.py")], check=True)
    panel = json.loads((PANEL / "panel.json").read_text())
    datasets = a.datasets or [n for n, d in panel.items() if d["task"] == "classification"]
    arms = parse_arms(a.arms, a.arm)
    runs: dict[str, dict[str, list[dict]]] = {}
    for dataset in datasets:
        files = {s: str(PANEL / dataset / f"{s}.csv") for s in ("train", "validation", "test")}
        runs[dataset] = {arm: [] for arm in arms}
        for seed in a.seeds:
            for arm, overrides in arms.items():
                r = run_job(arm, overrides, files, seed)
                runs[dataset][arm].append({"seed": seed, **r})
                print(
                    f"{dataset:18} {arm:12} seed {seed}: macro-F1 {r['macro_f1']:.3f}"
                    + (f" (base {r['base_macro_f1']:.3f})" if "base_macro_f1" in r else "")
                    + f"  {r['samples_per_second']:.1f} samples/s  {r['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
                if a.json:  # after each run, so a long run's finished part is kept
                    write_runs(runs, a.json)
    report(runs, a.json)


if __name__ == "__main__":
    main()
