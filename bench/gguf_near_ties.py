"""How far does an f16 (or other) GGUF file move the run's logits, and where does its greedy answer part?

For a chat run, the GGUF file is written as `tunesmith export --format gguf --quant Q` writes it (without the
check, so a file the check refuses can be looked at), then on the export check's 6 conversations:

- teacher-forced on the run's own greedy answers (16 tokens), the largest |llama.cpp logit - run logit| over
  every answer position and vocabulary entry (the rounding's reach);
- the most it moves the run's margin between its chosen token and its 10 runners-up (the reach that can swap
  a greedy choice; the largest logit difference is usually in tokens far down the ranking);
- for an answer that parts from the run's, the position and the run's own logit margin between its token and
  the file's token there (a margin under the rounding's reach is a near-tie the rounding may swap).

    python bench/gguf_near_ties.py RUN [--quant f16]

Last line: `max_logit_difference X.XXXX max_margin_shift X.XXXX worst_parting_margin X.XXXX` (the last: the
largest run margin at which an answer parted, `none` when every answer is identical). export/probe.NEAR_TIE is
set from these.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from tunesmith.export.gguf import FILE, gguf_plan
from tunesmith.export.llama_reader import LlamaFile
from tunesmith.export.probe import NEW_TOKENS, conversations, outputs_of, parting_margin
from tunesmith.inference import load_run, read_run

RUNNERS_UP = 10
"""The run's next best tokens after its own choice whose margins `margin_shift` follows."""


def run_logits(model: torch.nn.Module, prompt: list[int], answer: list[int]) -> np.ndarray:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + answer])).logits[0].float().numpy()
    return logits[len(prompt) - 1 : len(prompt) - 1 + len(answer)]


def margin_shift(ours: np.ndarray, theirs: np.ndarray, answer: list[int], top: int = RUNNERS_UP) -> float:
    """The most the file moves the run's margin between its chosen token and any of its `top` runners-up, over
    the answer's positions: a runner-up within this many logits of the chosen token could be swapped in."""
    worst = 0.0
    for j, token in enumerate(answer):
        rivals = np.argsort(-ours[j])[: top + 1]
        rivals = rivals[rivals != token][:top]
        ours_gap, their_gap = ours[j, token] - ours[j, rivals], theirs[j, token] - theirs[j, rivals]
        worst = max(worst, float(np.abs(ours_gap - their_gap).max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path)
    parser.add_argument("--quant", default="f16")
    args = parser.parse_args()
    trained, spec = load_run(args.run), read_run(args.run)
    reference = outputs_of(trained.task, trained.tokenizer, trained.model, trained.pad_id).tokens
    prompts = [trained.task.prompt_ids(m) for m in conversations(trained.task)]
    reach, shift, partings = 0.0, 0.0, []
    with tempfile.TemporaryDirectory() as tmp:
        gguf_plan(spec, args.quant).write(trained, Path(tmp))
        file = LlamaFile(Path(tmp) / FILE)
        try:
            for i, (prompt, ours) in enumerate(zip(prompts, reference, strict=True)):
                theirs = file.greedy(prompt, NEW_TOKENS)
                ours_logits = run_logits(trained.model, prompt, ours)
                file_logits = file.answer_scores(prompt, ours)
                moved = float(np.abs(file_logits - ours_logits).max())
                reach = max(reach, moved)
                shift = max(shift, margin_shift(ours_logits, file_logits, ours))
                margin = parting_margin(trained.model, prompt, ours, theirs)
                if margin is None:
                    same = "identical" if ours == theirs else f"stops at {len(theirs)} of {len(ours)}"
                    print(f"prompt {i}: {same}; max |logit difference| {moved:.4f}")
                    continue
                partings.append(margin)
                k = next(j for j, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b)
                print(
                    f"prompt {i}: parts at token {k}; run margin {margin:.4f}; max |logit difference| {moved:.4f}"
                )
        finally:
            file.close()
    worst = f"{max(partings):.4f}" if partings else "none"
    print(f"max_logit_difference {reach:.4f} max_margin_shift {shift:.4f} worst_parting_margin {worst}")


if __name__ == "__main__":
    main()
