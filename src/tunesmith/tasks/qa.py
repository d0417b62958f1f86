"""Question answering on SQuAD-style data (context, question, answers; see data/squad.py).

On an encoder (e.g. `minilm`) the task is extractive: a span head marks where the answer starts and ends in
the context (tasks/qa_extractive.py). On a decoder it is generative: the model reads the context and question
in a user turn and writes the answer. Both are scored with SQuAD exact match and token F1 against every
accepted answer (best checkpoint on F1).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TextIO

import torch
from pydantic import Field

from tunesmith.data.checks.view import ExampleView
from tunesmith.data.readers import NO_ROWS, FileFormat, OnError
from tunesmith.data.squad import QAExample, qa_examples
from tunesmith.errors import DataError, UserError
from tunesmith.evaluation.text_metrics import squad_per_example
from tunesmith.tasks import TASKS
from tunesmith.tasks.base import Task
from tunesmith.tasks.generative import GenerativeParams, GenerativeTask

NEEDS_CONTEXT = "a QA run answers from a context: give --file FILE with context and question fields"


class QAParams(GenerativeParams):
    name: Literal["qa"] = "qa"
    context_column: str = "context"
    question_column: str = "question"
    answers_column: str = "answers"
    """SQuAD `answers` ({text: [...], answer_start: [...]}), a list of {text, answer_start}, or a flat
    `answer` (+ optional `answer_start`)."""
    instruction: str = "Answer the question with a short phrase from the text."
    """Generative QA: put after the question in the prompt."""
    stride: int = Field(128, ge=0)
    """Extractive QA: tokens shared by consecutive windows of a context longer than model.max_length."""
    max_answer_tokens: int = Field(30, gt=0)
    """Extractive QA: longest span considered as an answer."""


@TASKS.register("qa")
class GenerativeQA(GenerativeTask):
    name = "qa"
    Params = QAParams
    model_kinds = ("causal", "seq2seq")
    default_metric = "f1"
    default_model = "minilm"
    headline = ("loss", "perplexity", "exact_match", "f1")
    source_field = "context"
    source_name = "context"
    params: QAParams

    @classmethod
    def variant_for(cls, kind: str | None) -> type[Task]:
        if kind == "encoder":
            # here: qa_extractive subclasses GenerativeQA, so it imports this module, not the other way round
            from tunesmith.tasks.qa_extractive import ExtractiveQA

            return ExtractiveQA
        return cls

    def examples(
        self, path: Path, fmt: str | FileFormat, on_error: OnError | None = None
    ) -> Iterator[QAExample]:
        p = self.params
        return qa_examples(
            path, fmt, p.context_column, p.question_column, p.answers_column, on_error=on_error
        )

    def view(self, example: QAExample) -> ExampleView:
        text = f"{example.question}\n{example.context}"
        return ExampleView(example.path, example.line, example.unit, text, example.answers[0], False)

    def prompt_for(self, context: str, question: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": f"{context}\n\nQuestion: {question}\n{self.params.instruction}"}]

    def messages_for_text(self, text: str) -> list[dict[str, str]]:
        raise UserError(NEEDS_CONTEXT)

    def sample_messages(
        self, texts: Sequence[str], questions: Sequence[tuple[str, str]]
    ) -> list[list[dict[str, str]]]:
        return [self.prompt_for(context, question) for question, context in questions]

    def prediction_inputs(
        self, texts: list[str] | None, file: Path | None, stdin: TextIO | None
    ) -> list[Any]:
        """Records with a context and a question (answers not needed), from --file."""
        if file is None:
            raise UserError(NEEDS_CONTEXT)
        p = self.params
        examples = list(
            qa_examples(
                file, "auto", p.context_column, p.question_column, p.answers_column, need_answers=False
            )
        )
        if not examples:
            raise DataError(file, None, NO_ROWS, kind="no_rows")
        return examples

    def predict(self, model: torch.nn.Module, inputs: list[Any], pad_id: int) -> list[dict[str, Any]]:
        prompts = [self.prompt_ids(self.prompt_messages(self.fitted(ex)[0])) for ex in inputs]
        answers = self.generate_texts(model, prompts, 16, pad_id)
        return self.answered(inputs, answers)

    @staticmethod
    def answered(inputs: list[Any], answers: Sequence[str]) -> list[dict[str, Any]]:
        return [{"question": ex.question, "answer": a} for ex, a in zip(inputs, answers, strict=True)]

    def prediction_line(self, row: dict[str, Any], top: int) -> str:
        return f"{row['answer']}\t{row['question']}"

    def turns(self, example: Any) -> list[dict[str, str]]:
        return [
            *self.prompt_for(example.context, example.question),
            {"role": "assistant", "content": example.answers[0] if example.answers else ""},
        ]

    def references(self, example: Any) -> list[str]:
        return list(example.answers)

    def example_scores(
        self, outputs: Sequence[str], references: Sequence[list[str]]
    ) -> dict[str, list[float]]:
        return squad_per_example(outputs, references)
