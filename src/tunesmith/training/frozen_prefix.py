"""Train without re-running an encoder's frozen bottom: its outputs, computed once per text and kept.

When a method trains nothing in the embeddings and the first k blocks of the layer stack (LoRA on the top
layers, `freeze`), those compute the same function of each input at every epoch and every validation.
`FrozenPrefixCache` runs them once per distinct input (in the first epoch and the first validation), keeps
block k-1's output at the real tokens, and from then on a pass starts at block k: the frozen bottom costs
neither a forward nor a backward pass.

The frozen bottom always runs in eval mode inside the cache (no dropout), whether an input is served from the
cache or computed, so the cache decides no result: a test compares losses and gradients with and without it.
It applies to one process or DDP (not to sharded weights), to an encoder whose backbone has `embeddings` and
a layer stack, and to inputs given as right-padded ids; anything else runs the model as it is. It proves
itself on a first batch (its path's last hidden states equal the model's own) and stays off otherwise.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from tunesmith.methods.base import layer_stack

INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")
"""The batch keys the backbone's frozen bottom depends on."""
SELF_CHECK_TOLERANCE = 1e-4
"""Largest difference (relative to the largest activation) between the cached path's last hidden states and
the model's own on the first batch; above it the cache stays off."""


@dataclass
class FrozenPrefix:
    """Where a model's frozen bottom ends: its backbone, the backbone's embeddings and the first `depth`
    blocks of its layer stack, none of them with a trainable parameter."""

    backbone: torch.nn.Module
    embeddings: torch.nn.Module
    blocks: list[torch.nn.Module]

    @property
    def depth(self) -> int:
        return len(self.blocks)


def frozen_prefix(model: torch.nn.Module) -> FrozenPrefix | None:
    """The frozen bottom of `model`, or None when it has none a cache can serve (no embeddings module above
    the layer stack, trainable embeddings, or a first block that trains)."""
    try:
        stack_name, stack = layer_stack(model)
    except ValueError:
        return None
    parts = stack_name.split(".")
    backbone = None
    for end in range(len(parts) - 1, -1, -1):  # the nearest module above the stack with embeddings
        candidate = model.get_submodule(".".join(parts[:end]))
        if isinstance(getattr(candidate, "embeddings", None), torch.nn.Module):
            backbone = candidate
            break
    if backbone is None or _trains(backbone.embeddings):
        return None
    depth = 0
    while depth < len(stack) and not _trains(stack[depth]):
        depth += 1
    if depth == 0 or depth == len(stack):  # nothing frozen, or nothing trained in the stack (a probe's run)
        return None
    return FrozenPrefix(backbone, backbone.embeddings, list(stack[:depth]))


