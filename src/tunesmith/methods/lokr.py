"""LoKr (Kronecker product, from LyCORIS) via peft: the update is C kron (A B), a small dense factor times
a low-rank one; fewer parameters than LoRA at the same rank. Same keys as `loha`, plus the factor size."""

from __future__ import annotations

from typing import Any, Literal

from tunesmith.methods import METHODS
from tunesmith.methods.loha import Loha, LohaParams


class LokrParams(LohaParams):
    name: Literal["lokr"] = "lokr"  # type: ignore[assignment]
    decompose_factor: int = -1
    """Size of the Kronecker factor; -1 picks the one nearest the square root of the layer's width."""


@METHODS.register("lokr")
class Lokr(Loha):
    preference = 5
    fallback = None
    name = "lokr"
    Params = LokrParams
    default_learning_rate = 1e-3
    params: LokrParams

    def config_type(self) -> Any:
        from peft import LoKrConfig

        return LoKrConfig

    def extra_config(self) -> dict[str, Any]:
        return {"decompose_factor": self.params.decompose_factor}
