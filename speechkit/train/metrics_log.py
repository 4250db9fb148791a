"""The training log: one JSON object per line (``train_log.jsonl``), and a PNG of its curves.

Records look like ``{"split": "train", "step": 100, "epoch": 0, "lr": 0.001, "loss": 2.3,
"accuracy": 0.41, ...}`` or ``{"split": "valid", "step": 100, ...}``. On resume the log is cut
back to the number of records the checkpoint saw, so it never shows a step twice.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from speechkit.utils.fs import atomic_write_text

TRAIN_LOG = "train_log.jsonl"
CURVES_PNG = "curves.png"

#: Keys of a record that are bookkeeping, not curves.
_NOT_CURVES = {"split", "step", "epoch", "lr", "elapsed_s", "steps_per_s"}


class MetricsLog:
    """Appends records to ``<exp_dir>/train_log.jsonl`` and counts them."""

    def __init__(self, exp_dir: str | Path) -> None:
        self.path = Path(exp_dir) / TRAIN_LOG
        self.num_records = len(read_log(self.path)) if self.path.is_file() else 0

    def append(self, record: dict[str, Any]) -> None:
        """Write one record (flushed at once, so a kill loses at most the line being written)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
        self.num_records += 1

    def truncate(self, num_records: int) -> None:
        """Keep the first ``num_records`` records (drop what a killed run wrote after its checkpoint)."""
        records = read_log(self.path)[:num_records] if self.path.is_file() else []
        atomic_write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
        self.num_records = len(records)


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """All complete records of a log file (a torn last line from a kill is skipped)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def plot_curves(log_path: str | Path, png_path: str | Path) -> Path | None:
    """Plot every metric of the log against the step, train and valid on one panel per metric.

    Uses matplotlib's Agg canvas directly (no pyplot, no global backend change). Returns the PNG
    path, or None when the log has nothing to plot yet.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = read_log(log_path) if Path(log_path).is_file() else []
    series: dict[str, dict[str, tuple[list[float], list[float]]]] = defaultdict(dict)
    for record in records:
        split = str(record.get("split", "train"))
        for key, value in record.items():
            if key in _NOT_CURVES or not isinstance(value, (int, float)):
                continue
            steps, values = series[key].setdefault(split, ([], []))
            steps.append(float(record["step"]))
            values.append(float(value))
    if not series:
        return None
    metrics = sorted(series, key=lambda k: (k != "loss", k))
    figure = Figure(figsize=(6.0, 2.4 * len(metrics)))
    figure.subplots_adjust(left=0.14, right=0.97, top=0.97, bottom=0.3 / len(metrics), hspace=0.25)
    FigureCanvasAgg(figure)
    for index, metric in enumerate(metrics, start=1):
        axes = figure.add_subplot(len(metrics), 1, index)
        for split, (steps, values) in sorted(series[metric].items()):
            marker = "o" if split != "train" else None
            axes.plot(steps, values, label=split, marker=marker, markersize=3)
        axes.set_ylabel(metric)
        axes.grid(alpha=0.3)
        axes.legend(loc="best", fontsize="small")
    axes.set_xlabel("optimizer step")
    png_path = Path(png_path)
    tmp = png_path.with_name(f".{png_path.name}.tmp.png")
    figure.savefig(tmp, dpi=90)
    tmp.replace(png_path)
    return png_path
