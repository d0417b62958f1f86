"""The frozen-bottom cache (training/frozen_prefix.py) on the packaged MiniLM: it finds the frozen layers a
method leaves, serves them from memory after the first pass, and changes no loss and no gradient."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

from tunesmith.errors import ConfigError
from tunesmith.methods.freeze import Freeze, FreezeParams
from tunesmith.methods.full import Full, FullParams
from tunesmith.methods.lora import Lora, LoraParams
from tunesmith.models.pooled import PooledClassifierLoader
from tunesmith.training.frozen_prefix import FrozenPrefix, FrozenPrefixCache, frozen_prefix

TEXTS = [
    "A library to parse PNG images",
    "Daemon that serves files over HTTP and FTP, written in Rust with a small configuration language",
    "hi",
]
QUIET = {"attention_probs_dropout_prob": 0.0, "hidden_dropout_prob": 0.0}
"""No dropout anywhere, so two passes of the same model can be compared exactly."""


def lora(minilm_dir, layers, **params):
    torch.manual_seed(0)
    model = PooledClassifierLoader.from_pretrained(str(minilm_dir), num_labels=3, **{**QUIET, **params})
    return Lora(LoraParams(rank=4, alpha=8, dropout=0.0, layers=layers)).apply(model, "SEQ_CLS")


def batch(minilm_dir, texts=TEXTS, **kwargs):
    return dict(AutoTokenizer.from_pretrained(minilm_dir)(texts, padding=True, return_tensors="pt", **kwargs))


def loss_and_grads(model, inputs):
    model.train()
    model.zero_grad()
    logits = model(**inputs).logits
    if logits.dim() == 3:  # per token: the real tokens' (padding's outputs are nobody's)
        logits = logits * inputs["attention_mask"][..., None]
    loss = logits.pow(2).sum()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_finds_the_frozen_bottom_each_method_leaves(minilm_dir):
    assert frozen_prefix(lora(minilm_dir, layers=2)).depth == 4
    assert frozen_prefix(lora(minilm_dir, layers=None)) is None  # every block adapted
    model = PooledClassifierLoader.from_pretrained(str(minilm_dir), num_labels=2)
    assert frozen_prefix(Freeze(FreezeParams(layers=2)).apply(model, "SEQ_CLS")).depth == 4
    model = PooledClassifierLoader.from_pretrained(str(minilm_dir), num_labels=2)
    assert frozen_prefix(Full(FullParams()).apply(model, "SEQ_CLS")) is None  # embeddings train
    with pytest.raises(ConfigError, match="method.layers=7, but the model has only 6 layers"):
        lora(minilm_dir, layers=7)


def test_lora_layers_adapts_only_the_top_blocks(minilm_dir):
    model = lora(minilm_dir, layers=2)
    adapted = {int(n.split(".layer.")[1].split(".")[0]) for n, _ in model.named_parameters() if "lora_A" in n}
    assert adapted == {4, 5}


def test_cached_passes_give_the_losses_and_gradients_of_the_model(minilm_dir):
    model = lora(minilm_dir, layers=3)
    inputs = batch(minilm_dir)
    assert inputs["attention_mask"].sum(1).unique().numel() == 3  # padding in two rows
    reference = loss_and_grads(model, inputs)
    cache = FrozenPrefixCache(frozen_prefix(model), budget_bytes=2**30)
    with cache.installed():
        first = loss_and_grads(model, inputs)  # fills
        second = loss_and_grads(model, inputs)  # served
    assert (cache.misses, cache.hits, len(cache.stored)) == (3, 3, 3)
    for loss, grads in (first, second):
        torch.testing.assert_close(loss, reference[0], rtol=1e-5, atol=1e-6)
        assert grads.keys() == reference[1].keys() and len(grads) > 2
        for name in grads:
            torch.testing.assert_close(grads[name], reference[1][name], rtol=1e-4, atol=1e-6)


def test_a_text_is_served_whatever_batch_and_padding_it_came_with(minilm_dir):
    model = lora(minilm_dir, layers=3).eval()
    cache = FrozenPrefixCache(frozen_prefix(model), budget_bytes=2**30)
    with torch.no_grad():
        alone = model(**batch(minilm_dir, TEXTS[2:])).logits
        with cache.installed():
            model(**batch(minilm_dir, TEXTS[2:]))  # cached at its own length
            served = model(**batch(minilm_dir, TEXTS)).logits  # now padded to the longest text
    assert cache.hits == 1 and cache.misses == 3
    torch.testing.assert_close(served[2:], alone, rtol=1e-4, atol=1e-5)


def test_falls_back_to_the_model_for_left_padding_and_a_full_budget(minilm_dir):
    model = lora(minilm_dir, layers=3).eval()
    left = batch(minilm_dir)
    left["attention_mask"] = left["attention_mask"].flip(1)
    left["input_ids"] = left["input_ids"].flip(1)
    left["token_type_ids"] = left["token_type_ids"].flip(1)
    right = batch(minilm_dir)
    with torch.no_grad():
        want_left, want_right = model(**left).logits, model(**right).logits
        cache = FrozenPrefixCache(frozen_prefix(model), budget_bytes=0)
        with cache.installed():
            got_left, got_right = model(**left).logits, model(**right).logits
    assert cache.misses == 3 and not cache.stored  # right padding computed, nothing kept; left not looked up
    torch.testing.assert_close(got_left, want_left)
    torch.testing.assert_close(got_right, want_right, rtol=1e-4, atol=1e-5)


def test_the_model_is_as_it_was_after_the_run(minilm_dir):
    model = lora(minilm_dir, layers=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prefix = frozen_prefix(model)
    with FrozenPrefixCache(prefix, budget_bytes=2**30).installed():
        assert "forward" in vars(prefix.embeddings)
        loss_and_grads(model, batch(minilm_dir))
    assert "forward" not in vars(prefix.embeddings)
    assert not any("forward" in vars(block) for block in prefix.blocks)
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_the_frozen_bottom_runs_without_dropout(minilm_dir):
    """With the model's own dropout (0.1) on, two cached passes of the frozen bottom agree: it runs in eval
    mode, cached or not, while the blocks above keep training mode."""
    model = lora(minilm_dir, layers=3, hidden_dropout_prob=0.1)
    prefix = frozen_prefix(model)
    cache = FrozenPrefixCache(prefix, budget_bytes=0)  # computed every pass
    seen: list[torch.Tensor] = []
    hook = prefix.blocks[-1].register_forward_hook(lambda m, a, out: seen.append(out))
    with cache.installed():
        model.train()
        model(**batch(minilm_dir))
        model(**batch(minilm_dir))
    hook.remove()
    assert len(seen) == 2 and torch.equal(seen[0], seen[1])
    assert model.base_model.model.bert.encoder.layer[3].training


def test_token_classifier_and_proof_on_a_first_batch(minilm_dir):
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(str(minilm_dir), num_labels=5, **QUIET)
    model = Lora(LoraParams(rank=4, alpha=8, dropout=0.0, layers=2)).apply(model, "TOKEN_CLS")
    cache = FrozenPrefixCache(frozen_prefix(model), budget_bytes=2**30)
    inputs = batch(minilm_dir)
    reference = loss_and_grads(model, inputs)
    with cache.installed():
        assert cache.proves_itself(inputs)
        served = loss_and_grads(model, inputs)
    assert cache.hits >= 3
    torch.testing.assert_close(served[0], reference[0], rtol=1e-5, atol=1e-6)


def test_a_model_that_does_not_run_as_the_cache_expects_refuses_it(minilm_dir):
    """Blocks the backbone never calls (another model's): the first batch says why, and nothing is served."""
    model, other = lora(minilm_dir, layers=3), lora(minilm_dir, layers=3)
    found = frozen_prefix(model)
    stranger = FrozenPrefix(found.backbone, found.embeddings, frozen_prefix(other).blocks)
    cache = FrozenPrefixCache(stranger, budget_bytes=2**30)
    with cache.installed():
        why = cache.refusal(batch(minilm_dir))
    assert why == "RuntimeError: the backbone did not reach its last frozen block"
    assert not cache.stored
    ok = FrozenPrefixCache(found, budget_bytes=2**30)
    with ok.installed():
        assert ok.refusal(batch(minilm_dir)) is None
