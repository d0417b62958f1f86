"""Every peft method on every kind of model it serves, on tiny real (randomly initialised) transformers: the
trainable-parameter count the method's maths gives, trainable weights change and frozen ones don't, save ->
reload gives identical outputs, and a few steps lower the loss."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from transformers import (
    BertConfig,
    BertForQuestionAnswering,
    BertForSequenceClassification,
)

from tests.conftest import tiny_llama
from tunesmith.methods import METHODS, Method, count_parameters
from tunesmith.tasks.chat import Chat
from tunesmith.tasks.classification import Classification
from tunesmith.tasks.qa_extractive import ExtractiveQA

H, FFN, LABELS, KV = 64, 128, 3, 32  # hidden, feed-forward, classes, llama's key/value width (2 heads of 16)
# (64: bitsandbytes' CPU kernels quantize in blocks of 64 inputs)
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
    return tiny_llama(vocab_size=500, hidden_size=H, intermediate_size=FFN, seed=None)


MODELS = {"classification": classifier, "qa": span_model, "chat": decoder}
TASK_TYPE = {
    name: task.peft_task_type
    for name, task in (("classification", Classification), ("qa", ExtractiveQA), ("chat", Chat))
}
"""peft's task type of each task's head, as the tasks declare it (training/setup.py passes it to `apply`)."""

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
    "adalora": lambda layers: sum(R * (i + o) + R for i, o in layers),  # P, Q and R singular values
    "qlora": lambda layers: sum(R * (i + o) for i, o in layers),  # LoRA's, on 4-bit base layers
}


V = 5  # virtual tokens of prompt and prefix tuning
PARAMS = {
    "ia3": {},
    "prompt": {"virtual_tokens": V},
    "prefix": {"virtual_tokens": V, "init_text": None},  # random models have no tokenizer to read a text
    "adalora": {"init_rank": R, "rank": 2},
    "adapter": {"size": R},
}
STEPS = 8


def method(name: str, **extra) -> Method:
    cls = METHODS.get(name)
    return cls(cls.Params(name=name, **{**PARAMS.get(name, {"rank": R}), **extra}))


def base(name: str, task: str) -> torch.nn.Module:
    """The same random base model every call; for qlora, loaded through its 4-bit quantization."""
    torch.manual_seed(0)
    model = MODELS[task]()
    if name != "qlora":
        return model
    folder = SAVED / task
    if not folder.is_dir():
        model.save_pretrained(folder)
    return type(model).from_pretrained(folder, **method(name).load_kwargs("cpu"))


SAVED = Path(tempfile.mkdtemp(prefix="tunesmith-bases-"))


def build(name: str, task: str) -> torch.nn.Module:
    return method(name).apply(base(name, task), TASK_TYPE[task], STEPS)


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


PEFT = [name for name in METHODS.names() if not METHODS.get(name).saves_full_model]
"""Every registered method that saves an adapter, not a whole model (full and freeze: tests/unit/test_methods.py)."""
UNSUPPORTED = {("prompt", "qa"), ("prefix", "classification"), ("prefix", "qa")}
"""Refused before any model loads (see test_method_task_refusals)."""
MATRIX = [(name, task) for name in PEFT for task in MODELS if (name, task) not in UNSUPPORTED]


@pytest.mark.parametrize(("name", "task"), MATRIX)
def test_trainable_parameters_are_the_methods_and_the_head(name, task):
    model = build(name, task)
    trainable, _ = count_parameters(model)
    head = HEADS[task]
    if name in EXPECTED:
        assert trainable == EXPECTED[name](adapted(task)) + head
    elif name == "prompt":  # one embedding per virtual token
        assert trainable == V * H + head
    elif name == "prefix":  # a key and a value per virtual token per layer (llama's are KV wide)
        assert trainable == V * 2 * 2 * KV + head
    elif name == "adapter":  # after each block's attention and feed-forward output: down + up, with biases
        assert trainable == 2 * 2 * (2 * H * R + H + R) + head
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
    check_save_and_reload(method(name), task, tmp_path)


def test_prefix_with_its_projection_saves_the_prefixes_it_produces(tmp_path):
    # saved: the MLP's output, not the MLP, so the reloaded prefixes differ by float rounding only
    check_save_and_reload(method("prefix", projection=True, projection_size=16), "chat", tmp_path, atol=1e-6)


def check_save_and_reload(method: Method, task: str, tmp_path, atol: float = 0.0) -> None:
    def fresh_base(_: str | None) -> torch.nn.Module:
        return base(method.name, task)

    model = method.apply(fresh_base(None), TASK_TYPE[task], STEPS)
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
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol)


def test_an_untrained_prefix_is_its_init_text_in_front_of_the_input(smollm_dir):
    """On a real decoder, the prefix starts as the model's own keys and values for its text: the prefixed
    model on x gives the base model's logits on text + x."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm_dir)
    base = AutoModelForCausalLM.from_pretrained(smollm_dir)
    text = "Answer in one short sentence."
    n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    x = tokenizer("What does htop show?", return_tensors="pt")["input_ids"]
    full = torch.cat([tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"], x], 1)
    with torch.no_grad():
        expected = base(input_ids=full).logits[:, n:]
    prefixed = method("prefix", virtual_tokens=n, init_text=text).apply(
        base, TASK_TYPE["chat"]
    )  # base stays frozen
    with torch.no_grad():
        got = prefixed(input_ids=x, attention_mask=torch.ones_like(x)).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_adalora_moves_rank_to_a_budget_of_rank_per_layer_and_saves_the_pattern(tmp_path):
    """Through its training-loop hooks (penalty, after_step), AdaLoRA ends with rank x layers singular values
    left in all, and the saved adapter reloads with that pattern."""
    ada = method("adalora", warmup_fraction=0.0, final_fraction=0.25)
    torch.manual_seed(0)
    base_state = classifier().state_dict()

    def fresh_base(_: str | None) -> torch.nn.Module:
        model = classifier()
        model.load_state_dict(base_state)
        return model

    model = ada.apply(fresh_base(None), TASK_TYPE["classification"], STEPS)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step in range(1, STEPS + 1):
        out = model(**batch("classification"))
        penalty = ada.penalty(model)
        assert penalty is not None and penalty.item() > 0
        (out.loss + penalty).backward()
        opt.step()
        ada.after_step(model, step)
        opt.zero_grad()
    singular = [p for n, p in model.named_parameters() if "lora_E" in n]
    layers = len(adapted("classification"))
    assert len(singular) == layers
    assert sum(int((e != 0).sum()) for e in singular) == 2 * layers  # the budget: rank 2 on average
    ada.save(model, tmp_path / "adapter")
    reloaded = ada.load(tmp_path / "adapter", fresh_base)
    model.eval()
    reloaded.eval()
    inputs = {k: v for k, v in batch("classification").items() if k != "labels"}
    with torch.no_grad():  # reloaded layers are cut to their ranks: the same sums in another order
        torch.testing.assert_close(model(**inputs).logits, reloaded(**inputs).logits, rtol=0, atol=1e-6)


@pytest.mark.parametrize("task", ["classification", "chat"])
def test_qlora_keeps_training_after_an_inference_pass(task):
    # bitsandbytes repacks 4-bit CPU weights for a bf16 kernel at their first no-grad forward; that kernel
    # cannot train, so validation would break the next step unless the method keeps the training kernel
    model = build("qlora", task)
    first = steps(model, task, 2)
    model.eval()
    with torch.no_grad():
        model(**{k: v for k, v in batch(task).items() if k in ("input_ids", "attention_mask")})
    later = steps(model, task, 2)
    assert later[-1] < first[0]


@pytest.mark.parametrize("name", ["prefix", "prompt", "lora"])
def test_batched_generation_answers_as_one_by_one(name):
    """Left padding must not change an answer: peft drops position ids under prompt learning, which once made
    the padded rows of a batch answer differently (and validation scores of prefix/prompt runs wrong)."""
    from tunesmith.generation import GenerationSettings, generate

    model = build(name, "chat")
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(2)) * 0.5)
    prompts = [[5, 17, 42, 8, 99, 23, 61, 7, 3], [11, 4], [250, 31, 77, 12]]
    settings = GenerationSettings(max_new_tokens=8)
    alone = [generate(model, [p], settings, pad_id=0, stop_ids=[], batch_size=1)[0] for p in prompts]
    assert generate(model, prompts, settings, pad_id=0, stop_ids=[], batch_size=3) == alone


