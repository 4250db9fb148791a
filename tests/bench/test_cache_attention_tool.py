"""tools/cache_attention_rate.py runs and prints its three timings for every cache precision."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "cache_attention_rate.py"


@pytest.mark.parametrize("kv_cache", ["int4", "int8", "bf16", "fp32"])
def test_the_tool_times_memory_cache_and_reading(kv_cache: str) -> None:
    done = subprocess.run(
        [sys.executable, str(TOOL), "--kv-cache", kv_cache, "--batch", "2", "--heads", "4", "--positions", "1000",
         "--layers", "2", "--rounds", "2", "--threads", "1"],
        capture_output=True, text=True, check=True, timeout=300,
    )
    header, *rows = done.stdout.strip().splitlines()
    expected_mb = 2 * 2 * 4 * 1000 * 64 * {"int4": 0.5, "int8": 1, "bf16": 2, "fp32": 4}[kv_cache] * 2 / 1e6  # layers, B, H, S, Dh, K+V
    if kv_cache in ("int8", "int4"):
        expected_mb += 2 * 2 * 4 * 1000 * 4 * 2 / 1e6  # the scales
    assert header.startswith(f"{kv_cache} cache, batch 2, 4 heads of 64, 1000 positions, 2 layers ({expected_mb:.1f} MB)")
    assert [row.split(":")[0].strip() for row in rows] == ["memory", "cache", "read"]
    for row in rows:
        median = float(re.search(r"median ([0-9.]+) ms", row).group(1))
        assert median > 0
