"""Each method on a real (tiny, randomly initialised) BERT: what it trains, and that one step changes
exactly the trainable weights."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from tunesmith.errors import ConfigError
from tunesmith.methods import METHODS, count_parameters

HIDDEN, LAYERS, FFN, LABELS = 32, 2, 64, 3


def load(tiny_bert_dir):
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(
        tiny_bert_dir, num_labels=LABELS, use_safetensors=True
    )


def make(name, **params):
    cls = METHODS.get(name)
    return cls(cls.Params(name=name, **params))


def layer_params():
    attention = 4 * (HIDDEN * HIDDEN + HIDDEN) + 2 * HIDDEN  # q, k, v, out + LayerNorm
    ffn = HIDDEN * FFN + FFN + FFN * HIDDEN + HIDDEN + 2 * HIDDEN
    return attention + ffn


HEAD = (HIDDEN * HIDDEN + HIDDEN) + (HIDDEN * LABELS + LABELS)  # pooler + classifier


def test_full_trains_everything(tiny_bert_dir):
    model = make("full").apply(load(tiny_bert_dir), "SEQ_CLS")
    trainable, total = count_parameters(model)
    assert trainable == total


@pytest.mark.parametrize("layers", [0, 1, 2])
def test_freeze_trains_top_layers_and_head(tiny_bert_dir, layers):
    model = make("freeze", layers=layers).apply(load(tiny_bert_dir), "SEQ_CLS")
    trainable, _ = count_parameters(model)
    assert trainable == layers * layer_params() + HEAD
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert "bert.embeddings.word_embeddings.weight" in frozen
    assert ("bert.encoder.layer.0.attention.self.query.weight" in frozen) == (layers < 2)


def test_freeze_refuses_more_layers_than_the_model_has(tiny_bert_dir):
    with pytest.raises(ConfigError, match="the model has only 2 layers"):
        make("freeze", layers=3).apply(load(tiny_bert_dir), "SEQ_CLS")


def test_lora_trains_low_rank_matrices_and_the_head(tiny_bert_dir):
    rank = 4
    model = make("lora", rank=rank, target_modules=["query", "value"]).apply(load(tiny_bert_dir), "SEQ_CLS")
    trainable, _ = count_parameters(model)
    lora = LAYERS * 2 * (rank * HIDDEN + HIDDEN * rank)  # A and B for query and value in each layer
    classifier = HIDDEN * LABELS + LABELS
    assert trainable == lora + classifier


def test_lora_default_targets_cover_attention_and_feed_forward(tiny_bert_dir):
    model = make("lora", rank=2).apply(load(tiny_bert_dir), "SEQ_CLS")
    adapted = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, _ in model.named_parameters() if "lora_A" in n}
    assert {"query", "key", "value", "dense"} <= adapted


@pytest.mark.parametrize("name,params", [("full", {}), ("freeze", {"layers": 1}), ("lora", {"rank": 4})])
def test_one_step_changes_trainable_weights_only(tiny_bert_dir, name, params):
    model = make(name, **params).apply(load(tiny_bert_dir), "SEQ_CLS")
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    batch = {
        "input_ids": torch.randint(1000, 2000, (4, 12)),
        "attention_mask": torch.ones(4, 12, dtype=torch.long),
    }
    loss = torch.nn.functional.cross_entropy(model(**batch).logits, torch.tensor([0, 1, 2, 0]))
    loss.backward()
    opt.step()
    for n, p in model.named_parameters():
        changed = not torch.equal(before[n], p.detach())
        if not p.requires_grad:
            assert not changed, f"frozen {n} changed"
        elif "lora_A" in n:
            # LoRA starts with B = 0, so A gets no gradient on the very first step; B does.
            assert not changed
        else:
            assert changed, f"trainable {n} did not change"


def test_every_registered_method_is_offered_and_ranked():
    """Registering a method (its file and its line in methods/__init__.py) is all it takes: the CLI's help
    names it, the planner ranks it, and the adapter tests pick it up (test_peft_methods.PEFT)."""
    from tunesmith.cli import METHOD_HELP
    from tunesmith.recipes.plan import fallback_order, preference_order

    names = METHODS.names()
    offered = METHOD_HELP.split(" (see")[0].replace(" or ", ", ").split(", ")
    assert sorted(offered) == sorted(
        names
    )  # the help is written out: importing the methods would slow --help
    assert sorted(preference_order()) == sorted(names)
    assert preference_order()[0] == "lora" and fallback_order()[0] == "lora"
    assert all(METHODS.get(name).preference < 100 for name in names), "rank a new method: Method.preference"
