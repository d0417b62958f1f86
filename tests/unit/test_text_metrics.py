import math

import pytest
import sacrebleu
import torch
from rouge_score import rouge_scorer

from tunesmith.evaluation.text_metrics import bleu_chrf, normalize_answer, perplexity, rouge, squad_scores

PREDS = ["the cat sat on the mat", "a quick brown fox jumps", "network time protocol daemon"]
REFS = [
    "the cat is sitting on the mat",
    "the quick brown fox jumped over the dog",
    "NTP daemon for time sync",
]


def test_rouge_is_the_mean_of_rouge_score_f_measures():
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    expected = {
        k: sum(scorer.score(r, p)[k].fmeasure for p, r in zip(PREDS, REFS, strict=True)) / 3
        for k in ("rouge1", "rouge2", "rougeL")
    }
    assert rouge(PREDS, REFS) == pytest.approx(expected)
    assert rouge(["same text"], ["same text"]) == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}


def test_bleu_and_chrf_are_sacrebleu_scaled_to_one():
    scores = bleu_chrf(PREDS, REFS)
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(PREDS, [REFS]).score / 100)
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(PREDS, [REFS]).score / 100)
    assert bleu_chrf(REFS, REFS)["bleu"] == pytest.approx(1.0)


def test_squad_exact_match_and_f1_follow_the_official_normalisation():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    scores = squad_scores(
        ["the Eiffel tower", "in Paris, France", "Berlin"], [["Eiffel Tower"], ["Paris"], ["Rome", "Milan"]]
    )
    assert scores["exact_match"] == pytest.approx(1 / 3)
    # F1: 1.0, then "in paris france" vs "paris": P=1/3 R=1 -> 0.5, then 0.
    assert scores["f1"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert squad_scores(["Milan"], [["Rome", "Milan"]]) == {"exact_match": 1.0, "f1": 1.0}


def test_perplexity_matches_exp_of_mean_cross_entropy():
    logits = torch.randn(10, 50, generator=torch.Generator().manual_seed(0))
    targets = torch.randint(0, 50, (10,), generator=torch.Generator().manual_seed(1))
    nll = torch.nn.functional.cross_entropy(logits, targets, reduction="sum").item()
    assert perplexity(nll, 10) == pytest.approx(
        math.exp(torch.nn.functional.cross_entropy(logits, targets).item())
    )
    with pytest.raises(ValueError):
        perplexity(1.0, 0)


def test_lengths_must_match():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        rouge(["a", "b"], ["a"])
