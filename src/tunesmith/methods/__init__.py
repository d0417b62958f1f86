"""Methods: how a loaded model is made trainable, saved and reloaded. One file per method."""

from tunesmith.methods.base import Method, count_parameters
from tunesmith.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")

from tunesmith.methods import dora, freeze, full, ia3, loha, lokr, lora  # noqa: E402,F401  (each registers itself)

__all__ = ["METHODS", "Method", "count_parameters"]
