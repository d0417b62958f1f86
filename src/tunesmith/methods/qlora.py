"""QLoRA (Dettmers et al. 2023): LoRA on a base model whose linear layers are stored in 4 bits (NF4, with
double quantization) or 8 bits by bitsandbytes; the adapter and the task head train in full precision.
The base takes about a quarter (4-bit) of its float32 memory.

bitsandbytes runs on CUDA and, since 0.46, on the CPU too (slower per step than float32 there: the weights
are dequantized on the fly; the point on a CPU is memory). It is an optional dependency:
`pip install 'tunesmith[qlora]'`. Without it the method is refused before any model loads, with what to use
instead. A QLoRA run reloads on its quantized base, so evaluation scores the model as trained; `tunesmith
export --format merged` dequantizes the base before it merges the adapter."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch

from tunesmith.methods import METHODS
from tunesmith.methods.lora import Lora, LoraParams

HEADS = ["classifier", "score", "qa_outputs", "lm_head"]
"""Task heads (trained or tied to the embeddings) that stay in full precision."""


class QloraParams(LoraParams):
    name: Literal["qlora"] = "qlora"  # type: ignore[assignment]
    bits: Literal[4, 8] = 4
    """Bits per base weight: 4 (NF4 or FP4 blocks) or 8 (LLM.int8)."""
    quant_type: Literal["nf4", "fp4"] = "nf4"
    """4-bit code: NF4 (normal-float, QLoRA's) or plain FP4."""
    double_quant: bool = True
    """Quantize the per-block scales too (about 0.4 bits per weight saved)."""


@METHODS.register("qlora")
class Qlora(Lora):
    preference = 8
    fallback = 1
    name = "qlora"
    Params = QloraParams
    default_learning_rate = 5e-4
    params: QloraParams
    cannot_shard = "bitsandbytes' 4-bit weights are not tensors FSDP can split; use lora with bf16"
    merge_tolerance = 1e-3
    """The run's model computes with bitsandbytes' kernels; its merged export with the dequantized float
    weights agrees to float rounding (about 1e-5 in the logits)."""

    def incompatibility(self, task: Any) -> str | None:
        if importlib.util.find_spec("bitsandbytes") is None:
            return (
                "it needs bitsandbytes, which is not installed: `pip install 'tunesmith[qlora]'` "
                "(works on CUDA and on the CPU), or use lora, which trains the same adapter on a float base"
            )
        return None

    def load_kwargs(self, device: str) -> dict[str, Any]:
        from transformers import BitsAndBytesConfig

        p = self.params
        quantization = BitsAndBytesConfig(
            load_in_4bit=p.bits == 4,
            load_in_8bit=p.bits == 8,
            bnb_4bit_quant_type=p.quant_type,
            bnb_4bit_use_double_quant=p.double_quant,
            bnb_4bit_compute_dtype=torch.float32 if device == "cpu" else torch.bfloat16,
            llm_int8_skip_modules=HEADS,
        )
        return {"quantization_config": quantization, "device_map": {"": device}}

    def wrapped(self, model: torch.nn.Module) -> torch.nn.Module:
        """bitsandbytes repacks a 4-bit layer's weights for a faster bf16 CPU kernel at its first inference;
        that kernel cannot train, so a validation pass would break the next training step, and it rounds
        differently from training. Keep every layer on the kernel it trains with."""
        for module in model.modules():
            if hasattr(module, "support_avx512bf16_for_cpu"):
                module.support_avx512bf16_for_cpu = False
        return super().wrapped(model)

    def merged(self, folder: Path, load_base: Callable[[str | None], torch.nn.Module]) -> torch.nn.Module:
        """Dequantize a freshly loaded base (bitsandbytes repacks CPU weights at their first inference, after
        which they no longer dequantize), then merge the adapter into the float weights."""
        from peft import PeftModel

        base = load_base(None)
        dtype = next(p.dtype for p in base.parameters() if p.is_floating_point())
        base = base.dequantize(dtype=dtype)
        return PeftModel.from_pretrained(base, folder).merge_and_unload()

    def apply(
        self, model: torch.nn.Module, task_type: str | None, total_steps: int | None = None
    ) -> torch.nn.Module:
        from peft import prepare_model_for_kbit_training

        # float32 norms and embeddings, inputs that carry gradients; checkpointing stays train's choice
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        return super().apply(model, task_type, total_steps)
