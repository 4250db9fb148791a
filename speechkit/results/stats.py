"""Point estimates with confidence intervals: the mean of per-item values, pooled ratios (WER =
errors summed / reference words summed), and any corpus statistic, by a seeded percentile
bootstrap over items.

Resampling items (not words) respects that errors within one utterance are correlated; the seed
makes every interval reproducible, so a re-run of scoring writes identical metrics files.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from speechkit.errors import ConfigError, DataError


@dataclasses.dataclass
class BootstrapConfig:
    """How intervals are computed.

    Attributes:
        samples: bootstrap resamples (1000 gives intervals stable to ~1% of their width).
        seed: random seed of the resampling.
        confidence: coverage of the interval (0.95 = 2.5th..97.5th percentile).
    """

    samples: int = 1000
    seed: int = 0
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ConfigError(f"bootstrap samples must be >= 1, got {self.samples}.")
        if not 0.0 < self.confidence < 1.0:
            raise ConfigError(f"bootstrap confidence must be in (0, 1), got {self.confidence}.")


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A figure with its confidence interval over ``n`` items.

    Attributes:
        value: the estimate on all items.
        low, high: interval bounds.
        n: items it is computed over.
        method: ``"mean"``, ``"pooled"`` (sum / sum) or ``"corpus"`` (a corpus statistic).
    """

    value: float
    low: float
    high: float
    n: int
    method: str

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for ``metrics.json``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Estimate":
        """Inverse of :meth:`as_dict`."""
        return cls(float(data["value"]), float(data["low"]), float(data["high"]), int(data["n"]), str(data["method"]))


def bootstrap_indices(n: int, config: BootstrapConfig) -> np.ndarray:
    """Resampled item indices, int64[samples, n] (seeded)."""
    if n < 1:
        raise DataError("Cannot bootstrap an empty set of items.")
    return np.random.default_rng(config.seed).integers(0, n, size=(config.samples, n))


def _interval(resampled: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(resampled, [tail, 100.0 - tail])
    return float(low), float(high)


def mean_estimate(values: Sequence[float], config: BootstrapConfig | None = None) -> Estimate:
    """Mean of ``values`` with a bootstrap interval of the mean."""
    config = config or BootstrapConfig()
    array = np.asarray(values, dtype=np.float64)
    indices = bootstrap_indices(len(array), config)
    low, high = _interval(array[indices].mean(axis=1), config.confidence)
    return Estimate(float(array.mean()), low, high, len(array), "mean")


def pooled_ratio_estimate(
    numerators: Sequence[float], denominators: Sequence[float], config: BootstrapConfig | None = None
) -> Estimate:
    """``sum(numerators) / sum(denominators)`` (e.g. word errors / reference words = WER), with a
    bootstrap interval over items; a resample whose denominator sums to 0 counts as ratio 0."""
    config = config or BootstrapConfig()
    top = np.asarray(numerators, dtype=np.float64)
    bottom = np.asarray(denominators, dtype=np.float64)
    if top.shape != bottom.shape:
        raise DataError(f"pooled ratio: {len(top)} numerators but {len(bottom)} denominators.")
    indices = bootstrap_indices(len(top), config)
    sums_top, sums_bottom = top[indices].sum(axis=1), bottom[indices].sum(axis=1)
    ratios = np.divide(sums_top, sums_bottom, out=np.zeros_like(sums_top), where=sums_bottom > 0)
    low, high = _interval(ratios, config.confidence)
    value = float(top.sum() / bottom.sum()) if bottom.sum() > 0 else 0.0
    return Estimate(value, low, high, len(top), "pooled")


def corpus_estimate(
    rows: Sequence[Sequence[float]],
    statistic: Callable[[np.ndarray], float],
    config: BootstrapConfig | None = None,
) -> Estimate:
    """A corpus statistic of summed per-item rows, with a bootstrap interval over items.

    Args:
        rows: float[n, k] per-item sufficient statistics (e.g. BLEU n-gram counts).
        statistic: float[k] column sums -> the figure (e.g. corpus BLEU).
    """
    config = config or BootstrapConfig()
    matrix = np.asarray(rows, dtype=np.float64)
    if matrix.ndim != 2:
        raise DataError(f"corpus statistic: rows must be a 2-D table, got shape {matrix.shape}.")
    indices = bootstrap_indices(len(matrix), config)
    sums = matrix[indices].sum(axis=1)  # [samples, k]
    low, high = _interval(np.array([statistic(row) for row in sums]), config.confidence)
    return Estimate(float(statistic(matrix.sum(axis=0))), low, high, len(matrix), "corpus")
