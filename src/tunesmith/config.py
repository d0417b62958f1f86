"""The one typed run config: YAML file + CLI flags + dotted overrides -> RunConfig.

Every field carries its default here, and the resolved config (with the learning rate a method picks) is
written to the run folder, so a run can always be read back exactly.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, SerializeAsAny, ValidationError, field_validator, model_validator

from tunesmith.data.checks.registry import ERROR_KINDS, WARNING_KINDS
from tunesmith.errors import ConfigError, UserError
from tunesmith.methods import METHODS
from tunesmith.models.kinds import kind_of
from tunesmith.plugin import PluginParams, Section
from tunesmith.sections import (
    CheckConfig,
    DataConfig,
    DistributedConfig,
    EvaluationConfig,
    ModelConfig,
    MonitorConfig,
    RetuneConfig,
    SearchConfig,
    TrainConfig,
    default_mlflow_uri,
)
from tunesmith.tasks import TASKS


class RunConfig(Section):
    task: SerializeAsAny[PluginParams] = Field(
        default_factory=lambda: {"name": "classification"}, validate_default=True
    )
    """The task and its own keys, e.g. {name: classification, text_column: text}."""
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    method: SerializeAsAny[PluginParams] = Field(
        default_factory=lambda: {"name": "lora"}, validate_default=True
    )
    """The method and its own keys, e.g. {name: lora, rank: 8}."""
    train: TrainConfig = Field(default_factory=TrainConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    check: CheckConfig = Field(default_factory=CheckConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    retune: RetuneConfig = Field(default_factory=RetuneConfig)
    output_dir: Path | None = None
    """Run folder: resolved config, metrics, checkpoints, best model, label map, evaluation."""

    @field_validator("task", mode="before")
    @classmethod
    def _task_params(cls, value: Any) -> PluginParams:
        return _plugin_params(value, lambda name: TASKS.get(name).Params, "task", "classification")

    @field_validator("method", mode="before")
    @classmethod
    def _method_params(cls, value: Any) -> PluginParams:
        return _plugin_params(value, lambda name: METHODS.get(name).Params, "method", "lora")

    @model_validator(mode="after")
    def _resolve_defaults(self) -> RunConfig:
        """Fill the defaults that depend on the method or task, so the saved config says what ran."""
        _check_ignored_kinds(self.check.ignore)
        task = TASKS.get(self.task.name)
        method = METHODS.get(self.method.name)
        if self.train.learning_rate is None:
            self.train.learning_rate = method.learning_rate_for(self.task.name)
        method.fill_task_defaults(self.task.name, self.method)
        if self.model.name is None:
            self.model.name = task.default_model
        self.train.metric = task.variant_for(_kind_or_none(self.model.name)).metric_for(
            self.task, self.train.metric
        )
        if self.train.group_by_length is None:
            self.train.group_by_length = task.default_group_by_length
        if self.model.max_length is None:
            self.model.max_length = task.default_max_length
        if self.model.attention_dropout is None:
            self.model.attention_dropout = task.default_attention_dropout
        if "mlflow" in self.train.report_to and self.train.mlflow_uri is None and self.output_dir is not None:
            self.train.mlflow_uri = default_mlflow_uri(self.output_dir)
        return self


def _check_ignored_kinds(kinds: list[str]) -> None:
    """check.ignore names warning kinds only, each one a registered check reports."""
    for kind in kinds:
        if kind in ERROR_KINDS:
            raise ConfigError(
                f"config: check.ignore: {kind!r} is an error kind; errors cannot be ignored, only fixed"
            )
        if kind not in WARNING_KINDS:
            raise ConfigError(
                f"config: check.ignore: unknown warning kind {kind!r}; valid: {', '.join(sorted(WARNING_KINDS))}"
            )


def _kind_or_none(model_name: str) -> str | None:
    try:
        return kind_of(model_name)
    except UserError:  # a missing folder is reported when the model is loaded, with its own message
        return None


def _message(err: Any) -> str:
    """pydantic's message for one error, without the "Value error, " its validators' own messages carry."""
    return str(err["msg"]).removeprefix("Value error, ")


def _plugin_params(value: Any, params_for: Any, section: str, default: str) -> PluginParams:
    if isinstance(value, PluginParams):
        value = value.model_dump()
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise ConfigError(f"config: {section} must be a name or a mapping with a `name`")
    value = {"name": default, **value}
    params = params_for(value["name"])
    try:
        return params.model_validate(value)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join([section, *map(str, err["loc"])])
            if err["type"] == "extra_forbidden":
                valid = ", ".join(params.model_fields)
                hint = _did_you_mean(str(err["loc"][-1]), list(params.model_fields))
                problems.append(
                    f"unknown key {key!r} for {section} {value['name']!r}{hint}; valid keys: {valid}"
                )
            else:
                problems.append(f"{key}: {_message(err)} (got {err.get('input')!r})")
        raise ConfigError("config: " + "; ".join(problems)) from None


# --- loading ------------------------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.epochs=5` -> (["train", "epochs"], 5). The value is read as YAML (numbers, true, null)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not KEY=VALUE (e.g. train.epochs=5)")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {text!r}: bad key {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return parts, value


def set_dotted(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if isinstance(child, str) and part in ("task", "method"):
            child = {"name": child}
        if child is None:
            child = {}
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {'.'.join(path)}: {part} is not a section")
        node[part] = child
        node = child
    node[path[-1]] = value


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config ({exc})") from None
    try:
        tree = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"{Path(path).name}{where}: not valid YAML ({getattr(exc, 'problem', exc)})"
        ) from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{Path(path).name}: a config is a mapping of sections (task, model, data, ...)")
    return tree


def build_config(tree: dict[str, Any], overrides: list[str] = ()) -> RunConfig:
    """Apply dotted overrides to a config tree and validate it into a RunConfig."""
    tree = copy.deepcopy(tree)
    for text in overrides:
        path, value = parse_override(text)
        set_dotted(tree, path, value)
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None


def load_config(path: Path | None, overrides: list[str] = ()) -> RunConfig:
    return build_config(read_yaml(path) if path else {}, overrides)


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def _did_you_mean(key: str, valid: list[str]) -> str:
    """' (did you mean text_column?)' for a key one typo away from a valid one, else ''."""
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc) or "config"
        if err["type"] == "extra_forbidden":
            valid = _valid_keys(loc[:-1])
            lines.append(
                f"unknown key {key!r}{_did_you_mean(loc[-1], valid)}; valid keys: {', '.join(valid)}"
            )
        else:
            lines.append(f"{key}: {_message(err)} (got {err.get('input')!r})")
    return "config: " + "; ".join(lines)


def _valid_keys(section: list[str]) -> list[str]:
    model: Any = RunConfig
    for part in section:
        field = model.model_fields.get(part)
        if field is None:
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))
