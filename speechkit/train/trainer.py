"""One trainer for every model: AMP, accumulation, clipping, DDP, checkpoints, resume, logs.

The model is any ``nn.Module`` whose ``forward(batch: dict[str, Tensor])`` returns a dict with a
scalar ``loss`` and optionally other scalar metrics (``accuracy``, ...). Non-scalar outputs
(logits) are ignored; a scalar ``weight`` output (e.g. the number of target tokens) weights the
batch in validation averages (default 1 per batch).

Reproducible resume: a checkpoint holds the model, optimizer, scheduler, grad scaler, step,
epoch, position in the epoch, the number of log records, the training time spent, and every
rank's RNG states. Resuming rebuilds the epoch's batch plan, skips the batches already seen
(without loading them) and restores the RNGs, so a killed and resumed run logs the same losses
as an uninterrupted one -- provided datasets return the same item for the same index (with
``num_workers > 0`` worker-side randomness is not replayed).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from speechkit.errors import ConfigError
from speechkit.train import checkpoint as ckpt
from speechkit.train import distributed
from speechkit.train.config import TrainerConfig
from speechkit.train.metrics_log import CURVES_PNG, MetricsLog, plot_curves
from speechkit.train.schedule import build_scheduler

log = logging.getLogger(__name__)

AVERAGED = "averaged.pt"
PLOT_INTERVAL_S = 60.0  # drawing the curves costs ~0.5 s; redraw at most this often (and at the end)
OptimizerFactory = Callable[[nn.Module, TrainerConfig], torch.optim.Optimizer]


@dataclasses.dataclass
class TrainResult:
    """Outcome of :meth:`Trainer.fit`."""

    step: int  # optimizer steps done in total
    epoch: int  # completed epochs
    stop_reason: str  # "max_steps" | "epochs" | "max_minutes"
    last_checkpoint: Path | None
    averaged: Path | None  # averaged.pt, when written
    valid: dict[str, float]  # metrics of the last validation (empty if none ran)
    elapsed_s: float  # training time summed over resumes


def default_optimizer(model: nn.Module, config: TrainerConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (not on biases, norms or embeddings)."""
    decay, no_decay = [], []
    embedding_params = {
        id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()
    }
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        if parameter.dim() >= 2 and id(parameter) not in embedding_params:
            decay.append(parameter)
        else:
            no_decay.append(parameter)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas))


def build_loader(
    dataset: torch.utils.data.Dataset,
    batch_sampler: Iterable[list[int]],
    collate_fn: Callable[[list[Any]], Any],
    num_workers: int = 0,
) -> DataLoader:
    """A DataLoader over ``batch_sampler`` (e.g. :class:`~speechkit.data.sampler.BucketBatchSampler`)."""
    return DataLoader(
        dataset, batch_sampler=batch_sampler, collate_fn=collate_fn, num_workers=num_workers,
        persistent_workers=False, pin_memory=torch.cuda.is_available(),
    )


