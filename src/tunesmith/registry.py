"""One small registry for every plugin family (tasks, methods): register, get, names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from tunesmith.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to plugins. A duplicate name is refused; an unknown name lists the valid ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            return item

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            valid = ", ".join(self.names())
            kinds = self.kind + ("es" if self.kind.endswith("s") else "s")
            raise ConfigError(f"unknown {self.kind} {name!r}; valid {kinds}: {valid}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
