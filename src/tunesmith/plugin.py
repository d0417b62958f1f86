"""Typed parameters shared by every plugin family: each plugin parses its own keys and rejects unknown ones."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section: unknown keys are an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class PluginParams(Section):
    """Parameters of one plugin (a task or a method); `name` picks the plugin in its registry."""

    name: str
