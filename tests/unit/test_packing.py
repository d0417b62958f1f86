"""Packing keeps every token and label, never mixes examples: on the real SmolLM2 (Llama architecture, SDPA
attention), the logits of a packed row equal those of each example run alone."""

import pytest
import torch

from tunesmith.data.packing import IGNORE, collate_packed, collate_padded, packing_supported, rows_first_fit


def feature(ids, labels=None):
    return {"input_ids": list(ids), "labels": list(labels if labels is not None else ids), "length": len(ids)}


def test_first_fit_rows_hold_every_example_once_within_capacity():
    lengths = [5, 9, 3, 7, 2, 8, 1, 4]
    rows = rows_first_fit(lengths, capacity=10)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 10 for row in rows)
    assert len(rows) == 4  # 39 tokens: as few rows of 10 as possible
    assert rows_first_fit([12, 3], capacity=10) == [[0], [1]]  # too long: a row of its own


def test_packed_batch_keeps_every_token_and_never_mixes_labels():
    feats = [feature(range(100, 105)), feature(range(200, 203), [IGNORE, 201, 202]), feature(range(300, 307))]
    batch = collate_packed(feats, capacity=10, pad_id=0)
    ids, labels, pos = batch["input_ids"], batch["labels"], batch["position_ids"]
    real = ids[ids != 0].tolist()
    assert sorted(real) == sorted(t for f in feats for t in f["input_ids"])
    for row in range(ids.shape[0]):
        starts = (pos[row] == 0).nonzero().squeeze(-1).tolist()
        bounds = [*starts, ids.shape[1]]
        for a, b in zip(bounds, bounds[1:], strict=False):
            segment = ids[row, a:b].tolist()
            if segment[0] == 0:  # padding tail: all ignored
                assert (labels[row, a:b] == IGNORE).all()
                continue
            source = next(f for f in feats if f["input_ids"] == segment)
            # first label of each example ignored, others exactly the example's own labels
            assert labels[row, a].item() == IGNORE
            assert labels[row, a + 1 : b].tolist() == source["labels"][1:]
            assert pos[row, a:b].tolist() == list(range(b - a))


def test_one_row_lays_every_example_end_to_end_with_its_bounds():
    feats = [feature(range(100, 105)), feature(range(200, 203), [IGNORE, 201, 202]), feature(range(300, 307))]
    batch = collate_packed(feats, capacity=4, pad_id=0, one_row=True)  # the capacity bounds rows only
    assert batch["input_ids"][0].tolist() == [*range(100, 105), *range(200, 203), *range(300, 307)]
    assert batch["cu_seq_lens_q"].tolist() == [0, 5, 8, 15]
    assert batch["attention_mask"].tolist() == [[1] * 15]  # no padding: no dense mask built either
    assert batch["position_ids"][0].tolist() == [*range(5), *range(3), *range(7)]
    assert batch["labels"][0].tolist() == [
        IGNORE,
        *range(101, 105),
        IGNORE,
        201,
        202,
        IGNORE,
        *range(301, 307),
    ]
    assert "cu_seq_lens_q" not in collate_packed(feats, capacity=10, pad_id=0)


def test_padded_batch_masks_padding():
    batch = collate_padded([feature([5, 6, 7]), feature([8])], pad_id=0)
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 6, 7], [IGNORE, IGNORE, IGNORE]]


@pytest.mark.slow
def test_packed_row_attends_only_within_each_example(smollm_model):
    model = smollm_model
    assert packing_supported(model)
    torch.manual_seed(0)
    examples = [torch.randint(10, 5000, (n,)).tolist() for n in (7, 12, 5)]
    batch = collate_packed([feature(e) for e in examples], capacity=64, pad_id=0)
    assert batch["input_ids"].shape[0] == 1
    with torch.inference_mode():
        # use_cache=False as in training: a KV cache turns transformers' packed-sequence detection off
        packed = model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
        ).logits[0]
        alone = [model(input_ids=torch.tensor([e])).logits[0] for e in examples]
    row = batch["input_ids"][0].tolist()
    starts = (batch["position_ids"][0] == 0).nonzero().squeeze(-1).tolist()
    for start in starts:
        n = next(len(e) for e in examples if row[start : start + len(e)] == e)
        expected = next(a for e, a in zip(examples, alone, strict=True) if row[start : start + len(e)] == e)
        # float32 sums in another order (a longer row, other matmul blocking): up to 2.4e-4 on an AVX-512/AMX
        # CPU; attention that leaked across examples would move logits by whole units
        torch.testing.assert_close(packed[start : start + n], expected, atol=1e-3, rtol=1e-4)


def test_pad_fills_out_rows_on_the_right_or_the_left_with_a_mask():
    from tunesmith.data.padding import pad

    ids, mask = pad([[5, 6, 7], [8], []], 0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    ids, mask = pad([[5, 6, 7], [8]], -1, left=True)
    assert ids.tolist() == [[5, 6, 7], [-1, -1, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
