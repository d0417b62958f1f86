import pytest

from tunesmith.errors import ConfigError
from tunesmith.methods import METHODS
from tunesmith.registry import Registry
from tunesmith.tasks import TASKS


def test_register_get_and_names():
    reg: Registry[int] = Registry("thing")
    reg.register("b")(2)
    reg.register("a")(1)
    assert reg.get("a") == 1
    assert reg.names() == ["a", "b"]
    assert "a" in reg and "c" not in reg


def test_duplicate_name_is_refused():
    reg: Registry[int] = Registry("thing")
    reg.register("a")(1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(2)


def test_unknown_name_lists_valid_ones():
    with pytest.raises(
        ConfigError,
        match="unknown method 'qlora2'; valid methods: adalora, adapter, dora, freeze, full, ia3, loha, lokr, lora, prefix, prompt, qlora",
    ):
        METHODS.get("qlora2")
    with pytest.raises(
        ConfigError,
        match="valid tasks: chat, classification, embedding, multilabel, preference, qa, regression, summarization, tokens",
    ):
        TASKS.get("nope")
