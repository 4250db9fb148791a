"""RESULTS.md rendering: every number comes from the metrics files, targets are computed."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechkit.results.render import Target, check_target, main, render_markdown, render_results
from speechkit.results.stats import Estimate


def _metric(value: float, n: int = 10, method: str = "mean") -> dict:
    return Estimate(value, value - 0.01, value + 0.01, n, method).as_dict()


def _task(tmp: Path, task: str, metrics: dict, languages: dict, by_language: dict | None = None) -> None:
    folder = tmp / "exp" / "score" / task
    folder.mkdir(parents=True)
    data = {"n": sum(languages.values()), "languages": languages, "metrics": metrics}
    if by_language:
        data["by_language"] = by_language
    (folder / "metrics.json").write_text(json.dumps(data))


@pytest.fixture
def exp(tmp_path: Path) -> Path:
    gt_en = {"n": 10, "languages": {"en": 10}, "metrics": {"wer": _metric(0.10, method="pooled")}}
    gt_zh = {"n": 8, "languages": {"zh": 8}, "metrics": {"per": _metric(0.20, 8, "pooled")}}
    _task(tmp_path, "ground_truth", {**gt_en["metrics"], **gt_zh["metrics"]}, {"en": 10, "zh": 8},
          {"en": gt_en, "zh": gt_zh})
    _task(tmp_path, "zs_en", {"wer": _metric(0.23, method="pooled"), "sim_prompt": _metric(0.8)}, {"en": 10})
    _task(tmp_path, "xl_zh2en", {"wer": _metric(0.20, method="pooled"), "sim_margin": _metric(0.07),
                                 "sim_same": _metric(0.85), "sim_other": _metric(0.78)}, {"en": 10})
    _task(tmp_path, "xl_en2zh", {"per": _metric(0.30, 8, "pooled"), "sim_margin": _metric(0.01)}, {"zh": 8})
    _task(tmp_path, "s2st_zh2en", {"wer": _metric(0.5, method="pooled"), "asr_bleu": _metric(31.25, method="corpus"),
                                   "dnsmos_ovrl": _metric(2.75)}, {"en": 10})
    _task(tmp_path, "custom_task", {"sim_prompt": _metric(0.5)}, {"en": 3})
    (tmp_path / "exp" / "ar").mkdir()
    (tmp_path / "exp" / "ar" / "curve.jsonl").write_text(
        json.dumps({"variant": "plain", "minutes": 5, "wer": 0.9}) + "\n"
        + json.dumps({"variant": "plain", "minutes": 10, "wer": 0.7, "gap": 0.12}) + "\n")
    (tmp_path / "exp" / "ar" / "text_use_gap.json").write_text(json.dumps({"plain": {"gap": 0.04}, "aligned": {"gap": 0.5}}))
    (tmp_path / "exp" / "ar" / ".done.train").write_text(json.dumps({"key": "k", "seconds": 61.5}))
    (tmp_path / "dump" / "train").mkdir(parents=True)
    for shard, seconds in enumerate((2.0, 3.0)):
        (tmp_path / "dump" / "train" / f".done.codes.{shard}").write_text(json.dumps({"key": "k", "seconds": seconds}))
    return tmp_path / "exp"


def _row(text: str, start: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {start}"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_table_rows_come_from_metrics(exp: Path) -> None:
    text = render_markdown(exp, config_path="conf/x.yaml", command="./run.sh --stage 8")
    assert "`./run.sh --stage 8`" in text and "`conf/x.yaml`" in text and "git:" in text and "CPU:" in text
    zs = _row(text, "zs_en")
    assert zs[1] == "10" and zs[2] == "23.0 [22.0, 24.0]" and zs[4] == "2.30" and zs[5] == "0.800 [0.790, 0.810]"
    assert _row(text, "ground_truth (en)")[2] == "10.0 [9.0, 11.0]"
    assert _row(text, "ground_truth (zh)")[3] == "20.0 [19.0, 21.0]"
    assert _row(text, "xl_en2zh")[4] == "1.50"  # PER ratio to the zh ground truth
    s2st = _row(text, "s2st_zh2en")
    assert s2st[9] == "31.2 [31.2, 31.3]" and s2st[10] == "2.750 [2.740, 2.760]"
    assert _row(text, "custom_task")[0] == "custom_task (en)"
    order = [text.index(f"| {task}") for task in ("ground_truth", "zs_en", "xl_zh2en", "xl_en2zh", "s2st_zh2en", "custom_task")]
    assert order == sorted(order)


def test_targets_are_computed(exp: Path) -> None:
    text = render_markdown(exp, config_path=None, command="")
    assert _row(text, "English same-language")[1:] == ["2.300", "<= 2", "FAIL"]
    assert _row(text, "Cross-lingual English")[1:] == ["2.000", "<= 2.5", "PASS"]
    assert _row(text, "Speaker margin zh prompt")[1:] == ["0.070", ">= 0.05", "PASS"]
    assert _row(text, "Speaker margin en prompt")[1:] == ["0.010", ">= 0.05", "FAIL"]
    tasks = {"a": {"metrics": {}}}
    assert check_target(tasks, Target("x", "missing", "wer", max=1.0))["passed"] is None


def test_timings_and_curves(exp: Path) -> None:
    text = render_markdown(exp, config_path=None, command="")
    assert _row(text, "exp/ar: train")[1] == "61.5"
    assert _row(text, "dump/train: codes")[1] == "5.0"  # shards summed
    assert "### exp/ar/curve.jsonl" in text
    assert _row(text, "plain | 10")[:4] == ["plain", "10", "0.7", "0.12"]
    assert _row(text, "aligned")[1] == "0.5"


def test_sweep_comparisons_are_rendered(exp: Path) -> None:
    assert "## Comparisons" not in render_markdown(exp, config_path=None, command="")
    (exp / "sweep").mkdir()
    rows = [{"setting": {"temperature": 0.5}, "wer_zs_en": 0.8, "sim_margin_zs_en": 0.1},
            {"setting": {"temperature": 0.7, "nar_pack": "exp/nar_clean/pack"}, "wer_zs_en": 0.9}]
    (exp / "sweep" / "nar-nar_clean_sweep.json").write_text(json.dumps(rows))
    text = render_markdown(exp, config_path=None, command="")
    assert "### exp/sweep/nar-nar_clean_sweep.json" in text
    assert _row(text, "temperature=0.5")[1:] == ["0.1", "0.8"]
    assert _row(text, "temperature=0.7, nar_pack=exp/nar_clean/pack")[1:] == ["", "0.9"]


def test_cli_and_config_targets(exp: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("score:\n  targets:\n    - {description: margin, task: xl_en2zh, metric: sim_margin, min: 0.0}\n")
    out = tmp_path / "RESULTS.md"
    assert main(["--exp", str(exp), "--out", str(out), "--config", str(config), "--command", "run it"]) == 0
    text = out.read_text()
    assert _row(text, "margin |")[1:] == ["0.010", ">= 0", "PASS"]
    assert "English same-language" not in text
    assert str(out) in capsys.readouterr().out
    with pytest.raises(Exception, match="stage 8"):
        render_results(tmp_path / "empty_exp", tmp_path / "R.md")
