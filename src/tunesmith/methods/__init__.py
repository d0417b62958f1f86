"""Methods: how a loaded model is made trainable, saved and reloaded. One file per method."""

from importlib import import_module

from tunesmith.methods.base import Method, count_parameters
from tunesmith.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")

METHOD_MODULES = (
    *("adalora", "adapter", "dora", "freeze", "full", "ia3", "loha", "lokr", "lora"),
    *("prefix", "prompt", "qlora"),
)
"""Each module registers its method on import; a new method is one file and one name here."""
for _module in METHOD_MODULES:
    import_module(f"tunesmith.methods.{_module}")

__all__ = ["METHODS", "Method", "count_parameters"]
