"""Experiment directory: resolved config.yaml and a one-line resume command."""
from __future__ import annotations

import os

from omegaconf import OmegaConf

from speechkit.train import prepare_exp_dir


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
