"""Predict: texts from arguments, a file or stdin -> ranked labels with probabilities (classification) or
generated answers (chat, summarization, QA), in batches, with the prompts rendered exactly as in training."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

from tunesmith.data.readers import read_records, require_field, text_lines
from tunesmith.errors import DataError, UserError
from tunesmith.tasks.classification import LabelledText


def read_texts(
    texts: list[str] | None, file: Path | None, stdin: TextIO | None, text_column: str = "text"
) -> list[str]:
    if file is not None:
        if texts:
            raise UserError("give texts or --file, not both")
        if file.suffix.lower() == ".txt":
            if not file.is_file():
                raise DataError(file, None, "file not found")
            return [line.rstrip("\r\n") for line in text_lines(file) if line.strip()]
        out = []
        for record in read_records(file):
            value = require_field(record, text_column)
            if not isinstance(value, str) or not value.strip():
                raise record.error(f'empty or non-text value in "{text_column}"')
            out.append(value)
        return out
    if texts and texts != ["-"]:
        return texts
    if stdin is None or stdin.isatty():
        raise UserError("no input: give texts, --file FILE, or pipe lines into stdin")
    return [line.rstrip("\n") for line in stdin if line.strip()]


def predict_texts(trained: Any, texts: list[str], batch_size: int = 64) -> list[list[tuple[str, float]]]:
    """For each text, (label, probability) pairs from most to least likely."""
    if not texts:
        return []
    task = trained.task
    examples = [LabelledText(text, None, Path("<input>"), i + 1) for i, text in enumerate(texts)]
    features = task.encode(examples, trained.tokenizer)
    probs = task.probabilities(trained.model, features, batch_size, trained.pad_id)
    ranked = probs.sort(dim=-1, descending=True)
    return [
        [(task.labels[j], float(p)) for p, j in zip(values.tolist(), indices.tolist(), strict=True)]
        for values, indices in zip(ranked.values, ranked.indices, strict=True)
    ]


def generate_answers(trained: Any, texts: list[str], batch_size: int = 16) -> list[str]:
    """For each text (a user message for chat, a document for summarization), the model's answer."""
    task = trained.task
    prompts = [task.prompt_ids(task.messages_for_text(text)) for text in texts]
    return task.generate_texts(trained.model, prompts, batch_size, trained.pad_id)


def answer_questions(trained: Any, file: Path) -> list[tuple[str, str]]:
    """QA runs: (question, answer) for each record of a file with context and question fields."""
    from tunesmith.data.readers import NO_ROWS
    from tunesmith.data.squad import qa_examples
    from tunesmith.errors import DataError
    from tunesmith.tasks.qa_extractive import ExtractiveQA

    task, p = trained.task, trained.task.params
    examples = list(
        qa_examples(file, "auto", p.context_column, p.question_column, p.answers_column, need_answers=False)
    )
    if not examples:
        raise DataError(file, None, NO_ROWS, kind="no_rows")
    if isinstance(task, ExtractiveQA):
        features = task.encode(examples, trained.tokenizer)
        answers = task.evaluate(trained.model, features, 32, trained.pad_id).predictions
    else:
        prompts = [task.prompt_ids(task.prompt_messages(task.fitted(ex)[0])) for ex in examples]
        answers = task.generate_texts(trained.model, prompts, 16, trained.pad_id)
    return [(ex.question, answer) for ex, answer in zip(examples, answers, strict=True)]
