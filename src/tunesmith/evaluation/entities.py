"""Token classification (entities in text): tag schemes, and entity-level metrics by seqeval's definitions.

A sentence's words carry tags: IOB2 (`B-TYPE` begins an entity, `I-TYPE` continues it, `O` is outside) or
BIOES (also `E-TYPE` ends one and `S-TYPE` is a one-word entity). Entities are (type, first word, last word
+ 1). A tag sequence that breaks its scheme (an `I-` that continues nothing) is an error of its line when the
data is read (`scheme_problem`); the model trains on IOB2 tags.

Metrics (seqeval, as Hugging Face's run_ner reports them):
- precision, recall, F1 over entities (micro: every entity of every sentence pooled), an entity counted right
  when its type and both ends match; `lenient` is seqeval's default mode (conlleval's: a predicted `I-` that
  follows `O` starts an entity), `strict_f1` its strict IOB2 mode (such an `I-` starts nothing);
- per type precision, recall, F1 and support;
- accuracy: words whose tag is right (`O` words included).
The paired bootstrap recomputes precision, recall, F1 and accuracy from each resample's per-sentence counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tunesmith.evaluation.bootstrap import Resampler

ENTITY_HEADLINE = ("f1", "precision", "recall", "strict_f1", "accuracy")
"""The metrics printed in tables; the JSON output carries everything."""
OUTSIDE = "O"
SCHEMES = ("IOB2", "BIOES")

Entity = tuple[str, int, int]
"""(type, first word, last word + 1)."""


def split_tag(tag: str) -> tuple[str, str]:
    """("B", "PER") from "B-PER"; ("O", "") from "O"."""
    if tag == OUTSIDE:
        return OUTSIDE, ""
    prefix, _, kind = tag.partition("-")
    return prefix, kind


def scheme_problem(tags: Sequence[str], scheme: str) -> str | None:
    """What breaks `scheme` in a sentence's tags (the first problem, with its word), or None."""
    allowed = {"IOB2": "BI", "BIOES": "BIES"}[scheme]
    open_kind = ""
    for i, tag in enumerate(tags):
        prefix, kind = split_tag(tag)
        if prefix == OUTSIDE:
            if open_kind and scheme == "BIOES":
                return f"word {i + 1}: O inside an entity {open_kind!r} that never got its E- tag"
            open_kind = ""
            continue
        if prefix not in allowed or not kind:
            return f"word {i + 1}: tag {tag!r} is not {scheme} (use {', '.join(p + '-TYPE' for p in allowed)} or O)"
        if prefix in ("I", "E") and kind != open_kind:
            before = tags[i - 1] if i else "the sentence start"
            return f"word {i + 1}: {tag} follows {before}: an entity begins with B-{kind}" + (
                "" if scheme == "BIOES" else " (IOB2)"
            )
        if prefix in ("B", "S") and open_kind and scheme == "BIOES":
            return f"word {i + 1}: {tag} begins an entity before {open_kind!r} got its E- tag"
        open_kind = kind if prefix in ("B", "I") else ""
    if open_kind and scheme == "BIOES":
        return f"the last entity {open_kind!r} never got its E- tag"
    return None


def entities_of(tags: Sequence[str]) -> list[Entity]:
    """The entities of a valid IOB2 or BIOES tag sequence."""
    out: list[Entity] = []
    start, open_kind = 0, ""
    for i, tag in enumerate([*tags, OUTSIDE]):
        prefix, kind = split_tag(tag)
        if open_kind and (prefix in (OUTSIDE, "B", "S") or kind != open_kind):
            out.append((open_kind, start, i))
            open_kind = ""
        if prefix in ("B", "S") or (prefix in ("I", "E") and not open_kind):
            start, open_kind = i, kind
        if prefix in ("E", "S"):
            out.append((open_kind, start, i + 1))
            open_kind = ""
    return out


def iob2_tags(entities: Sequence[Entity], words: int) -> list[str]:
    """IOB2 tags of `words` words holding `entities`."""
    tags = [OUTSIDE] * words
    for kind, start, end in entities:
        tags[start] = f"B-{kind}"
        for i in range(start + 1, end):
            tags[i] = f"I-{kind}"
    return tags


def entity_metrics(truth: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, Any]:
    """The metrics above from each sentence's true and predicted IOB2 tags (seqeval computes them)."""
    from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    true_lists, pred_lists = [list(t) for t in truth], [list(p) for p in predicted]
    report = classification_report(true_lists, pred_lists, output_dict=True, zero_division=0)
    per_type = {
        kind: {
            "precision": float(v["precision"]),
            "recall": float(v["recall"]),
            "f1": float(v["f1-score"]),
            "support": int(v["support"]),
        }
        for kind, v in report.items()
        if not kind.endswith(" avg")
    }
    strict = f1_score(true_lists, pred_lists, mode="strict", scheme=IOB2, zero_division=0)
    return {
        "precision": float(precision_score(true_lists, pred_lists, zero_division=0)),
        "recall": float(recall_score(true_lists, pred_lists, zero_division=0)),
        "f1": float(f1_score(true_lists, pred_lists, zero_division=0)),
        "strict_f1": float(strict),
        "accuracy": float(accuracy_score(true_lists, pred_lists)) if any(true_lists) else 0.0,
        "per_type": per_type,
        "examples": len(true_lists),
        "entities": sum(v["support"] for v in per_type.values()),
    }


def entity_resampler(truth: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> Resampler:
    """Precision, recall and F1 (lenient) and word accuracy, from each resample's sums of per-sentence counts:
    entities right, predicted and true; words right and words."""
    from seqeval.metrics.sequence_labeling import get_entities

    counts = np.zeros((len(truth), 5), dtype=np.float64)
    for row, (t, p) in enumerate(zip(truth, predicted, strict=True)):
        true_set, pred_set = set(get_entities(list(t))), set(get_entities(list(p)))
        right_words = sum(a == b for a, b in zip(t, p, strict=True))
        counts[row] = (len(true_set & pred_set), len(pred_set), len(true_set), right_words, len(t))

    def resample(indices: np.ndarray) -> dict[str, np.ndarray]:
        sums = counts[indices].sum(axis=1)  # resamples x 5
        hits, predicted_n, true_n = sums[:, 0], sums[:, 1], sums[:, 2]
        precision = np.divide(hits, predicted_n, out=np.zeros_like(hits), where=predicted_n > 0)
        recall = np.divide(hits, true_n, out=np.zeros_like(hits), where=true_n > 0)
        both = precision + recall
        f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
        accuracy = np.divide(sums[:, 3], sums[:, 4], out=np.zeros_like(hits), where=sums[:, 4] > 0)
        return {"precision": precision, "recall": recall, "f1": f1, "accuracy": accuracy}

    return resample
