"""Streamed text with a real tokenizer: the pieces add up to the answer, cut before the first stop string,
and no piece shows the beginning of a stop string that later completes."""

from __future__ import annotations

from tunesmith.serving.text_stream import TextStream


def test_pieces_add_up_and_stop_strings_cut(smollm_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm_dir)
    ids = tokenizer("  Install the package. Then END of story", add_special_tokens=False)["input_ids"]
    pieces: list[str] = []
    stream = TextStream(tokenizer, ["END"], pieces.append)
    for token in ids:
        stream.put(token)
        if stream.stopped:
            break
    assert stream.hit_stop and stream.finish() == "Install the package. Then"
    assert "".join(pieces).rstrip() == "Install the package. Then"
    assert not any("E" in p for p in pieces)
    whole = TextStream(tokenizer, [], None)
    for token in ids:
        whole.put(token)
    assert whole.finish() == "Install the package. Then END of story" and not whole.hit_stop
