"""CTC greedy decoding, Viterbi forced alignment (against brute force) and durations."""
from __future__ import annotations

import itertools

import pytest
import torch

from speechkit.errors import DataError
from speechkit.nn.ctc import (
    BLANK_FRAME,
    alignment_durations,
    ctc_forced_align,
    ctc_greedy_decode,
    min_ctc_frames,
    rescale_durations,
)


def peaked_log_probs(path: list[int], num_classes: int, peak: float = 0.9) -> torch.Tensor:
    """FloatTensor[T, C] log-posteriors putting ``peak`` on ``path[t]`` and the rest evenly elsewhere."""
    probs = torch.full((len(path), num_classes), (1 - peak) / (num_classes - 1))
    probs[torch.arange(len(path)), torch.tensor(path)] = peak
    return probs.log()


def collapse(labels: tuple[int, ...], blank: int = 0) -> list[int]:
    """CTC's many-to-one map: merge repeats, drop blanks."""
    return [label for index, label in enumerate(labels) if label != blank and (index == 0 or labels[index - 1] != label)]


def test_greedy_decode_collapses_repeats_drops_blanks_and_respects_lengths() -> None:
    log_probs = torch.stack([
        peaked_log_probs([0, 3, 3, 0, 3, 2, 2, 0], 5),
        peaked_log_probs([1, 1, 0, 4, 4, 4, 4, 4], 5),  # only the first 3 frames are valid
    ])
    assert ctc_greedy_decode(log_probs, torch.tensor([8, 3])) == [[3, 3, 2], [1]]


def test_forced_align_recovers_a_known_path_and_splits_blanks() -> None:
    path = [0, 1, 1, 0, 2, 2, 2, 0, 0, 1, 0]
    frame_targets = ctc_forced_align(peaked_log_probs(path, 4), torch.tensor([1, 2, 1]))
    assert frame_targets.tolist() == [BLANK_FRAME, 0, 0, BLANK_FRAME, 1, 1, 1, BLANK_FRAME, BLANK_FRAME, 2, BLANK_FRAME]
    # leading blank -> first phone; 1 blank between phones -> the next one; 2 blanks -> one each; trailing -> last
    durations = alignment_durations(frame_targets, 3)
    assert durations.tolist() == [3, 5, 3] and int(durations.sum()) == len(path)


@pytest.mark.parametrize("seed", range(6))
def test_forced_align_is_the_best_path_by_brute_force(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    num_frames, num_classes = 6, 4
    targets = torch.tensor([[1, 2, 2], [3, 1], [2, 2], [1, 2, 3], [3], [1, 1, 1]][seed])
    log_probs = torch.randn(num_frames, num_classes, generator=generator).log_softmax(-1)
    best = max(
        float(log_probs[torch.arange(num_frames), torch.tensor(labels)].sum())
        for labels in itertools.product(range(num_classes), repeat=num_frames)
        if collapse(labels) == targets.tolist()
    )
    frame_targets = ctc_forced_align(log_probs, targets)
    labels = torch.where(frame_targets == BLANK_FRAME, 0, targets[frame_targets.clamp_min(0)])
    assert collapse(tuple(labels.tolist())) == targets.tolist()
    assert float(log_probs[torch.arange(num_frames), labels].sum()) == pytest.approx(best, abs=1e-5)
    durations = alignment_durations(frame_targets, targets.numel())
    assert int(durations.sum()) == num_frames and bool((durations >= 1).all())


def test_repeated_phones_need_a_blank_between_them() -> None:
    targets = torch.tensor([2, 2])
    assert min_ctc_frames(targets) == 3
    frame_targets = ctc_forced_align(peaked_log_probs([2, 2, 2], 3), targets)
    assert frame_targets.tolist() in ([0, BLANK_FRAME, 1], )
    with pytest.raises(DataError, match="too short"):
        ctc_forced_align(peaked_log_probs([2, 2], 3), targets)


def test_forced_align_rejects_bad_targets() -> None:
    log_probs = peaked_log_probs([0, 1, 2], 3)
    for bad in ([], [0, 1], [1, 7]):
        with pytest.raises(DataError):
            ctc_forced_align(log_probs, torch.tensor(bad, dtype=torch.long))


def test_rescale_durations_keeps_the_total_and_proportions() -> None:
    durations = torch.tensor([3, 5, 2, 10])
    scaled = rescale_durations(durations, 60)  # 3x
    assert scaled.tolist() == [9, 15, 6, 30]
    odd = rescale_durations(durations, 47)
    assert int(odd.sum()) == 47 and torch.allclose(odd.double(), durations.double() * 47 / 20, atol=1.0)
    with pytest.raises(DataError):
        rescale_durations(torch.tensor([0, 0]), 5)
