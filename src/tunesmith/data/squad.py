"""SQuAD-style question answering records: a context, a question and the accepted answers, each located in the
context by character offset.

Accepted shapes of the answer (per record):
    {"answers": {"text": ["..."], "answer_start": [17]}}     SQuAD / Hugging Face datasets
    {"answers": [{"text": "...", "answer_start": 17}]}       SQuAD JSON
    {"answer": "...", "answer_start": 17}                    flat; answer_start optional
An answer without an offset is located in the context (its first occurrence); an offset that does not point
at the answer text, or answer text that is not in the context, is an error naming the line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.data.readers import (
    FileFormat,
    OnError,
    Record,
    parse_each,
    read_records,
    require_columns,
    require_field,
)


@dataclass(frozen=True)
class QAExample:
    context: str
    question: str
    answers: tuple[str, ...]
    starts: tuple[int, ...]
    path: Path
    line: int
    unit: str = "line"


def qa_examples(
    path: Path,
    fmt: str | FileFormat,
    context_column: str,
    question_column: str,
    answers_column: str,
    need_answers: bool = True,
    on_error: OnError | None = None,
) -> Iterator[QAExample]:
    """QA examples streamed from a file; see `read_records` for `on_error`."""

    def parse(record: Record) -> QAExample:
        context = _text(record, require_field(record, context_column), context_column)
        question = _text(record, require_field(record, question_column), question_column)
        answers, starts = _answers(record, context, answers_column, need_answers)
        return QAExample(context, question, answers, starts, record.path, record.line, record.unit)

    columns = {"task.context_column": context_column, "task.question_column": question_column}
    return parse_each(require_columns(read_records(path, fmt, on_error), columns), parse, on_error)


def _text(record: Record, value: Any, column: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise record.error(f'empty or non-text value in "{column}"', "empty")
    return value


def _answers(
    record: Record, context: str, column: str, need: bool
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    fields = record.fields
    if column in fields:
        raw = fields[column]
    elif "answer" in fields:
        raw = [{"text": fields["answer"], "answer_start": fields.get("answer_start")}]
    elif need:
        raise record.error(
            f'missing field "{column}" (or "answer"); fields found: {", ".join(map(str, fields))}'
        )
    else:
        return (), ()
    if isinstance(raw, dict):
        texts, starts = raw.get("text"), raw.get("answer_start")
        if not isinstance(texts, list):
            raise record.error(f'"{column}.text" must be a list of answers')
        starts = starts if isinstance(starts, list) else [None] * len(texts)
        if len(starts) != len(texts):
            raise record.error(f'"{column}": {len(texts)} answer texts but {len(starts)} answer_start values')
        raw = [{"text": t, "answer_start": s} for t, s in zip(texts, starts, strict=True)]
    if isinstance(raw, str):
        raw = [{"text": raw}]
    if not isinstance(raw, list) or not raw:
        raise record.error(f'"{column}" must hold at least one answer')
    texts_out, starts_out = [], []
    for i, answer in enumerate(raw, start=1):
        if (
            not isinstance(answer, dict)
            or not isinstance(answer.get("text"), str)
            or not answer["text"].strip()
        ):
            raise record.error(f"answer {i} has no text")
        text, start = answer["text"], answer.get("answer_start")
        if start is None:
            start = context.find(text)
            if start < 0:
                raise record.error(f"answer {i} {text!r} does not occur in the context")
        elif (
            not isinstance(start, int)
            or isinstance(start, bool)
            or context[start : start + len(text)] != text
        ):
            raise record.error(
                f"answer {i}: answer_start={start!r} does not point at {text!r} in the context"
            )
        texts_out.append(text)
        starts_out.append(start)
    return tuple(texts_out), tuple(starts_out)
