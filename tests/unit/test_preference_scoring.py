"""From a model to preference Scores: answers masked as chat masks them, chosen and rejected in one batch,
and the reference from the same LoRA model with its adapter off, equal to a separate frozen copy."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoTokenizer

from tests.conftest import tiny_llama
from tunesmith.data.chat_encoding import IGNORE, encode_chat
from tunesmith.tasks.preference import LOSSES
from tunesmith.tasks.preference.scoring import answer_logps, batch_scores, padded

PROMPT = [{"role": "user", "content": "Which package holds the ls command?"}]
CHOSEN, REJECTED = "coreutils.", "I think it might be util-linux, or maybe something else entirely."


@pytest.fixture(scope="module")
def tokenizer(smollm_dir):
    return AutoTokenizer.from_pretrained(smollm_dir)


@pytest.fixture(scope="module")
def pair(tokenizer):
    return tuple(
        encode_chat(tokenizer, [*PROMPT, {"role": "assistant", "content": answer}], 256)
        for answer in (CHOSEN, REJECTED)
    )


def pair_scores(model, pairs, pad_id, reference="adapter off", with_kl=False):
    """Every chosen row, then every rejected row, in one batch, as the task collates them."""
    rows = [(e.input_ids, e.labels) for e in [p[0] for p in pairs] + [p[1] for p in pairs]]
    return batch_scores(model, padded(rows, pad_id), True, reference, with_kl)


def lora_model(vocab_size: int) -> torch.nn.Module:
    model = get_peft_model(
        tiny_llama(vocab_size=vocab_size), LoraConfig(r=4, target_modules=["q_proj", "v_proj"])
    )
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)  # a trained adapter: the update matters
    return model


def test_answers_are_masked_exactly_as_chat_masks_them(tokenizer, pair):
    chosen, rejected = pair
    whole = encode_chat(tokenizer, [*PROMPT, {"role": "assistant", "content": CHOSEN}], 256)
    assert chosen == whole
    answer = [t for t, label in zip(chosen.input_ids, chosen.labels, strict=True) if label != IGNORE]
    assert tokenizer.decode(answer) == CHOSEN + "<|im_end|>\n"  # the answer and the end of its turn
    n = len(chosen.input_ids) - chosen.supervised
    assert chosen.input_ids[:n] == rejected.input_ids[:n]  # one prompt, two answers


def test_answer_log_probabilities_equal_the_full_log_softmax_over_supervised_tokens_only(
    tokenizer, pair, monkeypatch
):
    model = lora_model(len(tokenizer)).eval()
    batch = padded([(e.input_ids, e.labels) for e in pair], tokenizer.pad_token_id)
    with torch.no_grad():
        summed, count, logits, _ = answer_logps(model, batch)
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logp = full[:, :-1].log_softmax(-1)
    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE
    expected = (logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask).sum(-1)
    assert torch.allclose(summed, expected, atol=1e-4)
    assert count.tolist() == [e.supervised for e in pair]
    assert logits.shape[0] == int(mask.sum())  # one vocabulary row per answer token, none for the prompt

    # a model whose head is more than a projection runs its own forward, keeping whole columns: same sums
    monkeypatch.setattr("tunesmith.tasks.answer_logits.backbone_and_head", lambda model: None)
    with torch.no_grad():
        again = answer_logps(model, batch)[0]
    assert torch.allclose(again, expected, atol=1e-4)


def test_the_reference_with_the_adapter_off_equals_a_frozen_copy_and_dpo_starts_at_log_two(tokenizer, pair):
    model = lora_model(len(tokenizer))
    frozen = tiny_llama(vocab_size=len(tokenizer)).eval()  # the same seed: the base weights, a second copy
    assert torch.equal(frozen.model.embed_tokens.weight, model.get_base_model().model.embed_tokens.weight)
    shared = pair_scores(model, [pair, pair], tokenizer.pad_token_id)
    copied = pair_scores(model, [pair, pair], tokenizer.pad_token_id, reference=frozen)
    assert torch.allclose(shared.reference_chosen, copied.reference_chosen, atol=1e-5)
    assert torch.allclose(shared.reference_rejected, copied.reference_rejected, atol=1e-5)
    assert not torch.allclose(shared.chosen, shared.reference_chosen, atol=1e-3)  # the adapter is on again
    assert shared.chosen_tokens.tolist() == [pair[0].supervised] * 2

    # with the adapter off the model is its own reference: every DPO log-ratio is 0, the loss log 2
    with model.disable_adapter():
        start = pair_scores(model, [pair], tokenizer.pad_token_id, reference="itself", with_kl=True)
    assert float(LOSSES.get("dpo")()(start).loss.detach()) == pytest.approx(0.6931472, abs=1e-6)
    assert start.kl.abs().sum() == 0
    on = pair_scores(model, [pair], tokenizer.pad_token_id, reference=frozen, with_kl=True)
    assert (on.kl > 0).all()  # the adapter moved every row's next-token distributions away from the base
    loss = LOSSES.get("dpo")()(shared).loss
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_losses_without_a_reference_do_not_compute_one(tokenizer, pair):
    scores = pair_scores(lora_model(len(tokenizer)), [pair], tokenizer.pad_token_id, reference=None)
    assert scores.reference_chosen is None and scores.reference_rejected is None
    assert torch.isfinite(LOSSES.get("simpo")()(scores).loss)


def test_kto_batches_score_each_prompt_with_the_next_examples_completion_for_the_kl_point(
    tokenizer, tmp_path
):
    import json

    from tunesmith.config import build_config
    from tunesmith.tasks import build_task

    records = [
        {"prompt": "Which package holds ls?", "completion": "coreutils.", "label": True},
        {"prompt": "What is htop?", "completion": "A text editor.", "label": False},
        {"prompt": "What is apt?", "completion": "The package manager.", "label": True},
    ]
    path = tmp_path / "kto.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    config = build_config({"task": {"name": "preference", "loss": "kto"}, "model": {"max_length": 128}})
    task = build_task(config.task, config.model)
    task.use_tokenizer(tokenizer)
    features = task.encode(task.read(path, "auto"), tokenizer)
    model = lora_model(len(tokenizer)).eval()
    task.prepare_model(model)
    assert task.pack  # packed, each completion's prompt once; the mismatched rows packed apart
    packed = task.collate(features, tokenizer.pad_token_id)
    task.pack = False
    batch = task.collate(features, tokenizer.pad_token_id)
    with torch.no_grad():
        scores = batch_scores(model, batch, False, "adapter off")
        again = batch_scores(model, packed, False, "adapter off")
        turns = [
            {"role": "user", "content": records[0]["prompt"]},
            {"role": "assistant", "content": "A text editor."},
        ]
        alone = encode_chat(tokenizer, turns, 128)
        expected = answer_logps(model, padded([(alone.input_ids, alone.labels)], tokenizer.pad_token_id))[0]
    for side in ("chosen", "reference_chosen", "mismatched", "reference_mismatched"):
        assert torch.allclose(getattr(scores, side), getattr(again, side), atol=1e-4), side
    assert scores.mismatched.shape == (3,) and scores.reference_mismatched.shape == (3,)
    assert float(scores.mismatched[0]) == pytest.approx(
        float(expected[0]), abs=1e-4
    )  # ls question, htop answer
    assert not torch.allclose(
        scores.mismatched, scores.reference_mismatched
    )  # the adapter off for the reference
    assert torch.isfinite(LOSSES.get("kto")()(scores).loss)


PAIRS = [
    {"prompt": "Which package holds the ls command?", "chosen": CHOSEN, "rejected": REJECTED},
    {"prompt": "What is htop?", "chosen": "An interactive process viewer.", "rejected": "An editor."},
    # answers that start alike: their first tokens are shared too, and still count for both
    {
        "prompt": "What does apt do?",
        "chosen": "It installs packages.",
        "rejected": "It installs nothing at all.",
    },
]


def pair_task(tokenizer, tmp_path):
    """A DPO task (max_length 64) and its features of PAIRS, read from a file as training reads them."""
    import json

    from tunesmith.config import build_config
    from tunesmith.tasks import build_task

    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in PAIRS), encoding="utf-8")
    config = build_config({"task": {"name": "preference"}, "model": {"max_length": 64}})
    task = build_task(config.task, config.model)
    task.use_tokenizer(tokenizer)
    return task, task.encode(task.read(path, "auto"), tokenizer)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_pairs_packed_with_their_prompt_once_score_and_train_exactly_as_padded_rows(
    tokenizer, tmp_path, attention
):
    task, features = pair_task(tokenizer, tmp_path)
    model = lora_model(len(tokenizer))
    model.get_base_model().config._attn_implementation = attention
    task.prepare_model(model)
    assert task.pack
    packed = task.collate(features, tokenizer.pad_token_id)
    padded_rows = sum(len(ids) for f in features for ids, _ in f["rows"])
    assert packed["input_ids"].shape[0] > 1  # max_length 64: more than one packed row, the last with padding
    assert int((packed["position_ids"] == 0).sum()) < padded_rows  # fewer tokens: each prompt once
    task.pack = False
    batch = task.collate(features, tokenizer.pad_token_id)

    def scored(b):
        model.zero_grad()
        scores = batch_scores(model, b, True, "adapter off", with_kl=True)
        LOSSES.get("dpo")()(scores).loss.backward()
        grads = [p.grad.clone() for n, p in model.named_parameters() if "lora_" in n]
        return scores, grads

    (expected, expected_grads), (got, got_grads) = scored(batch), scored(packed)
    assert int(packed["input_ids"].numel()) < int(batch["input_ids"].numel())
    for side in ("chosen", "rejected", "reference_chosen", "reference_rejected", "kl"):
        assert torch.allclose(getattr(expected, side), getattr(got, side), atol=1e-4), side
    assert torch.equal(expected.chosen_tokens, got.chosen_tokens)
    assert torch.equal(expected.rejected_tokens, got.rejected_tokens)
    for a, b in zip(expected_grads, got_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-3)


def test_the_reference_is_computed_the_first_time_an_example_trains_and_then_read_back(tokenizer, tmp_path):
    task, features = pair_task(tokenizer, tmp_path)
    model = lora_model(len(tokenizer))
    task.prepare_model(model)
    first = task.collate(features, tokenizer.pad_token_id)
    assert "reference_logps" not in first
    loss, n = task.loss(model, first)
    with torch.no_grad():
        live = batch_scores(model, first, True, "adapter off")
    again = task.collate(features, tokenizer.pad_token_id)
    stored = again["reference_logps"]
    assert torch.allclose(stored, torch.cat([live.reference_chosen, live.reference_rejected]), atol=1e-5)

    def no_reference_pass():
        raise AssertionError("the stored reference should have been used")

    model.disable_adapter = no_reference_pass  # a tripwire: the second epoch must not switch the adapter off
    second, _ = task.loss(model, again)
    assert float(second.detach()) == pytest.approx(float(loss.detach()), abs=1e-4) and n == len(PAIRS)
