"""Training checkpoints: atomic writes, discovery, pruning, averaging, RNG state capture.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts written with
``torch.save`` through :func:`speechkit.utils.fs.atomic_open`, so it loads with
``torch.load(..., weights_only=True)`` and a killed run never leaves a truncated file.
Files are ``<exp_dir>/checkpoints/step-<8 digits>.pt``.
"""
from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechkit.errors import DataError
from speechkit.utils.fs import atomic_open

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d{8,})\.pt$")


def checkpoint_path(exp_dir: str | Path, step: int) -> Path:
    """Path of the checkpoint taken after optimizer step ``step``."""
    return Path(exp_dir) / CHECKPOINT_DIR / f"step-{step:08d}.pt"


def list_checkpoints(exp_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every checkpoint in ``exp_dir``, oldest first."""
    directory = Path(exp_dir) / CHECKPOINT_DIR
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def save_checkpoint(state: Mapping[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically (the previous file stays intact until the rename)."""
    with atomic_open(path, "wb", encoding=None) as handle:
        torch.save(dict(state), handle)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``.

    Raises:
        DataError: the file is missing or unreadable (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Checkpoint {path} does not exist.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # pickle/zip errors vary by torch version
        raise DataError(f"Cannot load checkpoint {path}: {error}. Delete it to resume from an older one.") from error


def prune_checkpoints(exp_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` checkpoints; returns the deleted paths."""
    checkpoints = list_checkpoints(exp_dir)
    doomed = [path for _, path in checkpoints[: max(len(checkpoints) - keep, 0)]]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def average_model_states(paths: Sequence[str | Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the ``model`` weights stored in ``paths``.

    Floating-point tensors are averaged (in float64, cast back); integer tensors (counters such
    as BatchNorm's ``num_batches_tracked``) are taken from the last checkpoint.
    """
    if not paths:
        raise DataError("No checkpoints to average.")
    total: dict[str, torch.Tensor] = {}
    last: Mapping[str, torch.Tensor] = {}
    for path in paths:
        last = load_checkpoint(path)["model"]
        if total and set(last) != set(total):
            raise DataError(f"Checkpoint {path} holds different parameters than {paths[0]}; cannot average.")
        for name, tensor in last.items():
            if tensor.is_floating_point():
                total[name] = total.get(name, 0) + tensor.double()
            else:
                total[name] = tensor
    return {
        name: (value / len(paths)).to(last[name].dtype) if last[name].is_floating_point() else value
        for name, value in total.items()
    }


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) RNG states as tensors and plain numbers."""
    version, python_state, gauss = random.getstate()
    _, numpy_keys, numpy_pos, numpy_has_gauss, numpy_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": torch.tensor(python_state, dtype=torch.int64),
        "python_version": int(version),
        "python_gauss": gauss,
        "numpy_keys": torch.from_numpy(numpy_keys.astype(np.int64)),
        "numpy_pos": int(numpy_pos),
        "numpy_has_gauss": int(numpy_has_gauss),
        "numpy_gauss": float(numpy_gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    random.setstate((state["python_version"], tuple(state["python"].tolist()), state["python_gauss"]))
    np.random.set_state((
        "MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"],
        state["numpy_has_gauss"], state["numpy_gauss"],
    ))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
