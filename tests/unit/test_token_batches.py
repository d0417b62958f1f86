"""Token-capped batches: capped in examples and padded tokens, every example once, and the same numbers as
uncapped batches on the real MiniLM."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tunesmith.data.token_batches import token_capped_batches


def test_batches_hold_each_example_once_longest_first_within_both_caps():
    lengths = [(i * 53) % 400 + 3 for i in range(300)] + [5000]
    batches = list(token_capped_batches(lengths, 64, 4096))
    assert sorted(i for b in batches for i in b) == list(range(301))
    assert batches[0] == [300]  # longer than the cap on its own: a batch of one, not an error
    for batch in batches:
        assert len(batch) <= 64
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 4096
    firsts = [lengths[b[0]] for b in batches]
    assert firsts == sorted(firsts, reverse=True)
    short = [12] * 200
    # short texts: no change
    assert [len(b) for b in token_capped_batches(short, 64, 4096)] == [64, 64, 64, 8]
    assert [len(b) for b in token_capped_batches(lengths, 64, None)] == [64] * 4 + [45]


def test_the_probe_embeddings_do_not_depend_on_the_token_cap(minilm_dir: Path):
    from transformers import AutoModel, AutoTokenizer

    from tunesmith.evaluation.baseline import embed

    encoder = AutoModel.from_pretrained(minilm_dir)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    texts = ["short one", "a somewhat longer sentence about packages " * 6, "mid length text here " * 3] * 5
    capped = embed(encoder, tokenizer, texts, 128, max_tokens=64)
    uncapped = embed(encoder, tokenizer, texts, 128)
    assert np.allclose(capped, uncapped, atol=1e-5)
    assert np.allclose(capped[0], capped[3], atol=1e-5) and not np.allclose(capped[0], capped[1], atol=1e-2)
