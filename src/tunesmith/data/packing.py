"""Batches for causal language models: packed (no padding) or padded.

Packing puts several examples into one row, one after another, each with position ids counting from 0. With
no attention mask, transformers reads those restarting position ids as sequence boundaries and builds a
block-diagonal causal mask (`masking_utils.find_packed_sequence_indices`, used by the eager and SDPA attention
of every model built on the shared masking code, e.g. Llama, Qwen, Gemma): a token attends only to earlier
tokens of its own example. This holds only without a KV cache: the forward pass must get `use_cache=False`
(transformers skips the detection when a cache exists), which the tasks' loss always passes.
tests/unit/test_packing.py checks this on the real model: the logits of a packed row equal those of each
example run alone, and the packed loss equals the padded one. Models that do not take `position_ids` (or build their own mask) must
not be packed: `packing_supported` says which.

The first label of every example is ignored (-100): nothing predicts an example's first token, and in a
packed row the previous example's last token must not be trained to predict it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tunesmith.data.padding import pad

IGNORE = -100


def rows_first_fit(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Group example indices into rows of at most `capacity` tokens (first fit, longest first). An example
    longer than `capacity` gets a row of its own."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda j: -lengths[j]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(capacity - lengths[i])
    return rows


def collate_packed(
    features: Sequence[dict[str, Any]], capacity: int, pad_id: int, *, one_row: bool = False
) -> dict[str, torch.Tensor]:
    """input_ids, labels and position_ids of packed rows; a row's unused tail is one padding segment whose
    labels are ignored (it forms its own block, so no real token attends to it).

    `one_row`: every example in one row, in order, no padding, with `cu_seq_lens_q` (where each example starts,
    then the row's end) for attention that runs example by example (models/segment_attention.py) and an
    all-ones attention_mask; a dense mask over such a row would grow with the square of the whole batch."""
    lengths = [f["length"] for f in features]
    rows = [list(range(len(features)))] if one_row else rows_first_fit(lengths, capacity)
    width = max(sum(features[i]["length"] for i in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            f = features[i]
            n = f["length"]
            ids[r, at : at + n] = torch.tensor(f["input_ids"])
            labels[r, at : at + n] = torch.tensor(f["labels"])
            labels[r, at] = IGNORE
            positions[r, at : at + n] = torch.arange(n)
            at += n
        positions[r, at:] = torch.arange(width - at)
    batch = {"input_ids": ids, "labels": labels, "position_ids": positions}
    if one_row:
        batch["cu_seq_lens_q"] = torch.tensor([0, *lengths], dtype=torch.int32).cumsum(0, dtype=torch.int32)
        # an all-ones mask: transformers then skips its packed-sequence detection, which would build a dense
        # (tokens x tokens) block mask that segment attention never reads (256 MB for 8 examples of 2,048)
        batch["attention_mask"] = torch.ones_like(ids)
    return batch


def collate_padded(features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """input_ids, labels and attention_mask, right-padded to the batch's longest example."""
    ids, mask = pad([f["input_ids"] for f in features], pad_id)
    labels, _ = pad([f["labels"] for f in features], IGNORE)
    labels[:, 0] = IGNORE
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3")
"""Attention kernels that take packed rows natively (per-example lengths from the position ids, no dense
mask). With eager or SDPA attention a packed row gets a dense block-diagonal mask over the whole row, which
costs more than padding a batch of similar lengths but much less than padding a random batch."""


SEGMENT_ATTENTION = "tunesmith_segments"
"""The name tunesmith's attention for one-row packed batches (models/segment_attention.py) is registered under
with transformers. Everything but such a row goes to SDPA, masks included: `attention_implementation` says
"sdpa" for it."""


def attention_implementation(model: torch.nn.Module) -> str:
    """The model's attention as transformers names it (segment attention answering as the SDPA it runs on)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    name = str(getattr(getattr(base, "config", None), "_attn_implementation", None) or "eager")
    return "sdpa" if name == SEGMENT_ATTENTION else name


def packing_supported(model: torch.nn.Module) -> bool:
    """True where the model's forward takes position_ids and its attention turns restarting position ids
    into per-example blocks: transformers' shared mask code (eager, SDPA) or a varlen kernel."""
    import inspect

    peft_config = getattr(model, "active_peft_config", None)
    if (
        peft_config is not None and peft_config.is_prompt_learning
    ):  # virtual tokens lead each row, not each example
        return False
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if config is None or config.is_encoder_decoder:
        return False
    if attention_implementation(model) not in ("eager", "sdpa", *VARLEN_ATTENTION):
        return False
    return "position_ids" in inspect.signature(base.forward).parameters