@pytest.mark.parametrize("name", ["prefix", "prompt"])
def test_a_prompt_learning_decoder_answers_with_its_virtual_tokens(name):
    """transformers 5's generate drops peft's prefix after the first step (the base model's answer came
    out) and reads prompt tuning's cached steps at wrong positions; tunesmith decodes these models by
    whole forward passes, as training computed them."""
    from tunesmith.generation import GenerationSettings, generate

    model = build(name, "chat").eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(3)) * 2)
    prompt, settings = [5, 17, 42, 8, 99, 23], GenerationSettings(max_new_tokens=6)
    ids = torch.tensor([prompt])
    with torch.no_grad():
        for _ in range(6):  # greedy decoding by hand, one whole forward pass per token
            ids = torch.cat(
                [ids, model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -1:].argmax(-1)], 1
            )
    by_hand = ids[0, len(prompt) :].tolist()
    assert generate(model, [prompt], settings, pad_id=0, stop_ids=[])[0] == by_hand
    untuned = generate(base(name, "chat"), [prompt], settings, pad_id=0, stop_ids=[])[0]
    assert by_hand != untuned


@pytest.mark.parametrize("name", ["lora", "prefix"])
def test_an_observer_sees_each_new_token_and_can_end_the_answer(name):
    """The server streams through an observer on both decoding paths (generate, and forward passes for
    prompt learning): it must see exactly the tokens returned, and stopping it ends the answer there."""
    from tunesmith.generation import GenerationSettings, generate

    class Watch:
        def __init__(self, stop_after: int | None):
            self.seen: list[int] = []
            self.stop_after = stop_after
            self.stopped = False

        def put(self, token: int) -> None:
            self.seen.append(token)
            self.stopped = self.stop_after is not None and len(self.seen) >= self.stop_after

    model = build(name, "chat").eval()
    prompt, settings = [5, 17, 42, 8, 99, 23], GenerationSettings(max_new_tokens=7)
    plain = generate(model, [prompt], settings, pad_id=-1, stop_ids=[])[0]
    watch = Watch(None)
    assert generate(model, [prompt], settings, pad_id=-1, stop_ids=[], observer=watch)[0] == plain
    assert watch.seen == plain and len(plain) == 7
    early = Watch(3)
    assert generate(model, [prompt], settings, pad_id=-1, stop_ids=[], observer=early)[0] == plain[:3]
