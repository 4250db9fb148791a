"""Options of the trainer, validated from the ``train:`` section of a recipe config."""
from __future__ import annotations

import dataclasses

from speechkit.errors import ConfigError

SCHEDULES = ("noam", "cosine", "linear", "constant")
AMP_MODES = ("auto", "off", "bf16", "fp16")


@dataclasses.dataclass
class TrainerConfig:
    """Everything the trainer needs besides the model and the data.

    Build it from YAML with ``speechkit.config.validate_options(TrainerConfig, cfg.train)`` so a
    misspelled key is an error naming the valid ones. Steps are optimizer steps (one step is
    ``grad_accum`` micro-batches). :meth:`validate` runs when a :class:`Trainer` is made.
    """

    max_steps: int = 0  # stop after this many optimizer steps (0: no step limit)
    epochs: int = 0  # stop after this many passes over the training data (0: no epoch limit)
    lr: float = 1e-3  # peak learning rate, reached at the end of warm-up
    warmup_steps: int = 0  # linear warm-up from 0 to ``lr``
    schedule: str = "cosine"  # decay after warm-up: noam | cosine | linear | constant
    min_lr_ratio: float = 0.0  # cosine/linear decay ends at ``lr * min_lr_ratio``
    weight_decay: float = 0.01  # AdamW decay on matrices (biases, norms, embeddings excluded)
    betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.999])
    grad_clip: float = 1.0  # max global gradient norm (0: no clipping)
    grad_accum: int = 1  # micro-batches per optimizer step
    amp: str = "auto"  # auto | off | bf16 | fp16 (auto: bf16 or fp16 on CUDA, off on CPU)
    device: str = "auto"  # auto | cpu | cuda | cuda:N (auto: this rank's GPU if any, else CPU)
    checkpoint_every: int = 1000  # optimizer steps between checkpoints (and one at the end)
    keep_last: int = 3  # checkpoints kept on disk (at least ``average_last`` are kept)
    average_last: int = 1  # average the last N checkpoints into averaged.pt (0: skip)
    log_every: int = 50  # optimizer steps per train_log.jsonl record
    valid_every: int = 0  # optimizer steps between validations (0: only at epoch ends)
    seed: int = 0  # seeds python, numpy and torch (plus the rank under DDP)
    num_workers: int = 0  # DataLoader workers (see ``speechkit.train.build_loader``)
    max_minutes: float = 0.0  # training-time budget summed over resumes (0: none)
    ddp_find_unused_parameters: bool = False  # for models that skip parameters in some steps
    progress: bool = True  # tqdm progress bar on rank 0

    def validate(self) -> None:
        """Raise :class:`ConfigError` on values that cannot work together."""
        if self.max_steps <= 0 and self.epochs <= 0:
            raise ConfigError("train: set max_steps or epochs (both are 0, training would never stop).")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"train.schedule={self.schedule!r}; choose one of {', '.join(SCHEDULES)}.")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"train.amp={self.amp!r}; choose one of {', '.join(AMP_MODES)}.")
        if self.schedule == "noam" and self.warmup_steps <= 0:
            raise ConfigError("train.schedule=noam needs warmup_steps > 0 (the peak is at warm-up end).")
        positive = {"lr": self.lr, "grad_accum": self.grad_accum, "checkpoint_every": self.checkpoint_every,
                    "keep_last": self.keep_last, "log_every": self.log_every}
        for name, value in positive.items():
            if value <= 0:
                raise ConfigError(f"train.{name} must be positive, got {value}.")
        non_negative = {"warmup_steps": self.warmup_steps, "weight_decay": self.weight_decay,
                        "grad_clip": self.grad_clip, "average_last": self.average_last,
                        "valid_every": self.valid_every, "num_workers": self.num_workers,
                        "max_minutes": self.max_minutes}
        for name, value in non_negative.items():
            if value < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {value}.")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"train.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}.")
        if len(self.betas) != 2:
            raise ConfigError(f"train.betas needs two values (beta1, beta2), got {list(self.betas)}.")
