"""Metrics for generated text: ROUGE (rouge-score), BLEU and chrF (sacrebleu), SQuAD exact match and token F1,
and perplexity. Scores are on a 0-1 scale (sacrebleu's 0-100 is divided by 100) so tables line up."""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure over examples (Porter stemming, as in the summarization literature)."""
    return _means(rouge_per_example(predictions, references))


def rouge_per_example(predictions: Sequence[str], references: Sequence[str]) -> dict[str, list[float]]:
    """Each example's ROUGE-1/2/L F-measure."""
    from rouge_score import rouge_scorer

    _same_length(predictions, references)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    out: dict[str, list[float]] = {"rouge1": [], "rouge2": [], "rougeL": []}
    for pred, ref in zip(predictions, references, strict=True):
        for name, score in scorer.score(ref, pred).items():
            out[name].append(score.fmeasure)
    return out


def bleu_chrf(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU and chrF with sacrebleu's standard settings, one reference per example."""
    import sacrebleu

    _same_length(predictions, references)
    preds, refs = list(predictions), [list(references)]
    return {
        "bleu": sacrebleu.corpus_bleu(preds, refs).score / 100,
        "chrf": sacrebleu.corpus_chrf(preds, refs).score / 100,
    }


_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def squad_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Exact match and token F1 as in the official SQuAD v1.1 script: each prediction takes its best score
    over the example's accepted answers."""
    return _means(squad_per_example(predictions, references))


def squad_per_example(
    predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> dict[str, list[float]]:
    _same_length(predictions, references)
    out: dict[str, list[float]] = {"exact_match": [], "f1": []}
    for pred, answers in zip(predictions, references, strict=True):
        out["exact_match"].append(max(float(normalize_answer(pred) == normalize_answer(a)) for a in answers))
        out["f1"].append(max(_token_f1(pred, a) for a in answers))
    return out


def _means(scores: dict[str, list[float]]) -> dict[str, float]:
    return {name: sum(values) / max(len(values), 1) for name, values in scores.items()}


def _token_f1(prediction: str, answer: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(answer).split()
    common = sum((Counter(pred) & Counter(gold)).values())
    if not pred or not gold:
        return float(pred == gold)
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def perplexity(summed_nll: float, tokens: int) -> float:
    """exp(mean negative log-likelihood per target token)."""
    if tokens <= 0:
        raise ValueError("perplexity needs at least one target token")
    return math.exp(summed_nll / tokens)


def _same_length(predictions: Sequence[object], references: Sequence[object]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
