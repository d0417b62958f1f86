"""DoRA (weight-decomposed LoRA, Liu et al. 2024) via peft: each adapted weight is split into a magnitude
vector (trained) and a direction that LoRA updates. It tends to match full fine-tuning more closely than
LoRA at the same rank, at about 1.3-2x LoRA's step time (the norm of the adapted weight is recomputed every
step). Same keys as `lora`; peft's own layer forward (the fused LoRA layer does not cover DoRA)."""

from __future__ import annotations

from typing import Literal

from tunesmith.methods import METHODS
from tunesmith.methods.lora import Lora, LoraParams


class DoraParams(LoraParams):
    name: Literal["dora"] = "dora"  # type: ignore[assignment]


@METHODS.register("dora")
class Dora(Lora):
    preference = 1
    fallback = None
    name = "dora"
    Params = DoraParams
    use_dora = True
