"""Warm-up + decay schedules and trainer config validation."""
from __future__ import annotations

import math

import pytest
import torch

from speechkit.config import validate_options
from speechkit.errors import ConfigError
from speechkit.train import TrainerConfig
from speechkit.train.schedule import build_scheduler, lr_multiplier


def multipliers(schedule, steps, warmup=4, total=12, min_lr_ratio=0.0):
    return [lr_multiplier(s, schedule=schedule, warmup_steps=warmup, total_steps=total,
                          min_lr_ratio=min_lr_ratio) for s in steps]


def test_linear_warmup_then_each_decay():
    assert multipliers("cosine", [1, 2, 4]) == [0.25, 0.5, 1.0]
    assert multipliers("cosine", [8, 12, 20]) == pytest.approx([0.5, 0.0, 0.0], abs=1e-12)
    assert multipliers("linear", [6, 8, 12]) == pytest.approx([0.75, 0.5, 0.0])
    assert multipliers("linear", [8, 12], min_lr_ratio=0.1) == pytest.approx([0.55, 0.1])
    assert multipliers("noam", [4, 16, 64]) == pytest.approx([1.0, 0.5, 0.25])
    assert multipliers("constant", [2, 4, 100]) == [0.5, 1.0, 1.0]
    cosine = [0.5 * (1 + math.cos(math.pi * s / 12)) for s in (1, 5)]
    assert multipliers("cosine", [1, 5], warmup=0) == pytest.approx(cosine)  # no warm-up: decay from step 1


def test_scheduler_sets_the_lr_of_each_optimizer_step():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    scheduler = build_scheduler(optimizer, schedule="linear", warmup_steps=2, total_steps=4)
    seen = []
    for _ in range(4):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.05, 0.1, 0.05, 0.0])
    state = scheduler.state_dict()  # plain values only: fits a weights_only checkpoint
    assert all(entry is None for entry in state["lr_lambdas"])


def test_config_from_yaml_options_and_bad_values():
    config = validate_options(TrainerConfig, {"max_steps": 100, "lr": 0.002, "schedule": "noam",
                                              "warmup_steps": 10}, where="train")
    config.validate()
    assert config.betas == [0.9, 0.999]
    with pytest.raises(ConfigError, match="warmup_stpes"):
        validate_options(TrainerConfig, {"warmup_stpes": 10}, where="train")
    for bad, message in [({}, "set max_steps or epochs"), ({"max_steps": 1, "schedule": "step"}, "schedule"),
                         ({"max_steps": 1, "schedule": "noam"}, "warmup_steps > 0"),
                         ({"max_steps": 1, "amp": "fp8"}, "amp"), ({"max_steps": 1, "grad_accum": 0}, "grad_accum")]:
        with pytest.raises(ConfigError, match=message):
            TrainerConfig(**bad).validate()
