"""The training loop: plain PyTorch, read top to bottom. accelerate handles device and precision.

The loop knows no task and no method: a task gives it `loss(model, batch) -> (summed loss, count)` and
`evaluate`; a method has already decided which parameters are trainable, and may add a penalty to the loss
and act after each step (AdaLoRA's rank budget); `save_best` writes the best model.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from tunesmith.data.token_batches import token_capped_batches
from tunesmith.errors import Interrupted
from tunesmith.evaluation.bootstrap import share_better
from tunesmith.evaluation.metrics import greater_is_better
from tunesmith.methods.base import Method
from tunesmith.sections import TrainConfig
from tunesmith.tasks.base import Evaluation, Task
from tunesmith.training import sharding
from tunesmith.training.checkpoint import (
    LoopState,
    latest_checkpoint,
    load_checkpoint,
    optimizer_state,
    save_checkpoint,
)
from tunesmith.training.distributed import check_process_count, micro_batch_seed
from tunesmith.training.frozen_prefix import FrozenPrefixCache, frozen_prefix
from tunesmith.training.interrupt import StopSignals
from tunesmith.training.progress import MetricsLog, TrainProgress
from tunesmith.training.strategy import strategy_for

BEATS_START = "beats_start_share"
"""Validation record key: the share of paired bootstrap resamples of the validation split in which the checkpoint
beats the start (base) model on train.metric; below train.keep_confidence it does not replace that model."""


@dataclass
class LoopResult:
    state: LoopState
    samples_per_second: float
    seconds: float
    step_seconds: float
    """Time inside optimizer steps (forward, backward, update) only: no validation, no checkpoints."""


def steps_per_epoch(examples: int, cfg: TrainConfig) -> int:
    """Optimizer steps of one epoch: batches, grouped by gradient accumulation."""
    return math.ceil(math.ceil(examples / cfg.batch_size) / cfg.gradient_accumulation)


def total_steps(examples: int, cfg: TrainConfig) -> int:
    """Optimizer steps of a whole run."""
    return steps_per_epoch(examples, cfg) * cfg.epochs


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; biases and normalisation weights get no weight decay. torch's fused kernel where every trained
    tensor is a plain floating-point tensor on the CPU or one CUDA device (sharded DTensors keep the default
    loop): one pass per tensor instead of about ten operators, the same update. SmolLM2-135M's 420 LoRA
    tensors, AdamW and gradient clipping: 36 ms a step per tensor, 17 ms fused (2-core AVX512-BF16 CPU)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    trained = decay + no_decay
    fused = (
        bool(trained)
        and all(type(p.data) is torch.Tensor and p.is_floating_point() for p in trained)
        and len({p.device for p in trained}) == 1
        and trained[0].device.type in ("cpu", "cuda")
    )
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.learning_rate, fused=fused or None)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int) -> Any:
    from transformers import get_scheduler

    name = {"constant": "constant_with_warmup"}.get(cfg.scheduler, cfg.scheduler)
    return get_scheduler(
        name,
        optimizer,
        num_warmup_steps=round(cfg.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )


class TrainLoop:
    def __init__(
        self,
        *,
        task: Task,
        model: torch.nn.Module,
        train_features: Sequence[dict[str, Any]],
        val_features: Sequence[dict[str, Any]],
        cfg: TrainConfig,
        run_dir: Path,
        save_best: Callable[[torch.nn.Module, dict[str, torch.Tensor] | None], None],
        pad_id: int,
        console: Console,
        accelerator: Any,
        on_step: Sequence[Callable[[LoopState, float], None]] = (),
        method: Method | None = None,
        on_validation: Sequence[Callable[[LoopState, dict[str, float]], None]] = (),
        sharded: bool = False,
        start_competes: bool = False,
        restart: dict[str, torch.Tensor] | None = None,
        stop: StopSignals | None = None,
        on_record: Sequence[Callable[[dict[str, Any]], None]] = (),
    ):
        self.task, self.cfg, self.pad_id, self.console = task, cfg, pad_id, console
        self.train_features, self.val_features = train_features, val_features
        self.save_best = save_best
        """Called by the main process with the model and, when it is sharded, its gathered weights."""
        self.on_step = list(on_step)
        """Called after every optimizer step with (state, loss): hooks for search, pruning, tests."""
        self.on_validation = list(on_validation)
        """Called after every validation (its checkpoint written) with (state, metrics): e.g. a search's
        pruner, which may stop the run by raising."""
        self.accelerator = accelerator
        self.world = accelerator.num_processes
        self.main = accelerator.is_main_process
        """Only the main process writes: metrics log, best model, checkpoints (the others compute the same)."""
        check_process_count(cfg, self.world)
        self.method = method
        self.start_competes = start_competes
        """The model at step 0 is the base model: validate it first, and keep it if no checkpoint beats it."""
        self.restart = restart
        """Weights by parameter name that training starts from after step 0's validation (a fresh head)."""
        self.stop = stop
        """Set by SIGTERM or a first Ctrl-C: checkpoint the step in hand and raise Interrupted."""
        self.run_dir = run_dir
        self.checkpoints = run_dir / "checkpoints"
        self._saved_at = time.monotonic()
        self.log = MetricsLog(run_dir / "metrics.jsonl", on_record)
        """metrics.jsonl; each record it writes also goes to `on_record` (the run's trackers)."""
        self.lengths = [f["length"] for f in train_features]
        self.total_steps = total_steps(len(train_features), cfg)
        self.sharded = sharded
        self.strategy = strategy_for(accelerator, sharded)
        """One process, DDP or FSDP (training/strategy.py): how the processes share each step."""
        self.strategy.shard(task, model)
        optimizer = build_optimizer(model, cfg)  # after sharding: it holds the shards
        self.scheduler = build_scheduler(optimizer, cfg, self.total_steps)
        self.model, self.optimizer = self.strategy.prepare(model, optimizer)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]

    def release(self) -> None:
        """Once training is over: drop the optimizer and its state (here and in accelerate) to free memory."""
        self.optimizer = self.scheduler = None  # type: ignore[assignment]
        self.accelerator.free_memory()  # accelerate's own references to them

    @property
    def trained_model(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.model)

    def final_model(self) -> torch.nn.Module:
        """The trained model once training is over, its forward without the training's autocast: the final
        evaluation and the saved model run in full precision, as the base model they are compared with."""
        return self.accelerator.unwrap_model(self.model, keep_fp32_wrapper=False)

    def run(self, resume: bool = False) -> LoopResult:
        state = self._restore() if resume else LoopState()
        step_seconds = 0.0
        with (
            TrainProgress(self.console, self.total_steps, state.step) as progress,
            self._frozen_prefix_cached(progress),
        ):
            if state.step == 0 and self.start_competes and self.val_features:
                self.validate(state, progress, start=True)
                state.start = state.best
            if state.step == 0 and self.restart:
                from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

                whole = StateDictOptions(
                    full_state_dict=True, strict=False
                )  # into plain or sharded parameters
                set_model_state_dict(self.trained_model, self.restart, options=whole)
            for epoch in range(state.epoch, self.cfg.epochs):
                batches = self.task.epoch_batches(
                    self.train_features, self.cfg.batch_size, self.cfg.seed, epoch, self.cfg.group_by_length
                )
                accum = self.cfg.gradient_accumulation
                for start in range(state.batches_done, len(batches), accum):
                    window = batches[start : start + accum]
                    started = time.perf_counter()
                    loss, samples = self.optimizer_step(window, state.step + 1)
                    step_seconds += time.perf_counter() - started
                    state.step += 1
                    state.batches_done = start + len(window)
                    progress.advance(epoch, loss, samples)
                    for hook in self.on_step:
                        hook(state, loss)
                    if state.step % self.cfg.log_every_steps == 0 or state.step == 1:
                        self._log_train(state, epoch, loss, progress)
                    end_of_epoch = state.batches_done >= len(batches)
                    if end_of_epoch:
                        state.epoch, state.batches_done = epoch + 1, 0
                    validated = end_of_epoch or bool(
                        self.cfg.eval_every_steps and state.step % self.cfg.eval_every_steps == 0
                    )
                    if validated:
                        self.validate(state, progress)  # writes a checkpoint
                        if self._should_stop(state):
                            state.stopped_early = True
                            break
                    self._pause_point(state, validated)
                if state.stopped_early:
                    progress.say(
                        f"early stopping: no gain in {self.cfg.metric} for {state.evals_without_improvement} validations"
                    )
                    break
            state.finished = True
            self._checkpoint(state)
            seconds = time.perf_counter() - progress.started
            return LoopResult(state, progress.samples_per_second, seconds, step_seconds)

    @contextmanager
    def _frozen_prefix_cached(self, progress: TrainProgress) -> Iterator[None]:
        """For the run: the frozen bottom of the model computed once per text (training/frozen_prefix.py),
        where the method leaves one and the cache proves itself on a first batch."""
        prefix = frozen_prefix(self.trained_model)
        if prefix is None or self.sharded or not self.cfg.frozen_cache_mb or not self.train_features:
            yield
            return
        cache = FrozenPrefixCache(prefix, self.cfg.frozen_cache_mb * 2**20)
        with cache.installed():
            probe = self.task.collate(list(self.train_features[:8]), self.pad_id)
            refusal = cache.refusal({k: v.to(self.accelerator.device) for k, v in probe.items()})
            if refusal is not None:
                progress.say(
                    f"the frozen layers are computed at every pass (their cache stays off: {refusal})"
                )
                cache = None
        if cache is None:
            yield
            return
        progress.say(
            f"the embeddings and the {prefix.depth} frozen layers below the trained ones run once per text "
            f"(train.frozen_cache_mb={self.cfg.frozen_cache_mb})"
        )
        try:
            with cache.installed():
                yield
        finally:
            if self.main:
                self.log.write(
                    {
                        "event": "frozen_prefix_cache",
                        "frozen_layers": prefix.depth,
                        "texts_kept": len(cache.stored),
                        "mb": round(cache.bytes / 2**20, 1),
                        "hits": cache.hits,
                        "misses": cache.misses,
                    }
                )

    def _pause_point(self, state: LoopState, checkpointed: bool) -> None:
        """After an optimizer step: write a checkpoint when train.checkpoint_every_minutes have passed since
        the last one, and stop (checkpoint first) when a signal asked to. Every process decides alike."""
        signum = self.stop.received if self.stop is not None else None
        minutes = self.cfg.checkpoint_every_minutes
        due = bool(minutes) and time.monotonic() - self._saved_at >= 60 * minutes
        # the processes share one decision: checkpoints and stops are collective
        stop, due = self.strategy.agreed([signum is not None, due])
        if (stop or due) and not checkpointed:
            self._checkpoint(state)
        if stop:
            raise Interrupted(
                f"interrupted at step {state.step} of {self.total_steps}; continue with: "
                f"tunesmith train --out {self.run_dir} --resume",
                signum if signum is not None else signal.SIGTERM,
            )

    def _checkpoint(self, state: LoopState) -> None:
        self._saved_at = time.monotonic()
        if self.main or self.strategy.every_process_checkpoints:  # sharded: all gather the whole tensors
            model, optimizer = self.trained_model, self.optimizer.optimizer  # type: ignore[union-attr]
            weights, moments = sharding.trainable_weights(model), optimizer_state(model, optimizer)
            if self.main:
                save_checkpoint(self.checkpoints, weights, moments, self.scheduler, state)
        self.accelerator.wait_for_everyone()

    def _log_train(self, state: LoopState, epoch: int, loss: float, progress: TrainProgress) -> None:
        if not self.main:
            return
        lr = self.scheduler.get_last_lr()[0]
        record = {"event": "train", "step": state.step, "epoch": epoch + 1, "loss": loss, "lr": lr}
        self.log.write({**record, "samples_per_second": progress.samples_per_second})

    def optimizer_step(self, window: list[list[int]], step: int) -> tuple[float, int]:
        """Optimizer step number `step` over `window` micro-batches. Gradients are of summed losses, divided by the
        window's total count (examples or target tokens), so accumulation equals one big batch exactly. With
        several processes, the strategy deals the micro-batches out and sums the gradients and totals across
        them (training/strategy.py): the same step as one process takes."""
        self.model.train()
        total_loss, total_count, samples = 0.0, 0, 0
        passes = list(self.strategy.passes(window))
        for k, (i, indices, real) in enumerate(passes):
            torch.manual_seed(micro_batch_seed(self.cfg.seed, step, i))
            for part in self._parts(indices):
                loss, count = self._backward_pass(part, last=k == len(passes) - 1, empty=not real)
                total_loss += loss
                total_count += count
                samples += len(part) if real else 0
        total_loss, total_count, samples = self.strategy.summed(
            self.trainable, [total_loss, total_count, samples]
        )
        for p in self.trainable:
            if p.grad is not None:
                p.grad.div_(total_count)
        if self.cfg.max_grad_norm:
            self.accelerator.clip_grad_norm_(self.trainable, self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        if self.method:
            self.method.after_step(self.trained_model, step)
        self.optimizer.zero_grad(set_to_none=True)
        return total_loss / max(total_count, 1), int(samples)

    def _backward_pass(self, indices: list[int], last: bool, empty: bool = False) -> tuple[float, int]:
        """Forward and backward over the examples `indices`, gradients added to the parameters'; returns their
        summed loss and count. `empty`: a pass without a micro-batch, whose gradients are zeros (it joins the
        collectives only)."""
        batch = self.task.collate([self.train_features[j] for j in indices], self.pad_id)
        batch = {key: v.to(self.accelerator.device) for key, v in batch.items()}
        self.strategy.before_backward(last)
        # autocast is also where a task runs the backbone apart from the forward
        with self.accelerator.autocast():
            loss_sum, count = self.strategy.loss(self.task, self.model, batch)
        if empty:
            self.accelerator.backward(loss_sum * 0.0)
            return 0.0, 0
        loss = loss_sum.item()
        if self.method and (extra := self.method.penalty(self.trained_model)) is not None:
            loss_sum = loss_sum + count * extra  # after the division by the count: mean loss + penalty
        self.accelerator.backward(loss_sum)
        return loss, count

    def _parts(self, indices: list[int]) -> list[list[int]]:
        """The forward/backward passes one micro-batch runs as: one, or (train.max_batch_tokens) several of
        at most that many padded tokens, whose summed gradients are the micro-batch's. Sharded, every
        process must run the same passes (each one gathers the weights), so micro-batches stay whole."""
        cap = self.cfg.max_batch_tokens
        lengths = [self.lengths[j] for j in indices]
        whole = self.task.couples_batch or not self.strategy.splits_micro_batches
        if cap is None or whole or len(indices) * max(lengths) <= cap:
            return [indices]
        return [[indices[j] for j in part] for part in token_capped_batches(lengths, len(indices), cap)]

    def validate(self, state: LoopState, progress: TrainProgress, start: bool = False) -> None:
        """Validate, keep the best model on the chosen metric, and write a resumable checkpoint (not for the
        `start` model, which has nothing to resume and is not shown to the validation hooks)."""
        model = self.trained_model
        if self.val_features:
            metrics = self.strategy.validation(lambda: self._judge(model, state, start))
            if self.cfg.metric not in metrics:
                raise ValueError(
                    f"train.metric {self.cfg.metric!r} is not computed; choose from {', '.join(metrics)}"
                )
            value = metrics[self.cfg.metric]
            better = self._beats(value, state.best)
            share = metrics.get(BEATS_START)
            holds_start = state.start is not None and state.best_step == 0
            if better and holds_start and share is not None and share < self.cfg.keep_confidence:
                better = False  # above the start model on this split, but not by more than its noise
            # early stopping follows fine-tuning's own progress: checkpoints still below the start model
            # but improving on each other keep training (it stopped ChatterBot topics, 17 classes, after
            # two epochs below the probe); which model the run keeps is decided on state.best
            improved = not start and self._beats(value, state.tuned_best)
            if improved:
                state.tuned_best, state.tuned_best_share = value, share
        else:
            metrics, value, better, improved = {}, None, True, not start
        if not start:
            state.evals_without_improvement = 0 if improved else state.evals_without_improvement + 1
        if better:
            state.best, state.best_step = value, state.step
            weights = self.strategy.best_weights(model, self.method)  # sharded: gathered by every process
            if self.main:
                self.save_best(model, weights)
        if self.main:
            self.log.write(
                {"event": "validation", "step": state.step, "epoch": state.epoch, **metrics, "best": better}
            )
        shown = "  ".join(
            f"{k} {v:.4f}" for k, v in metrics.items() if k in ("loss", "accuracy", self.cfg.metric)
        )
        if BEATS_START in metrics:
            shown += f"  (beats step 0 in {metrics[BEATS_START]:.0%} of bootstrap resamples)"
        what = f"step {state.step} (epoch {state.epoch})" if state.step else "step 0 (the base model)"
        progress.say(f"{what}: validation {shown}{'  [best]' if better else ''}")
        if start:
            return
        self._checkpoint(state)
        for hook in self.on_validation:
            hook(state, metrics)

    def _beats(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value > best if greater_is_better(self.cfg.metric) else value < best

    def _judge(self, model: torch.nn.Module, state: LoopState, start: bool) -> dict[str, float]:
        """The validation metrics of `model` (the numbers only); for a checkpoint of a run whose start model
        competes, also BEATS_START: the share of bootstrap resamples of the split in which it beats the start
        model (whose predictions the start's validation keeps in `state`)."""
        result = self._measure(model)
        metrics = {k: v for k, v in result.metrics.items() if isinstance(v, float)}
        if start:
            state.start_predictions = list(result.predictions)
        elif state.start_predictions is not None:
            share = self._share_beating_start(result, state.start_predictions)
            if share is not None:
                metrics[BEATS_START] = share
        return metrics

    def _share_beating_start(self, checkpoint: Evaluation, start_predictions: list[Any]) -> float | None:
        if len(checkpoint.predictions) != len(start_predictions):
            return None
        ours = self.task.resampler(self.val_features, checkpoint)
        theirs = self.task.resampler(self.val_features, Evaluation({}, start_predictions))
        if ours is None or theirs is None:
            return None
        return share_better(
            ours,
            theirs,
            len(start_predictions),
            self.cfg.metric,
            greater_is_better=greater_is_better(self.cfg.metric),
            seed=self.cfg.seed,
        )

    def _measure(self, model: torch.nn.Module) -> Evaluation:
        with self.accelerator.autocast():
            return self.strategy.measure(
                lambda: self.task.evaluate(
                    model, self.val_features, self.cfg.eval_batch_size, self.pad_id, during_training=True
                )
            )

    def _should_stop(self, state: LoopState) -> bool:
        patience = self.cfg.early_stopping_patience
        return (
            bool(self.val_features) and patience is not None and state.evals_without_improvement >= patience
        )

    def _restore(self) -> LoopState:
        folder = latest_checkpoint(self.checkpoints)
        if folder is None:
            return LoopState()
        optimizer = self.optimizer.optimizer  # type: ignore[union-attr]
        state = load_checkpoint(folder, self.trained_model, optimizer, self.scheduler)
        if self.main:
            self.log.truncate_after(state.step)
        self.console.print(f"resuming from {folder.name}: epoch {state.epoch + 1}, step {state.step}")
        return state
