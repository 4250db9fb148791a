"""What an experiment directory keeps besides checkpoints: the resolved config and a resume command."""
from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from speechkit.config import save_config
from speechkit.utils.fs import atomic_write_text

CONFIG_YAML = "config.yaml"
RESUME_SCRIPT = "resume.sh"


def prepare_exp_dir(
    exp_dir: str | Path,
    config: DictConfig | Mapping[str, Any],
    command: Sequence[str] | None = None,
) -> Path:
    """Create ``exp_dir`` with ``config.yaml`` (resolved) and ``resume.sh`` (one command line).

    Args:
        exp_dir: experiment directory.
        config: the resolved recipe config (after includes and overrides).
        command: the argv that (re)starts this stage, e.g. ``[sys.executable, "-m",
            "speechkit.bin.train_ar", "--config", ...]``; defaults to this process's command
            line. Training resumes from the last checkpoint when re-run.
    """
    exp_dir = Path(exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, exp_dir / CONFIG_YAML)
    write_resume_command(exp_dir, command if command is not None else current_command())
    return exp_dir


def current_command() -> list[str]:
    """This process's command line as an argv that reruns it (``python -m module`` kept)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        module = spec.name.removesuffix(".__main__")
        return [sys.executable, "-m", module, *sys.argv[1:]]
    return [sys.executable, *sys.argv]


def write_resume_command(exp_dir: str | Path, command: Sequence[str]) -> Path:
    """Write ``<exp_dir>/resume.sh``: ``cd <cwd> && <command>`` on one line, executable."""
    path = Path(exp_dir) / RESUME_SCRIPT
    line = f"cd {shlex.quote(os.getcwd())} && {shlex.join(list(command))}"
    atomic_write_text(path, f"#!/bin/sh\n# re-run to resume from the last checkpoint\n{line}\n")
    path.chmod(0o755)
    return path
