"""Summarization: a document column and a summary column (CSV, JSONL, Parquet) -> a model that writes the
summary. With a decoder the document goes into a user turn after `instruction`, rendered by the chat template
(the same prompt at inference); with an encoder-decoder (T5, BART) `instruction` and the document are the
encoder input. Scored with ROUGE-1/2/L (best checkpoint on ROUGE-L)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tunesmith.data.checks.view import ExampleView
from tunesmith.data.readers import (
    FileFormat,
    OnError,
    Record,
    parse_each,
    read_records,
    require_columns,
    require_field,
)
from tunesmith.evaluation.text_metrics import rouge_per_example
from tunesmith.tasks import TASKS
from tunesmith.tasks.generative import GenerativeParams, GenerativeTask


class SummarizationParams(GenerativeParams):
    name: Literal["summarization"] = "summarization"
    text_column: str = "document"
    """Column or field holding the document."""
    summary_column: str = "summary"
    """Column or field holding the reference summary (not needed for `predict`)."""
    instruction: str = "Summarize the following text in one line."
    """Put before the document in the prompt."""
    system_prompt: str | None = None
    """An optional system turn for decoder models."""


@dataclass(frozen=True)
class Document:
    text: str
    summary: str | None
    path: Path
    line: int
    unit: str = "line"


@TASKS.register("summarization")
class Summarization(GenerativeTask):
    name = "summarization"
    Params = SummarizationParams
    model_kinds = ("causal", "seq2seq")
    headline = ("loss", "perplexity", "rouge1", "rouge2", "rougeL")
    source_field = "text"
    source_name = "document"
    params: SummarizationParams

    def examples(
        self, path: Path, fmt: str | FileFormat, on_error: OnError | None = None
    ) -> Iterator[Document]:
        columns = {
            "task.text_column": self.params.text_column,
            "task.summary_column": self.params.summary_column,
        }
        return parse_each(
            require_columns(read_records(path, fmt, on_error), columns), self._example, on_error
        )

    def _example(self, record: Record) -> Document:
        text = require_field(record, self.params.text_column)
        summary = require_field(record, self.params.summary_column)
        for column, value in ((self.params.text_column, text), (self.params.summary_column, summary)):
            if not isinstance(value, str) or not value.strip():
                raise record.error(f'empty or non-text value in "{column}"', "empty")
        return Document(text.strip(), summary.strip(), record.path, record.line, record.unit)

    def view(self, example: Document) -> ExampleView:
        return ExampleView(example.path, example.line, example.unit, example.text, example.summary, False)

    def prompt_for(self, document: str) -> list[dict[str, str]]:
        messages = [{"role": "user", "content": f"{self.params.instruction}\n\n{document}"}]
        if self.params.system_prompt:
            messages.insert(0, {"role": "system", "content": self.params.system_prompt})
        return messages

    def messages_for_text(self, text: str) -> list[dict[str, str]]:
        """A document to summarise (predict, serve), shortened as in training when it does not fit."""
        fitted, _ = self.fitted(Document(text, "", Path("<input>"), 1))
        return self.prompt_for(fitted.text)

    def turns(self, example: Any) -> list[dict[str, str]]:
        return [*self.prompt_for(example.text), {"role": "assistant", "content": example.summary or ""}]

    def example_scores(
        self, outputs: Sequence[str], references: Sequence[list[str]]
    ) -> dict[str, list[float]]:
        return rouge_per_example(outputs, [refs[0] for refs in references])
