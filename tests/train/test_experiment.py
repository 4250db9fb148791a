"""Experiment directory: resolved config.yaml, a one-line resume command, run identity, input state."""
from __future__ import annotations

import dataclasses
import os

import pytest
from omegaconf import OmegaConf

from speechkit.errors import ConfigError, DataError
from speechkit.train import TrainerConfig, list_checkpoints, prepare_exp_dir, save_checkpoint
from speechkit.train.checkpoint import checkpoint_path
from speechkit.train.experiment import check_run_identity, file_state, trainer_options, write_run_identity


def test_exp_dir_keeps_config_and_resume_command(tmp_path):
    config = OmegaConf.create({"train": {"lr": 0.001, "peak": "${train.lr}"}})
    exp_dir = prepare_exp_dir(tmp_path / "exp" / "ar", config,
                              ["python", "-m", "speechkit.bin.train_ar", "--config", "conf/my config.yaml"])
    assert OmegaConf.load(exp_dir / "config.yaml").train.peak == 0.001  # resolved
    script = (exp_dir / "resume.sh").read_text().splitlines()
    assert script[0] == "#!/bin/sh"
    assert script[-1].endswith("python -m speechkit.bin.train_ar --config 'conf/my config.yaml'")
    assert script[-1].startswith(f"cd {os.getcwd()}")
    assert os.access(exp_dir / "resume.sh", os.X_OK)


def test_file_state_changes_with_the_file_and_names_a_missing_one(tmp_path):
    path = tmp_path / "phones"
    path.write_text("a b\n")
    first = file_state(path)
    assert first[:2] == [str(path), 4]
    path.write_text("a b c\n")
    assert file_state(path) != first
    with pytest.raises(DataError, match="does not exist"):
        file_state(tmp_path / "missing")


def test_check_run_identity_refuses_checkpoints_of_another_run(tmp_path):
    exp_dir = tmp_path / "exp"
    exp_dir.mkdir()
    write_run_identity(exp_dir, "run-a")
    check_run_identity(exp_dir, "run-b", ["max_steps"])  # no checkpoints yet: a fresh start is fine
    checkpoint_path(exp_dir, 1).parent.mkdir()
    save_checkpoint({"step": 1}, checkpoint_path(exp_dir, 1))
    assert list_checkpoints(exp_dir)
    check_run_identity(exp_dir, "run-a", ["max_steps"])
    with pytest.raises(ConfigError, match=r"only epochs, max_steps may change"):
        check_run_identity(exp_dir, "run-b", {"max_steps", "epochs"})


def test_trainer_options_keeps_only_the_trainer_keys():
    @dataclasses.dataclass
    class StageOptions(TrainerConfig):
        train_set: str = "train"

    options = trainer_options(StageOptions(max_steps=7, train_set="other"))
    assert type(options) is TrainerConfig and options.max_steps == 7
