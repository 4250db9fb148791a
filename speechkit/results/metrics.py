"""Per-task figures from per-item scores: what ``exp/score/<task>/metrics.json`` holds.

Each per-item record (a line of ``scores.jsonl``) has ``scores``: ``{metric: value}`` from every
scorer applied to it. Error rates are pooled (``wer`` = all word errors / all reference words,
``per`` likewise over phones), ASR-BLEU is a corpus BLEU from summed n-gram statistics, every other
metric is a mean over the items that have it; each comes with a seeded bootstrap interval over
items (:mod:`speechkit.results.stats`). Helper counts (``errors``, ``ref_words``, BLEU statistics)
feed these figures and are not reported on their own.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from speechkit.errors import DataError
from speechkit.results.stats import BootstrapConfig, Estimate, corpus_estimate, mean_estimate, pooled_ratio_estimate

#: Pooled error rates: metric -> (errors key, reference length key).
POOLED_RATES: dict[str, tuple[str, str]] = {
    "wer": ("errors", "ref_words"),
    "per": ("phone_errors", "ref_phones"),
}
#: Keys consumed by pooled or corpus figures (never averaged on their own).
HELPER_PREFIXES = ("bleu_",)
HELPER_KEYS = frozenset(key for pair in POOLED_RATES.values() for key in pair)
METRICS_FILE = "metrics.json"
SCORES_FILE = "scores.jsonl"


def _is_helper(key: str) -> bool:
    return key in HELPER_KEYS or key.startswith(HELPER_PREFIXES)


def summarize_scores(records: Sequence[Mapping[str, Any]], bootstrap: BootstrapConfig | None = None) -> dict[str, Any]:
    """Task figures from per-item records (``{"id", "lang", "scores": {...}}``).

    Returns:
        ``{"n": items, "languages": {lang: items}, "metrics": {metric: Estimate.as_dict()}}``.
    """
    from speechkit.plugins.scorer.asr_bleu import STAT_KEYS, corpus_bleu_from_stats

    bootstrap = bootstrap or BootstrapConfig()
    if not records:
        raise DataError("No scored items to summarize.")
    metrics: dict[str, Estimate] = {}
    for metric, (errors_key, length_key) in POOLED_RATES.items():
        rows = [r["scores"] for r in records if errors_key in r["scores"] and length_key in r["scores"]]
        if rows:
            metrics[metric] = pooled_ratio_estimate(
                [row[errors_key] for row in rows], [row[length_key] for row in rows], bootstrap
            )
    bleu_rows = [r["scores"] for r in records if all(key in r["scores"] for key in STAT_KEYS)]
    if bleu_rows:

        def bleu(sums: Any) -> float:
            return corpus_bleu_from_stats([dict(zip(STAT_KEYS, sums))])

        metrics["asr_bleu"] = corpus_estimate([[row[key] for key in STAT_KEYS] for row in bleu_rows], bleu, bootstrap)
    names = sorted({key for r in records for key in r["scores"]} - set(metrics))
    for name in names:
        if _is_helper(name):
            continue
        values = [float(r["scores"][name]) for r in records if name in r["scores"]]
        metrics[name] = mean_estimate(values, bootstrap)
    languages: dict[str, int] = {}
    for record in records:
        languages[record.get("lang", "")] = languages.get(record.get("lang", ""), 0) + 1
    return {"n": len(records), "languages": languages, "metrics": {k: v.as_dict() for k, v in metrics.items()}}


def read_scores(path: str | Path) -> list[dict[str, Any]]:
    """Records of a ``scores.jsonl`` file."""
    path = Path(path)
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError as error:
            raise DataError(f"{path}:{number} is not JSON ({error}); delete the task's score dir and re-run.") from error
    return records


def load_task_metrics(score_dir: str | Path) -> dict[str, dict[str, Any]]:
    """``{task: metrics.json content}`` of every task under ``score_dir`` (e.g. ``exp/score``)."""
    tasks = {}
    for path in sorted(Path(score_dir).glob(f"*/{METRICS_FILE}")):
        try:
            tasks[path.parent.name] = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise DataError(f"{path} is not JSON ({error}); re-run scoring (stage 8).") from error
    return tasks
