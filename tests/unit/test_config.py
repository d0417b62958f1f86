from pathlib import Path

import pytest
import yaml

from tunesmith.config import build_config, dump_config, load_config, parse_override, read_yaml
from tunesmith.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_complete_and_typed():
    cfg = build_config({})
    assert cfg.task.name == "classification" and cfg.task.text_column == "text"
    assert cfg.method.name == "lora" and cfg.method.rank == 8
    assert cfg.train.learning_rate == 2e-3  # the LoRA rate measured for classification, resolved


def test_overrides_are_parsed_as_yaml_values():
    cfg = build_config(
        {}, ["train.epochs=5", "method.rank=16", "train.eval_every_steps=null", "data.train=x.csv"]
    )
    assert cfg.train.epochs == 5 and cfg.method.rank == 16 and cfg.train.eval_every_steps is None
    assert cfg.data.train == Path("x.csv")
    assert parse_override("model.name=minilm") == (["model", "name"], "minilm")


def test_method_default_learning_rate_follows_method():
    assert build_config({"method": "full"}).train.learning_rate == 5e-5
    assert build_config({"method": {"name": "freeze", "layers": 1}}).train.learning_rate == 1e-4
    assert build_config({"method": "full", "train": {"learning_rate": 1e-3}}).train.learning_rate == 1e-3


def test_lora_takes_its_measured_classification_rate_and_its_default_elsewhere():
    assert build_config({"method": "lora"}).train.learning_rate == 2e-3
    assert build_config({"method": "lora", "task": "chat"}).train.learning_rate == 5e-4
    assert build_config({"method": "lora", "train": {"learning_rate": 1e-4}}).train.learning_rate == 1e-4


def test_lora_dropout_is_measured_per_task_and_what_the_user_writes_wins():
    assert build_config({"method": "lora"}).method.dropout == 0.0
    assert build_config({"method": "lora", "task": "chat"}).method.dropout == 0.1
    assert build_config({"method": "lora"}, ["method.dropout=0.1"]).method.dropout == 0.1
    # a run folder's config.yaml (written by dump_config) names the value, so a resume trains as it began
    assert "dropout: 0.0" in dump_config(build_config({"method": "lora"}))


def test_unknown_key_is_rejected_with_the_valid_names():
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'train.epoch' \(did you mean epochs\?\); valid keys: epochs, batch_size",
    ):
        build_config({}, ["train.epoch=5"])
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'modle' \(did you mean model\?\); valid keys: task, model, data, method",
    ):
        build_config({"modle": {"name": "x"}})


def test_method_keys_belong_to_their_method():
    with pytest.raises(ConfigError, match=r"unknown key 'method.rank' for method 'full'; valid keys: name"):
        build_config({"method": {"name": "full", "rank": 4}})
    with pytest.raises(
        ConfigError,
        match="valid methods: adalora, adapter, dora, freeze, full, ia3, loha, lokr, lora, prefix, prompt, qlora",
    ):
        build_config({"method": "lorra"})


def test_bad_values_name_the_key():
    with pytest.raises(ConfigError, match=r"train.epochs: .*greater than 0"):
        build_config({}, ["train.epochs=0"])
    with pytest.raises(ConfigError, match=r"method.rank"):
        build_config({}, ["method.rank=many"])


def test_yaml_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: 3\n  batch_size: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml line \d+: not valid YAML"):
        read_yaml(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        read_yaml(tmp_path / "missing.yaml")


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_parses(path):
    cfg = load_config(path)
    assert cfg.output_dir is not None
    assert build_config(__import__("yaml").safe_load(dump_config(cfg))) == cfg  # round trip


@pytest.mark.parametrize(
    ("task", "model", "metric", "max_length"),
    [
        ("classification", "minilm", "macro_f1", None),  # chosen from the data when it is checked
        ("chat", "smollm2-135m-instruct", "rougeL", 512),
        ("summarization", "smollm2-135m-instruct", "rougeL", 512),
        ("qa", "minilm", "f1", 512),
    ],
)
def test_task_fills_its_own_defaults_and_the_saved_config_says_so(task, model, metric, max_length):
    cfg = build_config({"task": task})
    assert (cfg.model.name, cfg.train.metric, cfg.model.max_length) == (model, metric, max_length)
    assert cfg.train.group_by_length is (task == "classification")
    explicit = build_config(
        {"task": task, "model": {"name": "x", "max_length": 64}, "train": {"metric": "loss"}}
    )
    assert (explicit.model.name, explicit.train.metric, explicit.model.max_length) == ("x", "loss", 64)
    again = build_config(yaml.safe_load(dump_config(cfg)))
    assert again == cfg


def test_metric_of_generated_text_needs_generation_during_validation():
    quiet = {"task": {"name": "chat", "eval_generate_examples": 0}}
    assert build_config(quiet).train.metric == "loss"
    assert build_config({"task": {"name": "chat"}}).train.metric == "rougeL"
    with pytest.raises(
        ConfigError, match=r"train.metric bleu is scored on generated text.*eval_generate_examples"
    ):
        build_config({**quiet, "train": {"metric": "bleu"}})
    extractive = {"task": {"name": "qa", "eval_generate_examples": 0}, "model": {"name": "minilm"}}
    assert build_config(extractive).train.metric == "f1"  # span prediction needs no generation


def test_the_estimate_runs_for_long_runs_for_a_memory_budget_and_when_asked():
    from tunesmith.planning.estimate import WORTH_STEPS, worth_estimating
    from tunesmith.sections import TrainConfig

    auto = TrainConfig()
    assert auto.estimate == "auto"
    assert not worth_estimating(auto, WORTH_STEPS - 1) and worth_estimating(auto, WORTH_STEPS)
    assert worth_estimating(auto.model_copy(update={"memory_budget": "1GB"}), 1)
    assert worth_estimating(auto.model_copy(update={"estimate": "always"}), 1)
    assert not worth_estimating(auto.model_copy(update={"estimate": "never"}), 10 * WORTH_STEPS)
    # a budget is checked against the estimate, so it measures even when told never
    assert worth_estimating(auto.model_copy(update={"estimate": "never", "memory_budget": "1GB"}), 1)


def test_attention_dropout_is_the_tasks_unless_set_and_reaches_the_loaded_model(minilm_dir):
    from tunesmith.models.catalog import resolve_model
    from tunesmith.models.loader import config_overrides
    from tunesmith.models.pooled import PooledClassifierLoader
    from tunesmith.tasks import TASKS

    for task in ("classification", "chat", "qa"):
        assert (
            build_config({"task": task}).model.attention_dropout == TASKS.get(task).default_attention_dropout
        )
    assert build_config({}, ["model.attention_dropout=0.2"]).model.attention_dropout == 0.2
    with pytest.raises(ConfigError, match="attention_dropout"):
        build_config({}, ["model.attention_dropout=1.5"])

    resolved = resolve_model(str(minilm_dir))
    kept = build_config({}, ["model.attention_dropout=model"]).model
    assert config_overrides(resolved, kept) == {}  # config.json's 0.1 stays
    zero = build_config({}, ["model.attention_dropout=0"]).model
    overrides = config_overrides(resolved, zero)
    assert overrides == {"attention_probs_dropout_prob": 0}  # BERT's key only: the model has no other
    model = PooledClassifierLoader.from_pretrained(str(minilm_dir), num_labels=3, **overrides)
    rates = {m.dropout.p for m in model.modules() if type(m).__name__.endswith("SelfAttention")}
    assert rates == {0.0} and model.config.num_labels == 3
