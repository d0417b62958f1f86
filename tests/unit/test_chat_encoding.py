"""Answer-only supervision on the real SmolLM2 tokenizer (ChatML template) and on a tokenizer without one."""

import pytest
from transformers import AutoTokenizer

from tunesmith.data.chat_encoding import DEFAULT_TEMPLATE, IGNORE, _render, encode_chat, ensure_template
from tunesmith.models.catalog import resolve_model

CHAT = [
    {"role": "system", "content": "You answer in one sentence."},
    {"role": "user", "content": "What does apt do?"},
    {"role": "assistant", "content": "It installs Debian packages."},
    {"role": "user", "content": "And dpkg?"},
    {"role": "assistant", "content": "It unpacks single package files."},
]


@pytest.fixture(scope="module")
def smollm_tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct").source)


def supervised_text(tokenizer, encoded) -> str:
    return tokenizer.decode(
        [t for t, label in zip(encoded.input_ids, encoded.labels, strict=True) if label != IGNORE]
    )


@pytest.mark.slow
def test_only_assistant_turns_are_supervised_each_closed_by_end_of_turn(smollm_tokenizer):
    encoded = encode_chat(smollm_tokenizer, CHAT, max_length=512)
    assert not encoded.truncated
    assert supervised_text(smollm_tokenizer, encoded) == (
        "It installs Debian packages.<|im_end|>\nIt unpacks single package files.<|im_end|>\n"
    )
    end_of_turn = smollm_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert [
        t for t, label in zip(encoded.input_ids, encoded.labels, strict=True) if label == end_of_turn
    ] == [end_of_turn] * 2
    # labels equal the inputs where supervised (the model shifts them itself)
    assert all(label in (IGNORE, tok) for tok, label in zip(encoded.input_ids, encoded.labels, strict=True))


@pytest.mark.slow
def test_train_on_prompt_supervises_everything(smollm_tokenizer):
    encoded = encode_chat(smollm_tokenizer, CHAT, max_length=512, train_on_prompt=True)
    assert encoded.labels == encoded.input_ids


@pytest.mark.slow
def test_truncation_keeps_the_start_and_reports_it(smollm_tokenizer):
    full = encode_chat(smollm_tokenizer, CHAT, max_length=512)
    cut = encode_chat(smollm_tokenizer, CHAT, max_length=40)
    assert cut.truncated and cut.input_ids == full.input_ids[:40]
    assert cut.supervised < full.supervised


def test_a_tokenizer_without_template_gets_documented_chatml(tiny_bert_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    assert not tokenizer.chat_template
    assert ensure_template(tokenizer) == DEFAULT_TEMPLATE
    encoded = encode_chat(tokenizer, CHAT[1:3], max_length=128)
    text = supervised_text(tokenizer, encoded)
    assert text.startswith("it installs debian packages.")  # uncased wordpiece
    assert "apt" not in text


@pytest.mark.parametrize("generation_prompt", [False, True])
def test_rendering_matches_apply_chat_template(smollm_tokenizer, tiny_bert_dir, generation_prompt):
    """`_render` uses the compiled template directly for speed; it must give apply_chat_template's text."""
    bert = AutoTokenizer.from_pretrained(tiny_bert_dir)
    ensure_template(bert)
    for tokenizer in (smollm_tokenizer, bert):
        for messages in (CHAT, CHAT[1:2], CHAT[:3], [{"role": "user", "content": "a {{ b }} <|im_end|> é"}]):
            expected = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=generation_prompt
            )
            assert _render(tokenizer, messages, generation_prompt) == expected
