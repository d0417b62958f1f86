"""What `tunesmith --version` and the help say, checked against what the code does."""

import re
from importlib.metadata import version

import pytest

from tunesmith import cli
from tunesmith.config import build_config
from tunesmith.methods import METHODS
from tunesmith.tasks import TASKS


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"tunesmith {version('tunesmith')}\n"


def test_train_help_states_the_defaults_the_config_applies():
    config = build_config({}, [])
    doc = " ".join(cli.train.__doc__.split())
    assert f"{config.train.epochs} epochs" in doc
    assert f"batch {config.train.batch_size}" in doc
    rates = re.search(r"lora: (\S+) for classification, (\S+) for the others", doc)
    lora = METHODS.get("lora")
    assert float(rates[1]) == lora.learning_rate_for("classification") == config.train.learning_rate
    assert float(rates[2]) == lora.learning_rate_for("chat") == lora.learning_rate_for("summarization")
    assert config.model.max_length is None and config.train.keep == "better"
    assert config.task.name == "classification" and config.method.name == "lora"
    assert "[default: classification]" in cli.TaskName.__metadata__[0].help
    assert cli.METHOD_HELP.endswith("[default: lora]")
    model_help = " ".join(cli.ModelName.__metadata__[0].help.split())
    for task in TASKS.names():
        assert f"{TASKS.get(task).default_model}" in model_help


def test_tables_are_not_cut_to_80_columns_off_a_terminal(monkeypatch, capsys):
    monkeypatch.delenv("COLUMNS", raising=False)
    console = cli.make_console()
    console.print("x" * 300)
    assert capsys.readouterr().out == "x" * 300 + "\n"
