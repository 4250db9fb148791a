"""The inference benchmarks (`speechkit bench ar|nar|e2e`) on the tiny size: they run and write the figures."""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
import torch

from speechkit.bench.ar import GreedyReference, run as bench_ar
from speechkit.bench.bandwidth import kv_cache_bytes, kv_element_bytes, linear_weight_bytes, measure_bandwidth
from speechkit.bench.nar import attention_arithmetic, output_seconds_for, run as bench_nar
from speechkit.bench.report import bench_parser, parse_common, usable_cpus
from speechkit.bench.scenario import build_ar, get_size, make_scenario
from speechkit.bench.timing import Clock, PeakMemory
from speechkit.cli import main
from speechkit.errors import ConfigError
from speechkit.infer.precision import apply_precision, int8_streams_vectorized, onednn_packing_available
from speechkit.nn.attention import MultiHeadAttention
from speechkit.nn.bf16_attention import bf16_attention_supported
from speechkit.nn.decode_kernel import decode_kernel_available

COMMON = ["--sizes", "tiny", "--threads", "1", "--output-seconds", "0.5"]


def run_bench(what: str, tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / f"{what}.json"
    assert main(["bench", what, *COMMON, "--out", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_bench_ar_writes_every_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_bench("ar", tmp_path, "--batch", "1,3", "--bandwidth-mb", "8", "--repeats", "2")
    assert "ms_per_step" in capsys.readouterr().out  # the table
    assert set(result["bandwidth"]) == {"copy_gbps", "read_gbps", "floor_gbps"}
    assert result["environment"]["threads"] == 1 and result["options"]["sizes"] == ["tiny"]
    rows = {(row["precision"], row["batch"]): row for row in result["rows"]}
    assert set(rows) == {(p, b) for p in ("fp32", "bf16", "int8") for b in (1, 3)}
    planned = {batch: int(make_scenario(get_size("tiny"), batch, output_seconds=0.5).output_frames.sum()) for batch in (1, 3)}
    for (precision, batch), row in rows.items():
        assert row["frames"] == planned[batch], "each sequence stops at its own planned length"
        assert row["ms_per_step"] > 0 and row["tokens_per_s"] > 0 and row["rtf"] > 0 and row["batch_speedup"] > 0
        assert 0.0 <= row["greedy_token_agreement"] <= 1.0
        assert ("floor_ms" in row) == (batch == 1)
        assert len(row["decode_s_runs"]) == 2 and row["decode_s"] == min(row["decode_s_runs"])  # the faster run
        assert 0 < row["loop_ms_per_step"] < row["ms_per_step"], "the stacks' steps take part of each step, not all"
    for precision in ("fp32", "bf16", "int8"):  # the median of the per-turn ratios
        single, batched = rows[precision, 1], rows[precision, 3]
        assert "batch_speedup_paired" not in single
        per_turn = [(batched["frames"] / b) / (single["frames"] / s) for s, b in zip(single["decode_s_runs"], batched["decode_s_runs"])]
        assert batched["batch_speedup_paired"] == pytest.approx(sum(per_turn) / 2)  # two turns: their mean
    assert rows["fp32", 1]["greedy_token_agreement"] == 1.0
    fused = decode_kernel_available() and onednn_packing_available()
    assert rows["fp32", 1]["step"] == ("fused" if fused else "lean")
    assert rows["int8", 3]["step"] == ("fused" if decode_kernel_available() and int8_streams_vectorized() else "lean")
    assert rows["fp32", 1]["floor_ratio"] == pytest.approx(rows["fp32", 1]["ms_per_step"] / rows["fp32", 1]["floor_ms"])
    assert rows["fp32", 1]["bandwidth_gbps"] > 0  # measured again just before the reported run


def test_bench_nar_and_e2e(tmp_path: Path) -> None:
    nar = run_bench("nar", tmp_path, "--precision", "fp32,int8", "--positions", "260", "--attention", "fp32,bf16")
    # the tiny size's head size (16) is not the bf16 kernel's: each precision runs once, in fp32 attention
    assert [(row["precision"], row["attention"]) for row in nar["rows"]] == [("fp32", "fp32"), ("int8", "fp32")]
    assert all(abs(row["positions"] - 260) <= 2 and row["levels"] == 2 and row["nar_s"] > 0 for row in nar["rows"])
    assert nar["rows"][0]["code_agreement"] == 1.0
    e2e = run_bench("e2e", tmp_path, "--batch", "2", "--precision", "bf16", "--no-pack")
    [row] = e2e["rows"]
    assert row["total_s"] == pytest.approx(row["ar_s"] + row["nar_s"] + row["vocoder_s"])
    assert row["audio_s"] > 0 and row["rtf"] == pytest.approx(row["total_s"] / row["audio_s"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_benchmarks_run_on_cuda_with_events(tmp_path: Path) -> None:
    """The same commands with --device cuda: int8 (CPU only) left out of the default precisions,
    the GPU named, per-step CPU timing absent (steps are queued), memory from the CUDA allocator."""
    ar = run_bench("ar", tmp_path, "--batch", "1,3", "--bandwidth-mb", "64", "--kv-cache", "fp32,int8", "--device", "cuda")
    assert ar["environment"]["gpu"] and ar["environment"]["device"] == "cuda"
    rows = {(row["precision"], row["kv_cache"], row["batch"]): row for row in ar["rows"]}
    assert set(rows) == {(p, kv, b) for p in ("fp32", "bf16") for kv in ("fp32", "int8") for b in (1, 3)}
    planned = {batch: int(make_scenario(get_size("tiny"), batch, output_seconds=0.5).output_frames.sum()) for batch in (1, 3)}
    for (precision, kv_cache, batch), row in rows.items():
        assert row["frames"] == planned[batch] and row["ms_per_step"] > 0 and row["peak_memory_mb"] > 0
        assert row["loop_ms_per_step"] is None and row["step"] == "graph"
        assert row["greedy_token_agreement"] >= 0.8 and row["warm_up_runs"] == 1
    assert rows["fp32", "fp32", 1]["greedy_token_agreement"] == 1.0
    assert rows["fp32", "fp32", 1]["floor_ms"] > 0 and ar["bandwidth"]["floor_gbps"] > 0
    nar = run_bench("nar", tmp_path, "--positions", "260", "--device", "cuda")
    assert [row["precision"] for row in nar["rows"]] == ["fp32", "bf16"] and nar["rows"][0]["code_agreement"] == 1.0
    e2e = run_bench("e2e", tmp_path, "--batch", "2", "--device", "cuda")
    assert [row["precision"] for row in e2e["rows"]] == ["fp32"] and e2e["rows"][0]["total_s"] > 0
    with pytest.raises(ConfigError, match="CPU only"):
        bench_ar([*COMMON, "--device", "cuda", "--precision", "int8", "--out", str(tmp_path / "x.json")])


def test_bench_nar_compile_adds_compiled_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "compile", lambda function, **options: function)  # the real one: tests/infer/test_compiled.py
    nar = run_bench("nar", tmp_path, "--precision", "fp32,int8", "--positions", "260", "--compile")
    rows = nar["rows"]
    assert [(row["precision"], row["compiled"]) for row in rows] == [("fp32", "no"), ("fp32", "yes"), ("int8", "no")]
    assert rows[1]["compile_s"] > 0 and rows[0]["compile_s"] is None  # the first compiled call, timed apart
    assert rows[1]["code_agreement"] == 1.0


def test_floor_counts_weights_in_their_stored_precision() -> None:
    size = get_size("tiny")
    scenario = make_scenario(size, 1)
    sizes = {p: linear_weight_bytes(apply_precision(build_ar(size, scenario), p)) for p in ("fp32", "bf16", "int8")}
    assert sizes["fp32"] == linear_weight_bytes(build_ar(size, scenario))
    assert sizes["bf16"] == sizes["fp32"] // 2
    assert sizes["int8"] < sizes["bf16"]
    assert kv_cache_bytes(num_layers=2, d_model=8, positions=10, batch_size=3) == 2 * 2 * 3 * 10 * 8 * 4
    assert (kv_element_bytes("fp32", 64), kv_element_bytes("bf16", 64), kv_element_bytes("int8", 64),
            kv_element_bytes("int4", 64)) == (4, 2, 1.0625, 0.5625)


def test_cached_agreement_measures_the_kv_cache_precision_too() -> None:
    """valle_ar: the cached pass (prefill + steps) of fp32 equals the parallel pass; an int8 cache
    moves the logits a little (the parallel pass cannot see it) and keeps the greedy choices, an
    int4 cache (head size 16: its torch path) moves them more."""
    tiny = get_size("tiny")
    size = dataclasses.replace(tiny, ar={**tiny.ar, "name": "valle_ar", "d_model": 64, "num_heads": 4})
    scenario = make_scenario(size, 1, output_seconds=0.5)
    reference = GreedyReference.decode(build_ar(size, scenario), scenario, 20)
    exact = reference.agreement(apply_precision(build_ar(size, scenario), "fp32"))
    assert exact["cached_token_agreement"] == 1.0 and exact["cached_max_logit_error"] < 1e-3
    int8 = reference.agreement(apply_precision(build_ar(size, scenario), "fp32", kv_cache="int8"))
    assert int8["max_logit_error"] < 1e-3 and int8["max_logit_error"] < int8["cached_max_logit_error"] < 0.5
    assert int8["cached_max_logit_error"] > 10 * exact["cached_max_logit_error"]
    assert int8["cached_token_agreement"] >= 0.8
    int4 = reference.agreement(apply_precision(build_ar(size, scenario), "fp32", kv_cache="int4"))
    assert int4["max_logit_error"] < 1e-3 and int4["cached_max_logit_error"] > 10 * int8["cached_max_logit_error"]
    assert int4["cached_max_logit_error"] < 1.0 and int4["cached_token_agreement"] >= 0.7


def test_bandwidth_and_clock(device: torch.device) -> None:
    figures = measure_bandwidth(device, megabytes=4, repeats=1)
    assert figures["floor_gbps"] == max(figures["copy_gbps"], figures["read_gbps"]) > 0
    clock = Clock(device)
    clock.mark("a")
    torch.ones(1 << 20, device=device).cumsum(0)  # queued work between the marks
    clock.mark("b")
    assert clock.seconds("a", "b") > 0


def test_bad_options_are_clear() -> None:
    with pytest.raises(SystemExit):
        main(["bench", "ar", "--precision", "fp16"])
    with pytest.raises(ConfigError, match="not a torch device"):
        bench_ar(["--device", "gpu0"])
    with pytest.raises(ConfigError, match="no room"):
        output_seconds_for(get_size("paper"), 100)
    with pytest.raises(ConfigError, match="Unknown benchmark size"):
        get_size("huge")
    with pytest.raises(ConfigError, match="--threads -1"):
        bench_ar(["--threads", "-1"])
    with pytest.raises(ConfigError, match="--positions -3"):
        bench_nar(["--positions", "-3"])
    with pytest.raises(ConfigError, match="--repeats 0"):
        bench_ar(["--repeats", "0"])


def test_more_threads_than_cpus_warns(capsys: pytest.CaptureFixture[str]) -> None:
    too_many = usable_cpus() + 1
    parse_common(bench_parser("ar", "doc"), ["--threads", str(too_many)])
    assert f"--threads {too_many} is more than the {usable_cpus()} CPUs" in capsys.readouterr().err
    parse_common(bench_parser("ar", "doc"), ["--threads", str(usable_cpus())])
    assert capsys.readouterr().err == ""


def test_peak_memory_sees_a_large_allocation(device: torch.device) -> None:
    with PeakMemory(device) as memory:
        block = torch.ones(64_000_000 // 4, device=device)  # 64 MB, touched
        time.sleep(0.05)
        del block
    assert memory.peak_mb is None or memory.peak_mb > 64


def test_bench_nar_reports_the_attention_that_runs() -> None:
    model = torch.nn.ModuleList([MultiHeadAttention(128, 2), MultiHeadAttention(128, 2)])
    assert attention_arithmetic(model, torch.device("cpu")) == "fp32"
    for layer in model:
        layer.sequence_precision = "bf16"
    assert attention_arithmetic(model, torch.device("cpu")) == ("bf16" if bf16_attention_supported(64) else "fp32")
    assert attention_arithmetic(model, torch.device("cuda")) == "fp32"
    model[0].sequence_precision = "fp32"
    assert attention_arithmetic(model, torch.device("cpu")) == ("fp32/bf16" if bf16_attention_supported(64) else "fp32")
    assert attention_arithmetic(torch.nn.Linear(2, 2), torch.device("cpu")) == "-"
