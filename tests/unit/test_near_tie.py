"""An f16 GGUF may swap the run's two near-tied tokens; the check accepts that swap and nothing else."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_llama
from tunesmith.export.probe import NEAR_TIE, Comparison, parting_margin

PROMPT = [5, 17, 42, 8]


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tiny_llama(vocab_size=300, intermediate_size=64).eval()


def next_logits(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, -1]


def greedy(model: torch.nn.Module, n: int) -> list[int]:
    out: list[int] = []
    for _ in range(n):
        out.append(int(next_logits(model, PROMPT + out).argmax()))
    return out


def test_a_swap_within_the_near_tie_passes_and_a_wider_one_does_not(model):
    run = greedy(model, 6)
    k = 3
    ranked = next_logits(model, PROMPT + run[:k]).sort(descending=True)
    gaps = ranked.values[0] - ranked.values
    close = int(ranked.indices[int((gaps > 0).nonzero()[0])])  # the runner-up
    far = int(ranked.indices[int((gaps > NEAR_TIE).nonzero()[0])])  # the first token past the tie
    assert float(gaps[(ranked.indices == close).nonzero()[0]]) <= NEAR_TIE  # random weights: flat logits
    assert parting_margin(model, PROMPT, run, run[:k] + [close, 1, 2]) <= NEAR_TIE
    assert parting_margin(model, PROMPT, run, run[:k] + [far, 1, 2]) > NEAR_TIE
    assert parting_margin(model, PROMPT, run, run[:k]) is None  # stops early: not a swap of two tokens
    gap = float(gaps[(ranked.indices == far).nonzero()[0]])
    assert parting_margin(model, PROMPT, run, run[:k] + [far, 1, 2]) == pytest.approx(gap, abs=1e-5)
    assert parting_margin(model, PROMPT, run, list(run)) is None


def test_near_ties_complete_the_identical_answers_only_when_exact_answers_are_asked():
    exact = Comparison(None, 5, 6, 0.0, 0.99, None, 6, 1.0, None, parting_margins=[NEAR_TIE / 2])
    assert exact.ok and "1 more part from the run only where" in exact.describe()
    assert not Comparison(None, 4, 6, 0.0, 0.99, None, 6, 1.0, None, parting_margins=[0.01, None]).ok
    assert not Comparison(None, 5, 6, 0.0, 0.99, None, 6, 1.0, None, parting_margins=[NEAR_TIE * 2]).ok
    assert exact.as_json()["prompts_parting_at_a_near_tie"] == 1
    quantized = Comparison(None, 5, 6, 0.0, 0.8, 0.9, 6, 1.0, 1.03, parting_margins=[0.01])
    assert not quantized.ok  # quantized files are held to agreement, not to near-ties
    said = Comparison(None, 4, 6, 0.0, 0.95, 0.9, 6, 1.0, 1.03, parting_margins=[0.125, None])
    assert (
        said.ok
        and "(1 part where the run's own two tokens were 0.12 logits apart; 1 stop at another length)"
        in said.describe()
    )
    assert said.as_json()["run_margins_where_answers_part"] == [0.125, None]
