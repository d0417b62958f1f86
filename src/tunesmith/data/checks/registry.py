"""The registered checks. A new check is one file with a `Check` subclass and its register line."""

from __future__ import annotations

from tunesmith.data.checks.base import Check
from tunesmith.registry import Registry

CHECKS: Registry[type[Check]] = Registry("data check")

ERROR_KINDS = frozenset(
    {
        "unreadable",
        "encoding",
        "malformed",
        "missing_field",
        "empty",
        "invalid",
        "chat_structure",
        "preference_structure",
        "answer_cut_off",
        "no_rows",
        "labels",
    }
)
"""Kinds of errors (DataError.kind): records or files that cannot be trained on."""

from tunesmith.data.checks import (  # noqa: E402,F401  (each registers itself)
    duplicates,
    label_sets,
    labels,
    lengths,
    narrowness,
    pairs,
    personal_data,
    retrieval,
    short,
    shortcuts,
    targets,
)

WARNING_KINDS = frozenset(kind for name in CHECKS.names() for kind in CHECKS.get(name).kinds)
