"""A real 2-process DistributedDataParallel run on CPU (gloo) through torchrun."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from speechkit.train import list_checkpoints, read_log

WORKER = Path(__file__).with_name("ddp_worker.py")


def test_two_process_gloo_run_trains_in_step(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SPEECHKIT_NO_PLUGINS": "1"}
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(WORKER), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    seconds = time.monotonic() - started
    assert completed.returncode == 0, completed.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["step"] for r in ranks] == [12, 12]
    for name, tensor in ranks[0]["model"].items():  # gradients were all-reduced every step
        torch.testing.assert_close(ranks[1]["model"][name], tensor, rtol=0, atol=0)
    first = [r["epoch0"] for r in ranks]  # each rank's items of epoch 0: disjoint slices
    assert first[0] and first[1] and not set(first[0]) & set(first[1])
    for rank in ranks:  # and those are what the rank's loader really read first
        assert rank["seen"][: len(rank["epoch0"])] == rank["epoch0"]
    records = read_log(tmp_path / "train_log.jsonl")  # written by rank 0 only: one record per step
    assert [r["step"] for r in records] == [2, 4, 6, 8, 10, 12]
    assert records[-1]["loss"] < records[0]["loss"]
    assert [step for step, _ in list_checkpoints(tmp_path)] == [6, 12]
    assert seconds < 60, f"2-process run took {seconds:.0f} s"
