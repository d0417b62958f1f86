"""The New run page's work: a draft run (name, task, model, method, data files picked or uploaded), its data
check as `tunesmith check` runs it, and the planner's estimate for its method and the cheaper ones, before
its Train button queues `tunesmith train`."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.config import RunConfig, build_config, parse_override
from tunesmith.errors import UserError
from tunesmith.methods import METHODS
from tunesmith.models.catalog import CATALOG
from tunesmith.planning.estimate import Estimate
from tunesmith.recipes.check import check_run_data
from tunesmith.recipes.plan import fallback_order, plan
from tunesmith.studio.security import inside
from tunesmith.tasks import TASKS

SPLITS = ("train", "validation", "test")
DATA_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt", ".conll", ".gz")
UPLOADS = ".studio/uploads"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
CHEAPER = 2
"""How many cheaper methods the page estimates beside the chosen one (each is measured in a fresh process)."""
OVERRIDE_SECTIONS = ("train.", "method.", "evaluation.", "task.", "model.max_length=")
"""What the New run page's dotted overrides may set: how to train and evaluate, never where files are read or
written (data, output_dir, model.name are the form's own fields)."""
PATH_KEYS = ("dir", "path", "file", "uri", "init_from")
"""Keys (their last part's ending) that name a place on disk or a server (train.init_from, train.mlflow_uri):
refused in the page's overrides."""
MAX_OVERRIDES = 20


@dataclass
class Draft:
    name: str = ""
    task: str = "classification"
    model: str = ""
    method: str = "lora"
    files: dict[str, str] = field(default_factory=dict)
    """split -> a data file's path under the studio's folder."""
    overrides: list[str] = field(default_factory=list)
    """Dotted overrides, as `tunesmith train` takes them (train.epochs=2), within OVERRIDE_SECTIONS."""

    @classmethod
    def of(cls, form: Any) -> Draft:
        files = {s: str(form.get(f"{s}_file") or "").strip() for s in SPLITS}
        typed = str(form.get("overrides") or "").splitlines() + [str(v) for v in form.getlist("override")]
        return cls(
            name=str(form.get("name") or "").strip(),
            task=str(form.get("task") or "classification"),
            model=str(form.get("model") or ""),
            method=str(form.get("method") or "lora"),
            files={k: v for k, v in files.items() if v},
            overrides=[line.strip() for line in typed if line.strip()],
        )


def choices(root: Path) -> dict[str, list[str]]:
    """What the form offers: tasks, models of the catalog, methods, and data files under the folder."""
    return {
        "task": TASKS.names(),
        "model": list(CATALOG),
        "method": METHODS.names(),
        "file": data_files(root),
    }


def data_files(root: Path) -> list[str]:
    """Data files under the folder (3 levels down, uploads included), outside run folders."""
    found = []
    level = [root]
    for _ in range(3):
        below = []
        for folder in level:
            try:
                children = sorted(folder.iterdir())
            except OSError:
                continue
            if (folder / "config.yaml").is_file():
                continue
            for child in children:
                if child.is_dir() and (child.name != ".studio" or folder == root):
                    below.append(child)
                elif child.is_file() and child.name.endswith(DATA_SUFFIXES):
                    found.append(child.relative_to(root).as_posix())
        level = below + [p for p in below if p.name == ".studio"]
    uploads = root / UPLOADS
    if uploads.is_dir():
        found += [p.relative_to(root).as_posix() for p in sorted(uploads.rglob("*")) if p.is_file()]
    return sorted(set(found))


def save_upload(root: Path, filename: str, content: bytes) -> str:
    """An uploaded file, kept under DIR/.studio/uploads/RANDOM/NAME (its name stripped of any folder)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(filename.replace("\\", "/")).name).lstrip(".") or "data.csv"
    folder = root / UPLOADS / secrets.token_hex(6)
    folder.mkdir(parents=True)
    (folder / name).write_bytes(content)
    return (folder / name).relative_to(root).as_posix()


def config_of(root: Path, draft: Draft) -> RunConfig:
    """The draft as a run config (every file and the run folder checked to lie inside the folder)."""
    if not NAME.match(draft.name):
        raise UserError(
            f"run name {draft.name!r}: use letters, digits, '.', '-', '_' (and one '/' for a group)"
        )
    out = inside(root, draft.name)
    if out.exists():
        raise UserError(f"{draft.name}: a folder of that name exists; choose another run name")
    if "train" not in draft.files:
        raise UserError("pick or upload a training file")
    check_overrides(draft.overrides)
    data = {split: str(inside(root, path)) for split, path in draft.files.items()}
    tree: dict[str, Any] = {"task": {"name": draft.task}, "method": {"name": draft.method}, "data": data}
    if draft.model:
        tree["model"] = {"name": draft.model}
    tree["output_dir"] = str(out)
    return build_config(tree, draft.overrides)


def check_overrides(overrides: list[str]) -> None:
    """UserError for an override the page does not take: not KEY=VALUE, outside OVERRIDE_SECTIONS, or a key
    naming a file, folder or server (the studio reads and writes inside its folder only)."""
    if len(overrides) > MAX_OVERRIDES:
        raise UserError(f"at most {MAX_OVERRIDES} overrides")
    for text in overrides:
        if not text.startswith(OVERRIDE_SECTIONS):
            raise UserError(
                f"override {text!r}: give KEY=VALUE for a key under train., method., evaluation. or task. "
                "(or model.max_length), e.g. train.epochs=2"
            )
        key, _ = parse_override(text)  # ConfigError (its message says KEY=VALUE) for one without a value
        if key[-1].endswith(PATH_KEYS):
            raise UserError(f"override {text!r}: the studio does not take paths or addresses in overrides")


@dataclass
class Checked:
    report: dict[str, Any] | None = None
    error: str | None = None
    estimates: list[Estimate] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def trainable(self) -> bool:
        return self.report is not None and bool(self.report.get("ok"))


def check_draft(root: Path, draft: Draft, estimate: bool = True) -> Checked:
    """The data check of the draft, then (when it passes) the estimate for its method and up to CHEAPER
    cheaper ones. A user mistake (a bad file, an unknown model) is the result's error, in the CLI's words."""
    try:
        config = config_of(root, draft)
        report = check_run_data(config).report.to_dict()
    except UserError as exc:
        return Checked(error=str(exc))
    result = Checked(report=report)
    if result.trainable and estimate:
        cheaper = [m for m in fallback_order() if m != draft.method][:CHEAPER]
        try:
            found = plan(config, [draft.method, *cheaper], None, lambda _: None)
        except UserError as exc:
            result.error = f"estimate: {exc}"
        else:
            result.estimates, result.skipped = found.estimates, found.skipped
    return result


def train_args(root: Path, draft: Draft) -> list[str]:
    """`tunesmith train` for the draft, as the job queue runs it."""
    config = config_of(root, draft)
    args = ["--task", draft.task, "--method", draft.method, "--out", str(config.output_dir)]
    if draft.model:
        args += ["--model", draft.model]
    flags = {"train": "--data", "validation": "--validation", "test": "--test"}
    for split, path in draft.files.items():
        args += [flags[split], str(inside(root, path))]
    return args + draft.overrides
