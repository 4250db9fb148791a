"""tools/batch_ratio_by_spell.py runs the stack's real decoding step at both batch sizes and reports its ratio."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "batch_ratio_by_spell.py"


@pytest.mark.parametrize("kv_cache", ["int8", "int4", "fp32"])
def test_the_tool_reports_quantiles_and_bands_of_the_batch_ratio(kv_cache: str) -> None:
    done = subprocess.run(
        [sys.executable, str(TOOL), "--size", "tiny", "--seconds", "0.5", "--positions", "24", "--batch", "4",
         "--threads", "1", "--kv-cache", kv_cache],
        capture_output=True, text=True, check=True, timeout=300,
    )
    header, summary, *bands = done.stdout.strip().splitlines()
    rounds = int(re.search(r"(\d+) rounds in", header).group(1))
    assert header.startswith(f"tiny fp32, KV cache {kv_cache}, 24 positions, 1 thread(s)") and rounds >= 1
    p10, median, p90 = (float(v) for v in re.search(r"p10 ([0-9.]+), median ([0-9.]+), p90 ([0-9.]+)", summary).groups())
    assert summary.startswith("ratio 0.95 x 4 x t1 / t4") and 0 < p10 <= median <= p90
    assert bands and sum(int(re.search(r": (\d+) rounds", band).group(1)) for band in bands) == rounds