def _trains(module: torch.nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


class _Reached(Exception):
    """Raised by the last frozen block while filling: carries its output, so the blocks above do not run."""

    def __init__(self, output: torch.Tensor):
        self.output = output


class FrozenPrefixCache:
    """The cache of one training run; `installed()` patches the frozen modules' forwards for its duration
    (their weights and the model's state dict stay as they are)."""

    def __init__(self, prefix: FrozenPrefix, budget_bytes: int):
        self.prefix = prefix
        self.budget_bytes = budget_bytes
        self.stored: dict[bytes, torch.Tensor] = {}
        self.bytes = 0
        self.hits = self.misses = 0
        self._inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None
        self._skipping = False
        self._filling = False
        self._stopping = False
        self._signature = inspect.signature(prefix.backbone.forward)

    @contextmanager
    def installed(self) -> Iterator[FrozenPrefixCache]:
        prefix = self.prefix
        originals: list[tuple[torch.nn.Module, Callable[..., Any]]] = []
        handle = prefix.backbone.register_forward_pre_hook(self._see_inputs, with_kwargs=True)
        try:
            for module, patched in [(prefix.embeddings, self._embed)] + [
                (block, self._block_forward(block)) for block in prefix.blocks
            ]:
                originals.append((module, module.__dict__.get("forward")))
                module.forward = patched  # type: ignore[method-assign]
            yield self
        finally:
            handle.remove()
            for module, original in originals:
                if original is None:
                    del module.forward  # the class's forward again
                else:
                    module.forward = original  # type: ignore[method-assign]
            self._inputs, self._skipping = None, False

    def refusal(self, batch: Mapping[str, torch.Tensor]) -> str | None:
        """Inside `installed()`: None when the cache proves itself on `batch`, else why it must stay off (its
        outputs differ from the model's, or the model does not run the way the cache expects)."""
        try:
            if self.proves_itself(batch):
                return None
            return "its outputs differ from the model's own"
        except (RuntimeError, TypeError, ValueError, AttributeError, KeyError) as exc:
            return f"{type(exc).__name__}: {exc}"

    def proves_itself(self, batch: Mapping[str, torch.Tensor]) -> bool:
        """Whether, inside `installed()`, the backbone's last hidden states for `batch` (filled into the cache,
        then served from it) equal those of the model without the cache."""
        inputs = {k: v for k, v in batch.items() if k in INPUT_KEYS}
        backbone = self.prefix.backbone
        was_training = backbone.training
        backbone.eval()
        try:
            with torch.no_grad():
                self._filling = True
                try:
                    reference = backbone(**inputs).last_hidden_state
                finally:
                    self._filling = False
                backbone(**inputs)  # fills
                served = backbone(**inputs).last_hidden_state
        finally:
            backbone.train(was_training)
        mask = inputs.get("attention_mask", torch.ones(reference.shape[:2], device=reference.device)).bool()
        scale = max(1.0, float(reference[mask].abs().max()))
        return bool((served[mask] - reference[mask]).abs().max() <= SELF_CHECK_TOLERANCE * scale)

    # -- the patched forwards ----------------------------------------------------------------------------------
    def _see_inputs(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        if self._filling:
            return
        self._skipping = False
        bound = self._signature.bind_partial(*args, **kwargs).arguments
        ids = bound.get("input_ids")
        given = {**{k: v for k, v in bound.items() if k != "kwargs"}, **bound.get("kwargs", {})}
        extra = {k for k, v in given.items() if v is not None and v is not False and k not in INPUT_KEYS}
        # ids alone (with their mask and segments) decide the frozen bottom's output; positions, embeddings
        # given directly, past keys or returned hidden states mean the model runs as it is
        if ids is None or extra - {"return_dict"}:
            self._inputs = None
            return
        mask = bound.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(ids)
        self._inputs = (ids, mask, bound.get("token_type_ids"))

    def _embed(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        embeddings = self.prefix.embeddings
        if self._filling or self._inputs is None:
            return _in_eval(embeddings, type(embeddings).forward, args, kwargs)
        served = self._serve(*self._inputs)
        if served is None:
            return _in_eval(embeddings, type(embeddings).forward, args, kwargs)
        self._skipping = True
        return served

    def _block_forward(self, block: torch.nn.Module) -> Callable[..., Any]:
        last = block is self.prefix.blocks[-1]

        def forward(hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if self._skipping and not self._filling:
                return hidden_states  # the cached output of the last frozen block, passed up unchanged
            output = _in_eval(block, type(block).forward, (hidden_states, *args), kwargs)
            if last and self._stopping:
                raise _Reached(output[0] if isinstance(output, tuple) else output)
            return output

        return forward

    def _serve(
        self, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor | None
    ) -> torch.Tensor | None:
        """The last frozen block's output for the batch (zeros at padding), filling what the cache lacks; None
        when the batch is not right-padded."""
        lengths = mask.sum(1)
        positions = torch.arange(mask.shape[1], device=mask.device)
        if not torch.equal(mask.bool(), positions[None, :] < lengths[:, None]):
            return None
        lengths_list = lengths.tolist()
        ids_cpu = ids.cpu()
        types_cpu = types.cpu() if types is not None else None
        keys = [
            ids_cpu[i, :n].numpy().tobytes()
            + (b"" if types_cpu is None else b"|" + types_cpu[i, :n].numpy().tobytes())
            for i, n in enumerate(lengths_list)
        ]
        rows: dict[int, torch.Tensor] = {}
        missing = [i for i, key in enumerate(keys) if key not in self.stored]
        if missing:
            computed = self._fill(ids, mask, types, missing, lengths_list)
            for i, hidden in zip(missing, computed, strict=True):
                rows[i] = hidden
                size = hidden.numel() * hidden.element_size()
                if self.bytes + size <= self.budget_bytes:
                    self.stored[keys[i]] = hidden
                    self.bytes += size
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        first = rows[missing[0]] if missing else self.stored[keys[0]]
        out = first.new_zeros(ids.shape[0], ids.shape[1], first.shape[-1])
        for i, n in enumerate(lengths_list):
            out[i, :n] = rows[i] if i in rows else self.stored[keys[i]]
        return out

    def _fill(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        types: torch.Tensor | None,
        rows: list[int],
        lengths: list[int],
    ) -> list[torch.Tensor]:
        """The last frozen block's output at the real tokens of `rows`, computed by the backbone's own forward
        (stopped there), without gradients."""
        width = max(lengths[i] for i in rows)
        index = torch.tensor(rows, device=ids.device)
        inputs = {"input_ids": ids[index, :width], "attention_mask": mask[index, :width]}
        if types is not None:
            inputs["token_type_ids"] = types[index, :width]
        self._filling = self._stopping = True
        try:
            with torch.no_grad():
                self.prefix.backbone(**inputs)
            raise RuntimeError("the backbone did not reach its last frozen block")
        except _Reached as reached:
            hidden = reached.output
        finally:
            self._filling = self._stopping = False
        return [hidden[j, : lengths[i]].detach().clone() for j, i in enumerate(rows)]


def _in_eval(module: torch.nn.Module, forward: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """`forward` of a frozen module in eval mode (no dropout), as the cache computes it."""
    if module.training:
        module.eval()
    return forward(module, *args, **kwargs)
