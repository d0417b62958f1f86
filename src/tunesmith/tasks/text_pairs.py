"""One text or a pair of texts: what the encoder tasks that read text (classification, multi-label,
regression) share about their input.

With `task.text_pair_column` an example is two texts (a ticket and a known issue, a claim and a policy
clause, a query and a passage): both are encoded together as the model was pre-trained to read two segments,
`[CLS] text [SEP] pair [SEP]` with token type ids where the model has them, and cut longest first
(`truncation="longest_first"`: tokens come off the longer side until the pair fits, so neither side is lost
whole). The model is then a cross-encoder (with regression or a two-class label, a reranker for retrieval).
The data check and the drift report see the pair as one text, the two joined by a line break (PAIR_JOIN), so
a repeated pair is a duplicate and a pair seen in training and test is leakage, while the same first text
with another second one is neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tunesmith.data.padding import pad
from tunesmith.data.readers import Record, require_field
from tunesmith.errors import UserError
from tunesmith.plugin import PluginParams

PAIR_JOIN = "\n"
"""How the two texts of a pair are joined where one text is wanted (the data check, drift, retune's keys)."""
PAIR_ARGUMENT = "\t"
"""What separates the two texts of a pair in `tunesmith predict` arguments and lines."""


class TextInputParams(PluginParams):
    """The input keys of the tasks that read one text or a pair."""

    text_column: str = "text"
    """Column (CSV/Parquet) or field (JSONL) holding the text."""
    text_pair_column: str | None = None
    """A second text read together with the first (module docstring): e.g. `candidate` for ticket/known-issue
    matching; empty: one text an example."""


def read_text(record: Record, column: str) -> str:
    """The record's text in `column`: a non-empty string, or an error naming its line."""
    text = require_field(record, column)
    if not isinstance(text, str):
        raise record.error(f'text in "{column}" is not a string (got {type(text).__name__})', "empty")
    if not text.strip():
        raise record.error(f'empty text in "{column}"', "empty")
    return text


def joined(text: str, pair: str | None) -> str:
    """The example's input as one text (the pair joined by PAIR_JOIN)."""
    return text if pair is None else f"{text}{PAIR_JOIN}{pair}"


def split_input(value: Any, pairs: bool) -> tuple[str, str | None]:
    """A prediction input as (text, pair): a pair run takes a (text, pair) sequence, or one string with the
    two separated by a tab; a single-text run takes a string."""
    if not pairs:
        return str(value), None
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return str(value[0]), str(value[1])
    if isinstance(value, str) and PAIR_ARGUMENT in value:
        text, pair = value.split(PAIR_ARGUMENT, 1)
        return text, pair
    raise UserError(
        f"this run reads pairs of texts: give each as TEXT<tab>PAIR (or --file with both columns); got {value!r}"
    )


def tokenize(
    tokenizer: Any, texts: Sequence[str], pairs: Sequence[str] | None, max_length: int | None
) -> list[dict[str, Any]]:
    """Unpadded features ({input_ids, length}, and token_type_ids for pairs where the tokenizer gives them):
    single texts cut at max_length, pairs cut longest first."""
    if pairs is None:
        ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
        return [{"input_ids": row, "length": len(row)} for row in ids]
    enc = tokenizer(list(texts), list(pairs), truncation="longest_first", max_length=max_length)
    types = enc.get("token_type_ids")
    out = []
    for i, row in enumerate(enc["input_ids"]):
        feature: dict[str, Any] = {"input_ids": row, "length": len(row)}
        if types is not None:
            feature["token_type_ids"] = types[i]
        out.append(feature)
    return out


def collate_inputs(features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """input_ids and attention_mask padded to the batch's longest, and token_type_ids where features have
    them (padding is segment 0, as tokenizers pad it)."""
    ids, mask = pad([f["input_ids"] for f in features], pad_id)
    batch = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in features[0]:
        batch["token_type_ids"] = pad([f["token_type_ids"] for f in features], 0)[0]
    return batch


MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What of a collated batch the model takes (labels stay out)."""
    return {k: batch[k] for k in MODEL_INPUTS if k in batch}