def resolve_amp(mode: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """``(autocast dtype or None, use a GradScaler)`` for an amp mode on ``device``."""
    if mode == "off":
        return None, False
    if device.type == "cuda":
        if mode == "auto":
            return (torch.bfloat16, False) if torch.cuda.is_bf16_supported() else (torch.float16, True)
        return (torch.bfloat16, False) if mode == "bf16" else (torch.float16, True)
    if mode == "auto":
        return None, False
    if mode == "bf16":
        return torch.bfloat16, False
    raise ConfigError("train.amp=fp16 needs CUDA; on CPU use amp=bf16 or amp=off.")


class Trainer:
    """Trains ``model`` on ``train_loader`` into ``exp_dir``; resumes from its last checkpoint.

    Args:
        model: module whose ``forward(batch)`` returns ``{"loss": scalar, ...metrics}``.
        train_loader: yields dict batches of tensors; if its batch sampler (or sampler) has
            ``set_epoch(epoch[, start_batch])`` it is called every epoch.
        exp_dir: where checkpoints, ``train_log.jsonl``, ``curves.png`` and ``averaged.pt`` go.
        config: :class:`TrainerConfig`.
        valid_loader: optional dev-set loader, evaluated at each epoch end and every
            ``config.valid_every`` steps.
        optimizer_factory: ``(model, config) -> Optimizer``; default AdamW (:func:`default_optimizer`).
    """

    def __init__(
        self,
        model: nn.Module,
        train_loader: Iterable[Mapping[str, Any]],
        exp_dir: str | Path,
        config: TrainerConfig,
        *,
        valid_loader: Iterable[Mapping[str, Any]] | None = None,
        optimizer_factory: OptimizerFactory = default_optimizer,
    ) -> None:
        config.validate()
        self.config = config
        self.exp_dir = Path(exp_dir)
        self.dist = distributed.init_distributed(config.device)
        self.device = distributed.resolve_device(config.device, self.dist.local_rank)
        self.amp_dtype, use_scaler = resolve_amp(config.amp, self.device)
        self.model = model.to(self.device)
        self.train_loader = train_loader
        self.valid_loader = valid_loader
        self.optimizer = optimizer_factory(self.model, config)
        self.scheduler = build_scheduler(
            self.optimizer, schedule=config.schedule, warmup_steps=config.warmup_steps,
            total_steps=self._total_steps(), min_lr_ratio=config.min_lr_ratio,
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        self.wrapped: nn.Module = self.model
        if self.dist.is_distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = DistributedDataParallel(
                self.model, device_ids=ids, find_unused_parameters=config.ddp_find_unused_parameters,
            )
        self.metrics_log = MetricsLog(self.exp_dir) if self.dist.is_main else None
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0  # batches of the current epoch this rank has consumed
        self.elapsed_before = 0.0  # training seconds of earlier runs (from the checkpoint)
        self.last_valid: dict[str, float] = {}
        self._resume_rng: Mapping[str, Any] | None = None
        self._last_plot = -math.inf
        self.step_lr = float(self.optimizer.param_groups[0]["lr"])
        self._check_sampler_ranks()

    def _check_sampler_ranks(self) -> None:
        """A sampler built before the process group existed would give every rank all the data."""
        sampler = _epoch_aware_sampler(self.train_loader)
        replicas = getattr(sampler, "num_replicas", None)
        if replicas is not None and replicas != self.dist.world_size:
            raise ConfigError(
                f"The training sampler splits batches over {replicas} rank(s) but this run has "
                f"{self.dist.world_size}; call speechkit.train.init_distributed() before building "
                "the sampler (or pass num_replicas/rank)."
            )

    # -- public -------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train until ``max_steps``/``epochs``/``max_minutes``; checkpoint; average; return."""
        start_time = time.monotonic()
        resumed = self._resume_if_possible()
        if not resumed:
            ckpt.seed_everything(self.config.seed + self.dist.rank)
            if self.dist.is_main:
                self.exp_dir.mkdir(parents=True, exist_ok=True)
                self.metrics_log.truncate(0)  # type: ignore[union-attr]
        stop_reason = self._finished_reason()
        progress = tqdm(
            total=self._total_steps(), initial=self.step, desc=f"train {self.exp_dir.name}",
            disable=not (self.config.progress and self.dist.is_main), dynamic_ncols=True,
        )
        window = _MetricWindow()
        micro = 0
        window_start = time.monotonic()
        try:
            while stop_reason is None:
                for batch in self._epoch_batches():
                    outputs = self._forward_backward(batch, sync=(micro + 1) % self.config.grad_accum == 0)
                    window.add(outputs, weight=1.0)
                    micro += 1
                    if micro % self.config.grad_accum:
                        continue
                    micro = 0
                    grad_norm = self._optimizer_step()
                    self.step += 1
                    progress.update(1)
                    if self.step % self.config.log_every == 0:
                        record = self._log_train(window, grad_norm, time.monotonic() - window_start)
                        progress.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}")
                        window, window_start = _MetricWindow(), time.monotonic()
                    if self.config.valid_every and self.step % self.config.valid_every == 0:
                        self._validate()
                    elapsed = self.elapsed_before + time.monotonic() - start_time
                    stop_reason = self._step_stop_reason(elapsed)
                    if stop_reason or self.step % self.config.checkpoint_every == 0:
                        self._save_checkpoint(elapsed)
                    if stop_reason:
                        break
                else:  # the epoch ran out of batches
                    self.epoch += 1
                    self.batch_in_epoch = 0
                    self._validate()
                    if self.config.epochs and self.epoch >= self.config.epochs:
                        stop_reason = "epochs"
                        self._save_checkpoint(self.elapsed_before + time.monotonic() - start_time)
        finally:
            progress.close()
        self.optimizer.zero_grad(set_to_none=True)  # a partial accumulation window is dropped
        averaged = self._average_last()
        distributed.barrier()
        checkpoints = ckpt.list_checkpoints(self.exp_dir)
        self._plot(force=True)
        return TrainResult(
            step=self.step, epoch=self.epoch, stop_reason=stop_reason,
            last_checkpoint=checkpoints[-1][1] if checkpoints else None, averaged=averaged,
            valid=dict(self.last_valid), elapsed_s=self.elapsed_before + time.monotonic() - start_time,
        )

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean metrics of the model over ``valid_loader`` (all ranks' shards reduced)."""
        if self.valid_loader is None:
            return {}
        was_training = self.model.training
        self.model.eval()
        sums: dict[str, float] = {}
        total_weight = 0.0
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            for batch in self.valid_loader:
                with self._autocast():
                    outputs = self.model(_to_device(batch, self.device))
                weight = float(outputs["weight"]) if "weight" in outputs else 1.0
                total_weight += weight
                for name, value in _scalars(outputs).items():
                    sums[name] = sums.get(name, 0.0) + float(value) * weight
        self.model.train(was_training)
        names = sorted(sums)
        reduced = distributed.all_reduce_sum(
            torch.tensor([total_weight] + [sums[n] for n in names], dtype=torch.float64, device=self.device)
        ).tolist()
        return {name: value / max(reduced[0], 1e-12) for name, value in zip(names, reduced[1:])}

    # -- steps --------------------------------------------------------------------------------
    def _forward_backward(self, batch: Mapping[str, Any], sync: bool) -> dict[str, torch.Tensor]:
        """One micro-batch: forward under autocast, scaled backward; DDP syncs on ``sync`` only."""
        self.wrapped.train()
        no_sync = self.wrapped.no_sync if (self.dist.is_distributed and not sync) else contextlib.nullcontext
        with no_sync():
            with self._autocast():
                outputs = self.wrapped(_to_device(batch, self.device))
            if "loss" not in outputs:
                raise ConfigError(
                    f"{type(self.model).__name__}.forward returned keys {sorted(outputs)}; the trainer "
                    "needs a scalar 'loss'."
                )
            self.scaler.scale(outputs["loss"] / self.config.grad_accum).backward()
        return _scalars(outputs)

    def _optimizer_step(self) -> float:
        """Unscale, clip, step (skipped when gradients are not finite), advance the schedule.

        Returns the gradient norm before clipping; ``self.step_lr`` keeps the lr this step used.
        """
        self.step_lr = float(self.optimizer.param_groups[0]["lr"])
        self.scaler.unscale_(self.optimizer)
        max_norm = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)  # skips the update itself on inf/nan
            self.scaler.update()
        elif math.isfinite(grad_norm):
            self.optimizer.step()
        else:
            log.warning("step %d: non-finite gradient norm; update skipped", self.step + 1)
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return grad_norm

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # -- epochs, logging, validation ---------------------------------------------------------
    def _epoch_batches(self) -> Iterator[Mapping[str, Any]]:
        """This epoch's remaining batches (skipping those a resumed checkpoint already saw)."""
        skip = self.batch_in_epoch
        sampler = _epoch_aware_sampler(self.train_loader)
        skipped_by_sampler = False
        if sampler is not None:
            try:
                sampler.set_epoch(self.epoch, start_batch=skip)
                skipped_by_sampler = True
            except TypeError:  # a sampler without start_batch (e.g. DistributedSampler)
                sampler.set_epoch(self.epoch)
        iterator = iter(self.train_loader)
        if self._resume_rng is not None:  # after iter(): creating it draws from the torch RNG
            ckpt.restore_rng_state(self._resume_rng)
            self._resume_rng = None
        for index, batch in enumerate(iterator):
            if not skipped_by_sampler and index < skip:
                continue
            self.batch_in_epoch += 1
            yield batch

    def _log_train(self, window: "_MetricWindow", grad_norm: float, seconds: float) -> dict[str, Any]:
        means = window.reduced_means(self.device)
        record = {"split": "train", "step": self.step, "epoch": self.epoch,
                  "lr": self.step_lr, "grad_norm": grad_norm,
                  "steps_per_s": self.config.log_every / max(seconds, 1e-9), **means}
        if self.metrics_log is not None:
            self.metrics_log.append(record)
        return record

    def _validate(self) -> None:
        if self.valid_loader is None:
            return
        metrics = self.validate()
        self.last_valid = metrics
        if self.metrics_log is not None:
            self.metrics_log.append({"split": "valid", "step": self.step, "epoch": self.epoch, **metrics})
            self._plot(force=False)
        log.info("valid step %d epoch %d: %s", self.step, self.epoch,
                 " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))

    def _plot(self, force: bool) -> None:
        """Redraw curves.png on rank 0: at the end, else at most every ``PLOT_INTERVAL_S``."""
        if self.metrics_log is None:
            return
        now = time.monotonic()
        if force or now - self._last_plot >= PLOT_INTERVAL_S:
            plot_curves(self.metrics_log.path, self.exp_dir / CURVES_PNG)
            self._last_plot = now

    # -- stopping -----------------------------------------------------------------------------
    def _total_steps(self) -> int:
        if self.config.max_steps:
            return self.config.max_steps
        try:
            batches = len(self.train_loader)  # type: ignore[arg-type]
        except TypeError as error:
            raise ConfigError("train.epochs needs a loader with a length; set train.max_steps instead.") from error
        return self.config.epochs * max(batches // self.config.grad_accum, 1)

    def _finished_reason(self) -> str | None:
        if self.config.max_steps and self.step >= self.config.max_steps:
            return "max_steps"
        if self.config.epochs and self.epoch >= self.config.epochs:
            return "epochs"
        if self.config.max_minutes and self.elapsed_before >= self.config.max_minutes * 60:
            return "max_minutes"
        return None

    def _step_stop_reason(self, elapsed: float) -> str | None:
        if self.config.max_steps and self.step >= self.config.max_steps:
            return "max_steps"
        if not self.config.max_minutes:
            return None
        if distributed.any_rank(elapsed >= self.config.max_minutes * 60, self.device):
            log.info("training-time budget of %.1f min reached at step %d", self.config.max_minutes, self.step)
            return "max_minutes"
        return None

    # -- checkpoints --------------------------------------------------------------------------
    def _save_checkpoint(self, elapsed: float) -> None:
        rng_states = distributed.all_gather_tensors(torch.get_rng_state())  # per-rank dropout streams
        if not self.dist.is_main:
            distributed.barrier()
            return
        state = {
            "format": 1,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "elapsed_s": elapsed,
            "log_records": self.metrics_log.num_records,  # type: ignore[union-attr]
            "rng": ckpt.capture_rng_state(),
            "rng_per_rank": rng_states,
            "world_size": self.dist.world_size,
            "trainer_config": dataclasses.asdict(self.config),
        }
        path = ckpt.checkpoint_path(self.exp_dir, self.step)
        ckpt.save_checkpoint(state, path)
        ckpt.prune_checkpoints(self.exp_dir, keep=max(self.config.keep_last, self.config.average_last))
        self._plot(force=False)
        distributed.barrier()

    def _resume_if_possible(self) -> bool:
        checkpoints = ckpt.list_checkpoints(self.exp_dir)
        if not checkpoints:
            return False
        step, path = checkpoints[-1]
        state = ckpt.load_checkpoint(path, map_location="cpu")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.elapsed_before = float(state["elapsed_s"])
        if int(state["world_size"]) == self.dist.world_size:
            self._resume_rng = {**state["rng"], "torch": state["rng_per_rank"][self.dist.rank]}
        else:
            self._resume_rng = state["rng"]
            log.warning("resuming a %d-process run with %d processes: data order and RNG streams differ",
                        int(state["world_size"]), self.dist.world_size)
        if self.metrics_log is not None:
            self.metrics_log.truncate(int(state["log_records"]))
        log.info("resumed from %s (step %d, epoch %d)", path, step, self.epoch)
        return True

    def _average_last(self) -> Path | None:
        """Average the newest ``average_last`` checkpoints into ``averaged.pt``; load it into the model."""
        count = self.config.average_last
        if count <= 0:
            return None
        paths = [p for _, p in ckpt.list_checkpoints(self.exp_dir)[-count:]]
        if not paths:
            return None
        averaged = ckpt.average_model_states(paths)
        target = self.exp_dir / AVERAGED
        if self.dist.is_main:
            ckpt.save_checkpoint({"model": averaged, "averaged_steps": [int(p.stem.split("-")[1]) for p in paths]},
                                 target)
        self.model.load_state_dict(averaged)
        return target


class _MetricWindow:
    """Running sums of scalar metrics over the micro-batches of one logging window."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0.0

    def add(self, metrics: Mapping[str, torch.Tensor], weight: float) -> None:
        for name, value in metrics.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value) * weight
        self.count += weight

    def reduced_means(self, device: torch.device) -> dict[str, float]:
        """Means over the window and over all ranks."""
        names = sorted(self.sums)
        totals = distributed.all_reduce_sum(
            torch.tensor([self.count] + [self.sums[n] for n in names], dtype=torch.float64, device=device)
        ).tolist()
        return {name: value / max(totals[0], 1e-12) for name, value in zip(names, totals[1:])}


def _scalars(outputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Detached 0-d tensors and numbers of a model's outputs (``weight`` excluded)."""
    found = {}
    for name, value in outputs.items():
        if name == "weight":
            continue
        if isinstance(value, torch.Tensor) and value.dim() == 0:
            found[name] = value.detach().float()
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found[name] = torch.tensor(float(value))
    return found


def _to_device(batch: Any, device: torch.device) -> Any:
    """Move the tensors of a (nested) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {key: _to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(value, device) for value in batch)
    return batch


def _epoch_aware_sampler(loader: Any) -> Any:
    """The loader's batch sampler or sampler that has ``set_epoch``, if any."""
    for attribute in ("batch_sampler", "sampler"):
        candidate = getattr(loader, attribute, None)
        if candidate is not None and hasattr(candidate, "set_epoch"):
            return candidate
    return None
