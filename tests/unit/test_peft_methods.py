"""Every peft method on every kind of model it serves, on tiny real (randomly initialised) transformers: the
trainable-parameter count the method's maths gives, trainable weights change and frozen ones don't, save ->
reload gives identical outputs, and a few steps lower the loss."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    BertConfig,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    LlamaConfig,
    LlamaForCausalLM,
)

from tunesmith.methods import METHODS, count_parameters

H, FFN, LABELS, KV = 32, 64, 3, 16  # hidden, feed-forward, classes, llama's key/value width (2 heads of 8)
BERT = {
    "vocab_size": 500,
    "hidden_size": H,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": FFN,
    "max_position_embeddings": 64,
}


def classifier() -> torch.nn.Module:
    return BertForSequenceClassification(BertConfig(**BERT, num_labels=LABELS))


def span_model() -> torch.nn.Module:
    return BertForQuestionAnswering(BertConfig(**BERT))


def decoder() -> torch.nn.Module:
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=500,
            hidden_size=H,
            intermediate_size=FFN,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    )


MODELS = {"classification": classifier, "qa": span_model, "chat": decoder}

# (in, out) of the layers each architecture adapts by default, per block
BERT_LAYERS = [(H, H)] * 4 + [(H, FFN), (FFN, H)]  # query key value attention-out, intermediate, output
LLAMA_LAYERS = [(H, H), (H, KV), (H, KV), (H, H), (H, FFN), (H, FFN), (FFN, H)]  # q k v o gate up down
HEADS = {"classification": H * LABELS + LABELS, "qa": H * 2 + 2, "chat": 0}


def adapted(task: str) -> list[tuple[int, int]]:
    if task == "chat":
        return LLAMA_LAYERS * 2
    return BERT_LAYERS * 2 + ([(H, H)] if task == "classification" else [])  # the classifier's pooler


R = 4
EXPECTED = {
    "lora": lambda layers: sum(R * (i + o) for i, o in layers),
    "dora": lambda layers: sum(R * (i + o) + o for i, o in layers),  # + a magnitude per output channel
    "loha": lambda layers: sum(2 * R * (i + o) for i, o in layers),  # two low-rank pairs
}


def build(name: str, task: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    cls = METHODS.get(name)
    params = {} if name == "ia3" else {"rank": R}
    return cls(cls.Params(name=name, **params)).apply(MODELS[task](), task)


def batch(task: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 500, (4, 10), generator=g)
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if task == "classification":
        out["labels"] = torch.tensor([0, 1, 2, 0])
    elif task == "qa":
        out["start_positions"], out["end_positions"] = torch.tensor([1, 2, 3, 4]), torch.tensor([2, 3, 5, 6])
    else:
        out["labels"] = ids
    return out


def loss_of(model: torch.nn.Module, task: str) -> torch.Tensor:
    return model(**batch(task)).loss


def steps(model: torch.nn.Module, task: str, n: int, lr: float = 1e-2) -> list[float]:
    model.train()
    for module in model.modules():  # dropout off: the losses compare steps, not noise
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    losses = []
    for _ in range(n):
        loss = loss_of(model, task)
        losses.append(loss.item())
        loss.backward()
        opt.step()
        opt.zero_grad()
    return losses


PEFT = ["lora", "dora", "ia3", "loha", "lokr"]
MATRIX = [(name, task) for name in PEFT for task in MODELS]


@pytest.mark.parametrize(("name", "task"), MATRIX)
def test_trainable_parameters_are_the_methods_and_the_head(name, task):
    model = build(name, task)
    trainable, _ = count_parameters(model)
    head = HEADS[task]
    if name in EXPECTED:
        assert trainable == EXPECTED[name](adapted(task)) + head
    elif name == "ia3":  # keys and values scaled on output, feed-forward outputs on input
        per_block = {"chat": KV + KV + FFN, "classification": H + H + H + FFN, "qa": H + H + H + FFN}[task]
        assert trainable == 2 * per_block + head
    else:  # lokr: a Kronecker pair per layer, fewer than LoRA at the same rank
        assert head < trainable < EXPECTED["lora"](adapted(task)) + head
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any("embeddings" in n or "embed_tokens" in n for n in names)


@pytest.mark.parametrize(("name", "task"), MATRIX)
def test_steps_change_trainable_weights_only_and_lower_the_loss(name, task):
    model = build(name, task)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    losses = steps(model, task, 8)
    assert losses[-1] < losses[0]
    for n, p in model.named_parameters():
        changed = not torch.equal(before[n], p.detach())
        assert changed == p.requires_grad, f"{n}: requires_grad {p.requires_grad}, changed {changed}"


@pytest.mark.parametrize(("name", "task"), MATRIX)
def test_save_and_reload_give_identical_outputs(name, task, tmp_path):
    cls = METHODS.get(name)
    method = cls(cls.Params(name=name, **({} if name == "ia3" else {"rank": R})))
    torch.manual_seed(0)
    base_state = MODELS[task]().state_dict()

    def fresh_base(_: str | None) -> torch.nn.Module:
        model = MODELS[task]()
        model.load_state_dict(base_state)
        return model

    model = method.apply(fresh_base(None), task)
    steps(model, task, 2)
    method.save(model, tmp_path / "adapter")
    reloaded = method.load(tmp_path / "adapter", fresh_base)
    model.eval()
    reloaded.eval()
    inputs = {k: v for k, v in batch(task).items() if k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        a, b = model(**inputs), reloaded(**inputs)
    for key in ("logits", "start_logits", "end_logits"):
        if key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
