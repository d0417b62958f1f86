"""What the served chat model was told, as preference data (`tunesmith retune RUN --objective dpo|kto`).

- dpo: a correction is a pair: the logged conversation is the prompt, the correction the chosen answer, the
  answer the model gave the rejected one (TRL's prompt/chosen/rejected records).
- kto: single answers labelled desirable or not (KTO's prompt/completion/label records): a thumbs up makes
  the logged answer desirable, a thumbs down undesirable; a correction makes the correction desirable and the
  logged answer undesirable.

The held-out share that decides promotion is chosen by request id (a stable hash), so rerunning retune on a
grown log keeps every earlier held-out request held out.
"""

from __future__ import annotations

import hashlib
from typing import Any

from tunesmith.errors import UserError

MIN_RECORDS = 5
"""Fewer records than this cannot be split into something to learn from and something to judge it on."""


def preference_records(feedback: list[dict[str, Any]], objective: str) -> list[tuple[str, dict[str, Any]]]:
    """(request id, record) for each usable piece of feedback on a chat request."""
    out: list[tuple[str, dict[str, Any]]] = []
    for row in feedback:
        if row["endpoint"] != "chat" or not isinstance(row["output"], str):
            continue
        prompt, given, better = row["input"], row["output"], row["correct_answer"]
        if objective == "dpo":
            if better is not None and better.strip() != given.strip():
                out.append((row["id"], {"prompt": prompt, "chosen": better, "rejected": given}))
            continue
        if better is not None and better.strip() != given.strip():
            out.append((row["id"], {"prompt": prompt, "completion": better, "label": True}))
            out.append((row["id"], {"prompt": prompt, "completion": given, "label": False}))
        elif row["rating"] is not None:
            out.append((row["id"], {"prompt": prompt, "completion": given, "label": row["rating"] == "up"}))
    return out


def held_out(request_id: str, fraction: float) -> bool:
    """Whether a request's records are kept for the test split: a stable share `fraction` of request ids."""
    digest = hashlib.sha256(request_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_records(
    records: list[tuple[str, dict[str, Any]]], fraction: float, objective: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, test) records, every record of one request on the same side; refused when either is empty."""
    what = "corrections (a better answer sent to /v1/feedback)"
    if objective == "kto":
        what = "corrections or ratings ({'rating': 'up' or 'down'} sent to /v1/feedback)"
    requests = sorted({request for request, _ in records})
    if len(records) < MIN_RECORDS:
        raise UserError(
            f"retune --objective {objective}: {len(records)} usable records from {len(requests)} requests; it "
            f"needs at least {MIN_RECORDS} to learn from some and judge on others: collect more {what}"
        )
    test_ids = {r for r in requests if held_out(r, fraction)}
    if not test_ids or len(test_ids) == len(requests):  # a small log: the stable hash put all on one side
        test_ids = {requests[0]} if not test_ids else set(requests[1:])
    train = [record for request, record in records if request not in test_ids]
    test = [record for request, record in records if request in test_ids]
    return train, test
