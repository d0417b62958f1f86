"""Re-tune from the serving version's weights, or from the base model? Measured with simulated corrections.

For each panel dataset and seed: version 1 is trained with tunesmith's defaults on the first half of the
training split (validation and test as they are). It then "serves" the second half: every text it gets
wrong comes back as a correction with the true label (what users send to /v1/feedback). `tunesmith retune`
makes a new version from the first half plus those corrections twice, once with `retune.start=base` and once
with `retune.start=serving`, and both are scored on the same test split as version 1 (the retune's own
comparison; nothing is promoted).

    python bench/retune.py [--datasets tweets vader-snippets chatterbot-topics] [--seeds 1 2] [--json FILE]

Last line: `serving_minus_base +X.XXX` (test macro-F1 of the new version started from the serving weights
minus the one started from the base, mean over datasets and seeds).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tunesmith.processes import run_apart

ROOT = Path(__file__).resolve().parents[1]
PANEL = ROOT / "bench" / "panel"


def read_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, rows: list[dict]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "label": r["label"]} for r in rows)
    return path


def simulate(job: dict, out) -> None:
    import io

    from rich.console import Console

    from tunesmith.config import build_config
    from tunesmith.inference import load_run
    from tunesmith.monitoring.retune import retune
    from tunesmith.recipes.finetune import finetune
    from tunesmith.recipes.predict import predict_texts

    folder = Path(job["folder"])
    rows = read_rows(Path(job["train"]))
    half = len(rows) // 2
    first = write_rows(folder / "first-half.csv", rows[:half])
    tree = {
        "task": {"name": "classification"},
        "model": {"name": "minilm"},
        "data": {"train": str(first), "validation": job["validation"], "test": job["test"]},
        "train": {"seed": job["seed"]},
        "evaluation": {"forgetting": False},
        "output_dir": str(folder / "run"),
    }
    quiet = Console(file=io.StringIO())
    v1 = finetune(build_config(tree), quiet)
    traffic = rows[half:]
    served = load_run(v1.run)
    answers = predict_texts(served, [r["text"] for r in traffic])
    wrong = [r for r, ranked in zip(traffic, answers, strict=True) if ranked[0][0] != r["label"]]
    corrections = write_rows(folder / "corrections.csv", wrong)
    result = {
        "v1": v1.evaluation["tuned"]["macro_f1"],
        "v1_holds": v1.summary.get("holds"),
        "traffic": len(traffic),
        "corrections": len(wrong),
    }
    for start in ("base", "serving"):
        overrides = [f"retune.start={start}", "retune.promote=never"]
        new = retune(v1.run, quiet, feedback=False, extra=[corrections], overrides=overrides)
        result[start] = new.decision["comparison"]["candidate"]
        result[f"{start}_holds"] = json.loads((new.folder / "run.json").read_text())["holds"]
    out.put(result)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["tweets", "vader-snippets", "chatterbot-topics"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path)
    a = parser.parse_args()
    if not (PANEL / "panel.json").is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "build_quality_panel.py")], check=True)
    runs: dict[str, list[dict]] = {}
    for dataset in a.datasets:
        runs[dataset] = []
        for seed in a.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                files = {s: str(PANEL / dataset / f"{s}.csv") for s in ("train", "validation", "test")}
                r = run_apart(simulate, {**files, "folder": tmp, "seed": seed})
            runs[dataset].append({"seed": seed, **r})
            print(
                f"{dataset:18} seed {seed}: v1 {r['v1']:.3f} (holds {r['v1_holds']}); {r['corrections']} corrections of "
                f"{r['traffic']} served; v2 from base {r['base']:.3f} (holds {r['base_holds']}), "
                f"from serving {r['serving']:.3f} (holds {r['serving_holds']})",
                flush=True,
            )
        if a.json:
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps(runs, indent=2) + "\n")
    differences = [r["serving"] - r["base"] for rs in runs.values() for r in rs]
    for dataset, rs in runs.items():
        means = {k: statistics.mean(r[k] for r in rs) for k in ("v1", "base", "serving")}
        print(
            f"{dataset:18} v1 {means['v1']:.3f}  from base {means['base']:.3f}  from serving {means['serving']:.3f}"
        )
    print(f"serving_minus_base {statistics.mean(differences):+.3f}")


if __name__ == "__main__":
    main()
