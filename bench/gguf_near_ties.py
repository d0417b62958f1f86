"""How far does an f16 (or other) GGUF file move the run's logits, and where does its greedy answer part?

For a chat run, the GGUF file is written as `tunesmith export --format gguf --quant Q` writes it (without the
check, so a file the check refuses can be looked at), then on the export check's 6 conversations:

- teacher-forced on the run's own greedy answers (16 tokens), the largest |llama.cpp logit - run logit| over
  every answer position and vocabulary entry (the rounding's reach);
- for an answer that parts from the run's, the position and the run's own logit margin between its token and
  the file's token there (a margin under the rounding's reach is a near-tie the rounding may swap).

    python bench/gguf_near_ties.py RUN [--quant f16]

Last line: `max_logit_difference X.XXXX worst_parting_margin X.XXXX` (the second: the largest run margin at
which an answer parted, `none` when every answer is identical). export/probe.NEAR_TIE is set from these.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from tunesmith.export.gguf import FILE, gguf_plan
from tunesmith.export.llama_reader import LlamaFile
from tunesmith.export.probe import NEW_TOKENS, conversations, outputs_of
from tunesmith.inference import load_run, read_run


def run_logits(model: torch.nn.Module, prompt: list[int], answer: list[int]) -> np.ndarray:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + answer])).logits[0].float().numpy()
    return logits[len(prompt) - 1 : len(prompt) - 1 + len(answer)]


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
    reach, partings = 0.0, []
    with tempfile.TemporaryDirectory() as tmp:
        gguf_plan(spec, args.quant).write(trained, Path(tmp))
        file = LlamaFile(Path(tmp) / FILE)
        try:
            for i, (prompt, ours) in enumerate(zip(prompts, reference, strict=True)):
                theirs = file.greedy(prompt, NEW_TOKENS)
                ours_logits = run_logits(trained.model, prompt, ours)
                moved = float(np.abs(file._answer_scores(prompt, ours) - ours_logits).max())
                reach = max(reach, moved)
                k = next((j for j, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), None)
                if k is None:
                    same = "identical" if ours == theirs else f"stops at {len(theirs)} of {len(ours)}"
                    print(f"prompt {i}: {same}; max |logit difference| {moved:.4f}")
                    continue
                margin = float(ours_logits[k, ours[k]] - ours_logits[k, theirs[k]])
                partings.append(margin)
                print(
                    f"prompt {i}: parts at token {k}; run margin {margin:.4f}; max |logit difference| {moved:.4f}"
                )
        finally:
            file.close()
    worst = f"{max(partings):.4f}" if partings else "none"
    print(f"max_logit_difference {reach:.4f} worst_parting_margin {worst}")


if __name__ == "__main__":
    main()
