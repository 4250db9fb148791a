"""What an experiment directory keeps besides checkpoints, and the bookkeeping training stages share.

An experiment dir holds the resolved config, a resume command, the identity of the run its
checkpoints belong to (``run_identity.json``) and, at the end, a pack with the phone table in it.
The training stages (:mod:`speechkit.bin.lm_training`, :mod:`speechkit.bin.train_st`) use the
helpers here to fingerprint their inputs, refuse to resume another run's checkpoints and save packs.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig
from torch import nn

from speechkit.config import save_config
from speechkit.errors import ConfigError, DataError
from speechkit.train.checkpoint import list_checkpoints
from speechkit.train.config import TrainerConfig
from speechkit.utils.fs import atomic_write_text

if TYPE_CHECKING:
    from speechkit.text.phone_table import PhoneTable

CONFIG_YAML = "config.yaml"
RESUME_SCRIPT = "resume.sh"
#: ``exp/<name>/pack``: where a training stage saves its pack.
PACK_DIR = "pack"
#: The phone table's file name, in ``dump/`` and in a pack.
PHONE_TABLE = "tokens.txt"
#: ``exp/<name>/run_identity.json``: the fingerprint of the run the checkpoints belong to.
RUN_IDENTITY = "run_identity.json"


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


def file_state(path: Path) -> list[Any]:
    """Identity of an input file for a fingerprint: ``[name, size, modification time in ns]``.

    A rewrite of the file changes it, so a stage whose inputs were remade runs again.

    Raises:
        DataError: ``path`` is not a file (an earlier recipe stage has not run).
    """
    if not path.is_file():
        raise DataError(f"{path} does not exist; run the earlier recipe stages first.")
    stat = path.stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]


def check_run_identity(exp_dir: Path, identity: str, resumable: Iterable[str]) -> None:
    """Refuse to resume checkpoints in ``exp_dir`` that belong to another model/data/optimiser setup.

    Args:
        exp_dir: the experiment directory (checkpoints and ``run_identity.json``).
        identity: fingerprint of this run without its ``resumable`` options.
        resumable: option names that may change between resumes (named in the error).

    Raises:
        ConfigError: ``exp_dir`` holds checkpoints and the identity recorded beside them differs.
    """
    path = exp_dir / RUN_IDENTITY
    if list_checkpoints(exp_dir) and path.is_file():
        if json.loads(path.read_text(encoding="utf-8")).get("identity") != identity:
            raise ConfigError(
                f"{exp_dir} holds checkpoints of a run with another model, data or optimiser setup (only "
                f"{', '.join(sorted(resumable))} may change between resumes). Delete {exp_dir} to "
                "train afresh, or restore the earlier config to continue it."
            )


def write_run_identity(exp_dir: Path, identity: str) -> Path:
    """Record ``identity`` in ``exp_dir/run_identity.json`` (atomically) for :func:`check_run_identity`."""
    path = exp_dir / RUN_IDENTITY
    atomic_write_text(path, json.dumps({"identity": identity}) + "\n")
    return path


def trainer_options(config: TrainerConfig) -> TrainerConfig:
    """The :class:`TrainerConfig` part alone of a stage's options (a subclass adding data options)."""
    names = {field.name for field in dataclasses.fields(TrainerConfig)}
    return TrainerConfig(**{key: value for key, value in dataclasses.asdict(config).items() if key in names})


def save_pack_with_tokens(
    pack_dir: Path,
    components: Mapping[str, nn.Module],
    context: Mapping[str, Mapping[str, Any]],
    extra: Mapping[str, Any],
    phone_table: PhoneTable,
) -> Path:
    """Save a pack (:func:`speechkit.pack.save_pack`) and copy the phone table into it as ``tokens.txt``.

    Args:
        pack_dir: where the pack goes (``exp/<name>/pack``).
        components: kind -> trained model, e.g. ``{"ar_lm": model}``.
        context: kind -> the constructor values it was built with.
        extra: JSON-able facts recorded in the pack (training outcome, evaluation...).
        phone_table: the phone table the model's IDs refer to.

    Returns:
        The pack directory.
    """
    from speechkit.pack import save_pack

    saved = save_pack(pack_dir, components, context=context, extra=extra)
    phone_table.save(saved / PHONE_TABLE)
    return saved
