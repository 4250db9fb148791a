"""Render a recipe's ``RESULTS.md`` from its metrics files: nothing in it is typed by hand.

Reads ``<exp>/score/<task>/metrics.json`` (stage 8), done-markers for stage timings, training
curves (``<exp>/*/curve*.jsonl``) and text-use gaps (``<exp>/*/text_use_gap*.json``) where present,
and writes: environment (CPU, threads, versions, git hash and dirty flag), config and command,
the results table (one row per task, per language when a task mixes them), computed target checks,
stage timings and curves. Usage::

    python -m speechkit.results.render --exp exp --out RESULTS.md --config conf/default.yaml \
        --command "./run.sh --stage 1 --stop-stage 8"
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from speechkit.errors import DataError
from speechkit.results.environment import environment, stage_timings
from speechkit.results.metrics import load_task_metrics
from speechkit.results.stats import Estimate
from speechkit.utils.fs import atomic_write_text

GROUND_TRUTH = "ground_truth"
#: Row order and descriptions of the tasks stage 7 produces; other tasks follow, sorted.
TASK_TITLES: dict[str, str] = {
    "ground_truth": "ground truth (real recordings)",
    "resynth": "codec resynthesis (codec upper bound)",
    "nar_oracle_en": "NAR + vocoder from the real level-1 codes and alignment, en (AR upper bound)",
    "nar_oracle_zh": "NAR + vocoder from the real level-1 codes and alignment, zh (AR upper bound)",
    "zs_en": "zero-shot TTS, en prompt -> en",
    "zs_zh": "zero-shot TTS, zh prompt -> zh",
    "xl_zh2en": "cross-lingual TTS, zh prompt -> en",
    "xl_en2zh": "cross-lingual TTS, en prompt -> zh",
    "xl_zh2en_nolid": "cross-lingual zh -> en, no target LID",
    "xl_en2zh_nolid": "cross-lingual en -> zh, no target LID",
    "s2st_zh2en": "S2ST zh -> en",
    "s2st_en2zh": "S2ST en -> zh",
    "s2st_oracle_zh2en": "S2ST zh -> en, oracle text",
    "s2st_oracle_en2zh": "S2ST en -> zh, oracle text",
}
#: Error-rate metrics and how the table names them.
ERROR_RATES = {"wer": "WER % (Whisper tiny.en)", "per": "PER % (own ST CTC)"}
#: Further columns: metric -> header.
COLUMNS = {
    "sim_prompt": "sim. to prompt",
    "sim_same": "sim. to same spk (target lang)",
    "sim_other": "sim. to other spks",
    "sim_margin": "margin",
    "asr_bleu": "ASR-BLEU",
    "dnsmos_ovrl": "DNSMOS ovrl",
}


@dataclasses.dataclass
class Target:
    """A pass/fail check on one figure.

    Attributes:
        description: what the target says, for the table.
        task: the row (task) it applies to.
        metric: metric key (``wer``, ``sim_margin``, ...).
        lang: language of the items it is measured on (empty: all of the task's items).
        relative_to: if set, the figure is divided by the same metric of this task (same language).
        max, min: bounds the (relative) figure must respect (None: no bound).
    """

    description: str
    task: str
    metric: str
    lang: str = ""
    relative_to: str = ""
    max: float | None = None
    min: float | None = None


#: The issue's targets for the default recipe.
DEFAULT_TARGETS: tuple[Target, ...] = (
    Target("English same-language zero-shot WER <= 2x ground truth", "zs_en", "wer", "en", GROUND_TRUTH, max=2.0),
    Target("Cross-lingual English (zh prompt) WER <= 2.5x ground truth", "xl_zh2en", "wer", "en", GROUND_TRUTH, max=2.5),
    Target("Speaker margin zh prompt -> en >= 0.05", "xl_zh2en", "sim_margin", min=0.05),
    Target("Speaker margin en prompt -> zh >= 0.05", "xl_en2zh", "sim_margin", min=0.05),
)


def parse_targets(specs: Iterable[Mapping[str, Any]]) -> list[Target]:
    """Targets from config mappings (keys of :class:`Target`)."""
    from speechkit.config import validate_options

    return [validate_options(Target, spec, "score.targets entry") for spec in specs]


def estimate(tasks: Mapping[str, Any], task: str, metric: str, lang: str = "") -> Estimate | None:
    """The ``metric`` of ``task`` (restricted to ``lang`` items when the task mixes languages), if measured."""
    summary = tasks.get(task)
    if summary is None:
        return None
    if lang and lang in summary.get("by_language", {}):
        summary = summary["by_language"][lang]
    elif lang and summary.get("languages") and lang not in summary["languages"]:
        return None
    found = summary.get("metrics", {}).get(metric)
    return Estimate.from_dict(found) if found else None


def check_target(tasks: Mapping[str, Any], target: Target) -> dict[str, Any]:
    """``{"target", "value", "passed"}``: value None (and passed None) when not measured."""
    value_estimate = estimate(tasks, target.task, target.metric, target.lang)
    value = value_estimate.value if value_estimate else None
    if value is not None and target.relative_to:
        base = estimate(tasks, target.relative_to, target.metric, target.lang)
        value = value / base.value if base and base.value > 0 else None
    passed = None
    if value is not None:
        passed = (target.max is None or value <= target.max) and (target.min is None or value >= target.min)
    return {"target": target, "value": value, "passed": passed}


def _bound(target: Target) -> str:
    parts = ([f"<= {target.max:g}"] if target.max is not None else []) + ([f">= {target.min:g}"] if target.min is not None else [])
    return ", ".join(parts)


def _cell(found: Estimate | None, scale: float = 1.0, digits: int = 3) -> str:
    if found is None:
        return "-"
    return f"{found.value * scale:.{digits}f} [{found.low * scale:.{digits}f}, {found.high * scale:.{digits}f}]"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(value) for value in row) + " |" for row in rows]
    return lines


def ordered_rows(tasks: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(task, lang)`` rows: known tasks in :data:`TASK_TITLES` order, then the rest; one row per
    language for tasks that mix languages (lang ``""`` otherwise)."""
    names = [t for t in TASK_TITLES if t in tasks] + sorted(t for t in tasks if t not in TASK_TITLES)
    rows = []
    for task in names:
        languages = sorted(tasks[task].get("by_language", {}))
        rows += [(task, lang) for lang in languages] if languages else [(task, "")]
    return rows


def results_table(tasks: Mapping[str, Any]) -> list[str]:
    """The main table: n, error rates with CI and ratio to ground truth, similarities, BLEU, DNSMOS."""
    header = ["row", "n", *ERROR_RATES.values(), "x GT", *COLUMNS.values()]
    rows = []
    for task, lang in ordered_rows(tasks):
        summary = tasks[task]["by_language"][lang] if lang else tasks[task]
        languages = "/".join(sorted(summary.get("languages", {})))
        title = f"{task} ({lang or languages}): {TASK_TITLES.get(task, '')}".rstrip(": ")
        failed = summary.get("failed", 0)
        cells = [title, f"{summary['n']} ({failed} failed)" if failed else summary["n"]]
        ratio = "-"
        for metric in ERROR_RATES:
            found = estimate(tasks, task, metric, lang)
            cells.append(_cell(found, 100.0, 1))
            base = estimate(tasks, GROUND_TRUTH, metric, lang or languages)
            if found is not None and base is not None and base.value > 0 and task != GROUND_TRUTH:
                ratio = f"{found.value / base.value:.2f}"
        cells.append(ratio)
        cells += [_cell(estimate(tasks, task, metric, lang), 1.0, 1 if metric == "asr_bleu" else 3) for metric in COLUMNS]
        rows.append(cells)
    return _table(header, rows)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


#: Explanations printed above the curve tables, by file name.
CURVE_CAPTIONS = {
    "curve_ar.jsonl": (
        "Every AR checkpoint of each variant (stage 8, `speechkit.bin.curve`), with the final NAR, codec and "
        "ST models: `gap*` = text-use gap on dev pairs (nats/frame; `_en`/`_zh` by target language), "
        "`wer_*`/`per_*` and `sim_margin_*` on the first `curve.max_items` test items of each task."
    ),
}


def curve_sections(exp: Path) -> list[str]:
    """Tables of every training curve, text-use gap and NAR level-accuracy file found under ``exp``."""
    lines: list[str] = []
    for path in sorted({*exp.glob("*/curve*.jsonl"), *exp.glob("*/*/curve*.jsonl")}):
        records = _jsonl(path)
        if not records:
            continue
        columns = list(dict.fromkeys(key for record in records for key in record))
        lines += ["", f"### {path.relative_to(exp.parent)}", ""]
        if path.name in CURVE_CAPTIONS:
            lines += [CURVE_CAPTIONS[path.name], ""]
        lines += _table(columns, ([_format(r.get(c, "")) for c in columns] for r in records))
    for path in sorted({*exp.glob("*/text_use_gap*.json"), *exp.glob("*/*/text_use_gap*.json")}):
        data = json.loads(path.read_text(encoding="utf-8"))
        lines += ["", f"### {path.relative_to(exp.parent)} (text-use gap: loss with a wrong text minus with the right text)", ""]
        if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
            columns = list(dict.fromkeys(key for value in data.values() for key in value))
            lines += _table(["variant", *columns], ([k, *(_format(v.get(c, "")) for c in columns)] for k, v in data.items()))
        elif isinstance(data, dict):
            lines += _table(["key", "value"], ([k, _format(v)] for k, v in data.items()))
        else:
            lines += _table(["value"], ([_format(data)],))
    for path in sorted(exp.glob("*/level_accuracy*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        levels = data.get("levels") if isinstance(data, dict) else None
        if not isinstance(levels, dict) or not levels:
            continue
        lines += ["", f"### {path.relative_to(exp.parent)} (NAR on dev pairs, teacher-forced, step {data.get('step', '?')})", ""]
        lines += _table(["level", "loss", "accuracy"],
                        ([level, _format(m.get("loss", "")), _format(m.get("accuracy", ""))] for level, m in levels.items()))
    return lines


def sweep_sections(exp: Path) -> list[str]:
    """Tables of every comparison ``tools/sweep_sampling.py`` wrote (``exp/sweep/*sweep.json``): one
    row per setting (sampling, AR decoding options, the NAR pack) with its WER/PER and margins."""
    lines: list[str] = []
    for path in sorted((exp / "sweep").glob("*sweep.json")):
        rows = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(rows, list) or not rows:
            continue
        columns = sorted({key for row in rows for key in row if key != "setting"})
        lines += ["", f"### {path.relative_to(exp.parent)}", ""]
        lines += _table(["setting", *columns],
                        ([", ".join(f"{k}={v}" for k, v in row.get("setting", {}).items()) or "recipe config",
                          *(_format(row.get(c, "")) for c in columns)] for row in rows))
    return lines


def render_markdown(
    exp: Path, *, config_path: str | Path | None, command: str, targets: Sequence[Target] | None = None
) -> str:
    """The whole ``RESULTS.md`` text for experiment dir ``exp``."""
    exp = Path(exp)
    tasks = load_task_metrics(exp / "score")
    if not tasks:
        raise DataError(f"No {exp}/score/<task>/metrics.json found; run scoring (stage 8) first.")
    env = environment(exp.parent if exp.parent.exists() else ".")
    dirty = {True: " (dirty: uncommitted changes)", False: "", None: ""}[env["git_dirty"]]
    lines = [
        "# Results",
        "",
        "Generated by `python -m speechkit.results.render` from the metrics files of stage 8; do not edit by hand.",
        "",
        "## Environment",
        "",
        f"- generated: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- git: `{env['git_commit']}`{dirty}",
        f"- CPU: {env['cpu']} ({env['cpu_count']} logical cores, {env['torch_threads']} torch threads); GPU: {env['cuda']}",
        f"- platform: {env['platform']}",
        "- versions: " + ", ".join(f"{name} {env[name]}" for name in (
            "python", "torch", "speechkit", "faster-whisper", "resemblyzer", "speechmos", "sacrebleu", "jiwer")),
        f"- config: `{config_path}`" if config_path else "- config: (not recorded)",
        f"- command: `{command}`" if command else "- command: (not recorded)",
        "",
        "## Results",
        "",
        "Value [95% CI], bootstrap over items (seeded). WER/PER are pooled over all reference words/phones.",
        "n: items scored; items stage 7 failed to synthesise are counted apart and not in the figures.",
        "WER: Whisper tiny.en (English rows). PER: phone error rate of the recipe's own ST model's CTC",
        "recogniser (Chinese rows: no offline Mandarin ASR exists; comparable within this table only).",
        "x GT: error rate divided by the ground-truth rows' error rate in the same language. Similarities:",
        "Resemblyzer cosine of the output to the prompt, to the same speaker's real speech in the target",
        "language (another sentence than the output's), and to other test speakers' real speech (the same",
        "sentence); margin = same - other. ASR-BLEU (S2ST): sacrebleu",
        "on normalised Whisper transcripts (en) or on recognised phones (zh). DNSMOS: overall MOS (1-5).",
        "",
        *results_table(tasks),
        "",
        "## Target checks",
        "",
    ]
    checks = [check_target(tasks, target) for target in (targets or DEFAULT_TARGETS)]
    lines += _table(
        ["target", "measured", "bound", "result"],
        ([c["target"].description, "-" if c["value"] is None else f"{c['value']:.3f}", _bound(c["target"]),
          {True: "PASS", False: "FAIL", None: "not measured"}[c["passed"]]] for c in checks),
    )
    timings = stage_timings([exp.parent / name for name in ("data", "dump")] + [exp])
    if timings:
        lines += ["", "## Stage timings (from done-markers)", ""]
        lines += _table(["stage", "seconds"], ([label, f"{seconds:.1f}"] for label, seconds in timings))
    curves = curve_sections(exp)
    if curves:
        lines += ["", "## Curves (per variant, vs training minutes)", *curves]
    sweeps = sweep_sections(exp)
    if sweeps:
        lines += ["", "## Comparisons (tools/sweep_sampling.py)", "",
                  "The first `--max-items` test items of each task, synthesised under each setting (sampling "
                  "options, `ar.*` decoding options of the AR model, `precision`/`kv_cache`/`attention`, or another NAR pack) "
                  "with the models of the pipeline pack when the sweep ran (an `ar-step<N>_` or `nar-step<N>_` "
                  "file-name prefix marks tables measured with an earlier AR or NAR; `nar-<run>_`, with a "
                  "`nar_pack` setting, another trained NAR) and scored like the curve.", *sweeps]
    lines += ["", "Per-item scores and transcripts: `" + f"{exp.name}/score/<task>/scores.jsonl" + "`.", ""]
    return "\n".join(lines)


def render_results(
    exp: str | Path, out: str | Path, *, config_path: str | Path | None = None, command: str = "",
    targets: Sequence[Target] | Sequence[Mapping[str, Any]] | None = None,
) -> Path:
    """Write ``out`` (atomically) from the metrics under ``exp``; ``targets`` as Targets or config mappings."""
    if targets and not isinstance(targets[0], Target):
        targets = parse_targets(targets)  # type: ignore[arg-type]
    text = render_markdown(Path(exp), config_path=config_path, command=command, targets=targets)  # type: ignore[arg-type]
    atomic_write_text(Path(out), text)
    return Path(out)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: render RESULTS.md."""
    from speechkit.config import load_config

    parser = argparse.ArgumentParser(description="Render RESULTS.md from stage 8 metrics files.")
    parser.add_argument("--exp", type=Path, default=Path("exp"))
    parser.add_argument("--out", type=Path, default=Path("RESULTS.md"))
    parser.add_argument("--config", type=Path, default=None, help="recipe config (its score.targets are checked)")
    parser.add_argument("--command", default="", help="the command that produced the results")
    args = parser.parse_args(argv)
    targets = None
    if args.config is not None:
        config = load_config(args.config)
        if "score" in config and config.score.get("targets"):
            targets = parse_targets(config.score.targets)
    out = render_results(args.exp, args.out, config_path=args.config, command=args.command, targets=targets)
    print(out)
    return 0


if __name__ == "__main__":
    from speechkit.bin.common import run_main

    raise SystemExit(run_main(main))
