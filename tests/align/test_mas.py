"""Monotonic Alignment Search on score matrices with a known best path."""
from __future__ import annotations

import itertools

import pytest
import torch

from speechkit.align.mas import (
    check_durations,
    durations_to_frame_phones,
    frame_phones_to_durations,
    monotonic_alignment_search,
)
from speechkit.errors import DataError


def _brute_force_best(scores: torch.Tensor) -> tuple[float, list[int]]:
    """Best monotonic path of scores [P, T] by enumerating all compositions of T into P parts."""
    num_phones, num_frames = scores.shape
    best = (float("-inf"), [])
    for cuts in itertools.combinations(range(1, num_frames), num_phones - 1):
        bounds = (0, *cuts, num_frames)
        path = [p for p in range(num_phones) for _ in range(bounds[p + 1] - bounds[p])]
        total = float(scores[path, torch.arange(num_frames)].sum())
        if total > best[0]:
            best = (total, path)
    return best


def test_mas_recovers_planted_path() -> None:
    durations = torch.tensor([3, 1, 4, 2])
    path = durations_to_frame_phones(durations)
    scores = torch.full((4, 10), -5.0)
    scores[path, torch.arange(10)] = 0.0
    found = monotonic_alignment_search(scores.unsqueeze(0), torch.tensor([4]), torch.tensor([10]))
    assert torch.equal(found[0], path)
    assert torch.equal(frame_phones_to_durations(found[0], 4), durations)


def test_mas_matches_brute_force_on_random_scores_in_a_padded_batch() -> None:
    generator = torch.Generator().manual_seed(0)
    shapes = [(3, 7), (4, 9), (1, 5), (5, 5)]
    scores = torch.randn(len(shapes), 5, 9, generator=generator)
    phone_lens = torch.tensor([p for p, _ in shapes])
    frame_lens = torch.tensor([t for _, t in shapes])
    found = monotonic_alignment_search(scores, phone_lens, frame_lens)
    for row, (num_phones, num_frames) in enumerate(shapes):
        best_score, best_path = _brute_force_best(scores[row, :num_phones, :num_frames])
        path = found[row, :num_frames]
        assert path.tolist() == best_path
        assert bool((found[row, num_frames:] == -1).all())
        durations = frame_phones_to_durations(path, num_phones)
        check_durations(f"item{row}", durations.tolist(), num_phones, num_frames)  # >= 1 each, sums to T


def test_mas_rejects_more_phones_than_frames() -> None:
    with pytest.raises(DataError, match="at least one frame"):
        monotonic_alignment_search(torch.zeros(1, 4, 3), torch.tensor([4]), torch.tensor([3]))


def test_check_durations_names_the_utterance() -> None:
    with pytest.raises(DataError, match="utt1"):
        check_durations("utt1", [2, 0, 3], 3, 5)
