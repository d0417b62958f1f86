"""Text normalisation shared by the checks: two texts that differ only in case, punctuation or spacing are
"near duplicates", and words are what vocabulary and prefix measures count."""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters, digits, underscore); punctuation and spacing are dropped."""
    return _WORD.findall(text.casefold())
