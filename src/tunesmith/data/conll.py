"""CoNLL-style files (`.conll`): one word a line, its tag in the last column (CoNLL-2003 has four: word, POS,
chunk, entity; two columns is the usual minimum), a blank line between sentences, `-DOCSTART-` lines
skipped. Each sentence is one record, {"tokens": [...], "tags": [...]}, at the line of its first word."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from tunesmith.errors import DataError

WORDS, TAGS = "tokens", "tags"
"""The fields a sentence's record has (what task.words_column and task.tags_column name by default)."""


def read_conll(
    path: Path, lines: Iterator[str], on_error: Callable[[DataError], None]
) -> Iterator[tuple[int, dict[str, list[str]]]]:
    """Sentences of a CoNLL file: (the line of its first word, its fields); a line with one column is an error
    of its line."""
    words: list[str] = []
    tags: list[str] = []
    first = 0
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("-DOCSTART-"):
            if words:
                yield first, {WORDS: words, TAGS: tags}
            words, tags = [], []
            continue
        columns = line.split()
        if len(columns) < 2:
            on_error(
                DataError(path, number, f"{line!r}: a word and its tag needed (a CoNLL line has 2+ columns)")
            )
            continue
        if not words:
            first = number
        words.append(columns[0])
        tags.append(columns[-1])
    if words:
        yield first, {WORDS: words, TAGS: tags}
