"""Confidence intervals (seeded bootstrap) and per-task summaries of per-item scores."""
from __future__ import annotations

import numpy as np
import pytest
import sacrebleu

from speechkit.errors import ConfigError, DataError
from speechkit.plugins.scorer.asr_bleu import sentence_bleu_stats
from speechkit.results.metrics import summarize_scores
from speechkit.results.stats import (
    BootstrapConfig,
    Estimate,
    corpus_estimate,
    mean_estimate,
    pooled_ratio_estimate,
)


def test_mean_interval_matches_the_normal_approximation() -> None:
    values = np.random.default_rng(1).normal(0.7, 0.1, 400)
    found = mean_estimate(values, BootstrapConfig(samples=2000, seed=3))
    half_width = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
    assert found.value == pytest.approx(values.mean())
    assert found.low < found.value < found.high
    assert (found.high - found.low) / 2 == pytest.approx(half_width, rel=0.15)
    assert found.n == 400 and found.method == "mean"


def test_intervals_are_seeded_and_degenerate_on_constant_data() -> None:
    values = list(np.random.default_rng(0).uniform(0, 1, 30))
    assert mean_estimate(values, BootstrapConfig(seed=7)) == mean_estimate(values, BootstrapConfig(seed=7))
    assert mean_estimate(values, BootstrapConfig(seed=7)) != mean_estimate(values, BootstrapConfig(seed=8))
    constant = mean_estimate([0.25] * 5)
    assert (constant.low, constant.value, constant.high) == pytest.approx((0.25, 0.25, 0.25))
    assert Estimate.from_dict(constant.as_dict()) == constant


def test_pooled_ratio_weights_items_by_length() -> None:
    found = pooled_ratio_estimate([1, 0, 3], [1, 9, 10])
    assert found.value == pytest.approx(4 / 20)  # not the mean of ratios (0.433)
    assert found.low <= found.value <= found.high and found.method == "pooled"
    assert pooled_ratio_estimate([0, 0], [0, 0]).value == 0.0
    with pytest.raises(DataError):
        pooled_ratio_estimate([1], [1, 2])


def test_corpus_statistic_and_bad_input() -> None:
    found = corpus_estimate([[1, 2], [3, 4]], lambda sums: float(sums[0] / sums[1]))
    assert found.value == pytest.approx(4 / 6)
    with pytest.raises(DataError):
        mean_estimate([])
    with pytest.raises(ConfigError):
        BootstrapConfig(confidence=1.5)


def test_summary_pools_error_rates_and_computes_corpus_bleu() -> None:
    hyps, refs = ["a b c d e", "x y z"], ["a b c d f", "x y w"]
    records = [
        {"id": "1", "lang": "en", "scores": {"wer": 0.2, "errors": 1.0, "ref_words": 5.0, "sim_margin": 0.1,
                                             **sentence_bleu_stats(hyps[0], refs[0])}},
        {"id": "2", "lang": "en", "scores": {"wer": 1 / 3, "errors": 1.0, "ref_words": 3.0, "sim_margin": 0.3,
                                             **sentence_bleu_stats(hyps[1], refs[1])}},
        {"id": "3", "lang": "zh", "scores": {"per": 0.5, "phone_errors": 2.0, "ref_phones": 4.0}},
    ]
    summary = summarize_scores(records, BootstrapConfig(samples=200))
    metrics = summary["metrics"]
    assert summary["n"] == 3 and summary["languages"] == {"en": 2, "zh": 1}
    assert metrics["wer"]["value"] == pytest.approx(2 / 8) and metrics["wer"]["n"] == 2
    assert metrics["per"]["value"] == pytest.approx(0.5) and metrics["per"]["n"] == 1
    assert metrics["sim_margin"]["value"] == pytest.approx(0.2)
    assert metrics["asr_bleu"]["value"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize="none").score)
    assert not {"errors", "ref_words", "phone_errors", "bleu_sys_len"} & set(metrics)
    with pytest.raises(DataError):
        summarize_scores([])
