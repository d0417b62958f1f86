"""Forgetting: 0 for an untouched model, growing as the weights are perturbed further, on real models."""

from __future__ import annotations

import copy

import pytest
import torch

from tunesmith.evaluation.forgetting import (
    GENERAL_PROMPTS,
    GeneralAbility,
    encoder_ability,
    forgetting,
    reference_paragraphs,
    reference_perplexity,
)
from tunesmith.sections import EvaluationConfig


def perturbed(model: torch.nn.Module, scale: float, seed: int = 0) -> torch.nn.Module:
    """A copy with Gaussian noise added to every weight matrix, `scale` times each matrix's own spread."""
    out = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            if p.dim() == 2:
                p.add_(torch.randn(p.shape, generator=generator) * p.std() * scale)
    return out


def test_the_reference_is_general_english():
    paragraphs = reference_paragraphs()
    assert len(paragraphs) == 24 and all(len(p.split()) > 40 for p in paragraphs)
    assert not any("debian" in p.lower() or "package" in p.lower() for p in paragraphs)


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(minilm_dir, num_labels=3).eval()
    return model, AutoTokenizer.from_pretrained(minilm_dir)


def test_encoder_forgetting_is_zero_untouched_and_grows_with_perturbation(minilm):
    model, tokenizer = minilm
    base = encoder_ability(model, tokenizer, 128)
    assert base.retrieval >= 0.8  # a sentence encoder finds each paragraph from its first sentence

    same = forgetting(base, encoder_ability(model, tokenizer, 128), EvaluationConfig())
    assert same["embedding_similarity"] == pytest.approx(1.0, abs=1e-5)
    assert same["retrieval_drop"] == 0 and same["warnings"] == []

    similarities = []
    for scale in (0.05, 0.3, 1.0):
        moved = forgetting(base, encoder_ability(perturbed(model, scale), tokenizer, 128), EvaluationConfig())
        similarities.append(moved["embedding_similarity"])
    assert 1.0 > similarities[0] > similarities[1] > similarities[2]
    assert moved["retrieval_drop"] > 0.1 and len(moved["warnings"]) == 2  # similarity and retrieval


def test_decoder_perplexity_is_unchanged_untouched_and_rises_with_perturbation(smollm_model, smollm_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm_dir)
    base = reference_perplexity(smollm_model, tokenizer, 256)
    assert 2 < base < 60  # a real small LM reads everyday English with modest surprise
    assert reference_perplexity(smollm_model, tokenizer, 256) == pytest.approx(base, rel=1e-6)
    slightly = reference_perplexity(perturbed(smollm_model, 0.02), tokenizer, 256)
    badly = reference_perplexity(perturbed(smollm_model, 0.2), tokenizer, 256)
    assert base < slightly < badly

    answers = ["a", "b", "c"]
    report = forgetting(
        GeneralAbility(perplexity=base, answers=answers),
        GeneralAbility(perplexity=badly, answers=answers),
        EvaluationConfig(),
    )
    assert report["perplexity_increase"] == pytest.approx(badly / base - 1)
    assert [p["prompt"] for p in report["prompts"]] == list(GENERAL_PROMPTS)
    assert len(report["warnings"]) == 1 and "perplexity on general English rose" in report["warnings"][0]
