"""Checkpoint files: atomic save, weights_only load, listing, pruning, averaging, RNG states."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from speechkit.errors import DataError
from speechkit.train.checkpoint import (
    average_model_states,
    capture_rng_state,
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
)


def test_save_list_prune_and_average(tmp_path):
    for step, value in [(10, 1.0), (20, 2.0), (30, 6.0)]:
        save_checkpoint({"model": {"w": torch.full((2,), value), "count": torch.tensor(step)}},
                        checkpoint_path(tmp_path, step))
    assert [s for s, _ in list_checkpoints(tmp_path)] == [10, 20, 30]
    averaged = average_model_states([p for _, p in list_checkpoints(tmp_path)])
    torch.testing.assert_close(averaged["w"], torch.full((2,), 3.0))
    assert averaged["count"].item() == 30  # integers come from the newest checkpoint
    assert prune_checkpoints(tmp_path, keep=1) == [checkpoint_path(tmp_path, 10), checkpoint_path(tmp_path, 20)]
    assert [s for s, _ in list_checkpoints(tmp_path)] == [30]
    assert not list(tmp_path.glob("checkpoints/.*"))  # no temporary files left behind


def test_mismatched_checkpoints_and_bad_files_are_clear_errors(tmp_path):
    save_checkpoint({"model": {"a": torch.zeros(1)}}, tmp_path / "a.pt")
    save_checkpoint({"model": {"b": torch.zeros(1)}}, tmp_path / "b.pt")
    with pytest.raises(DataError, match="different parameters"):
        average_model_states([tmp_path / "a.pt", tmp_path / "b.pt"])
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="broken.pt"):
        load_checkpoint(tmp_path / "broken.pt")
    with pytest.raises(DataError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_rng_states_survive_a_weights_only_round_trip(tmp_path):
    seed_everything(7)
    save_checkpoint({"rng": capture_rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), float(np.random.rand()), torch.rand(3).tolist())
    random.random(), np.random.rand(), torch.rand(5)  # move every stream on
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert (random.random(), float(np.random.rand()), torch.rand(3).tolist()) == expected
