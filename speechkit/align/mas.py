"""Monotonic Alignment Search (Glow-TTS): the best monotonic phone -> frame path under a score matrix.

A path assigns every frame ``t`` one phone ``p(t)`` with ``p(0) = 0``, ``p(T-1) = P-1`` and
``p(t+1) - p(t)`` in ``{0, 1}``: phones are visited in order, each for at least one frame, and
together they cover every frame. The search maximises the summed score
``sum_t LL[p(t), t]`` by dynamic programming, vectorised over the batch and the phones (one
loop step per frame), then backtracks the path.

Paths are handed around as ``frame_phones`` (frame -> phone index) or ``durations`` (frames per
phone); :func:`durations_to_frame_phones` and :func:`frame_phones_to_durations` convert.
"""
from __future__ import annotations

from typing import Sequence

import torch

from speechkit.errors import DataError

NEG_INF = float("-inf")


@torch.no_grad()
def monotonic_alignment_search(
    log_likelihood: torch.Tensor, phone_lens: torch.Tensor, frame_lens: torch.Tensor
) -> torch.Tensor:
    """The best monotonic path of each item of a padded batch.

    Args:
        log_likelihood: FloatTensor[B, P, T], score of phone ``p`` at frame ``t`` (padding ignored).
        phone_lens: LongTensor[B], phones per item (>= 1).
        frame_lens: LongTensor[B], frames per item (``>= phone_lens``: each phone needs a frame).

    Returns:
        frame_phones: LongTensor[B, T], phone index of every frame (-1 past ``frame_lens``).

    Raises:
        DataError: an item with no phones or fewer frames than phones.
    """
    if log_likelihood.dim() != 3:
        raise DataError(f"MAS needs log_likelihood [B, P, T], got shape {tuple(log_likelihood.shape)}.")
    batch, num_phones, num_frames = log_likelihood.shape
    phone_lens, frame_lens = phone_lens.to(torch.long).cpu(), frame_lens.to(torch.long).cpu()
    bad = (phone_lens < 1) | (frame_lens < phone_lens) | (phone_lens > num_phones) | (frame_lens > num_frames)
    if bool(bad.any()):
        row = int(bad.nonzero()[0])
        raise DataError(
            f"MAS: item {row} has {int(phone_lens[row])} phones and {int(frame_lens[row])} frames; every phone "
            "needs at least one frame and lengths must fit the padded matrix."
        )
    scores = log_likelihood.detach().float().cpu()
    phone_index = torch.arange(num_phones)
    phone_valid = phone_index.unsqueeze(0) < phone_lens.unsqueeze(1)  # [B, P]
    scores = scores.masked_fill(~phone_valid.unsqueeze(2), NEG_INF)
    # best[b, p]: best score of a path over frames 0..t ending in phone p at frame t
    best = torch.full((batch, num_phones), NEG_INF)
    best[:, 0] = scores[:, 0, 0]
    came_from_previous = torch.zeros(batch, num_phones, num_frames, dtype=torch.bool)  # step p-1 -> p at t
    for t in range(1, num_frames):
        shifted = torch.cat([torch.full((batch, 1), NEG_INF), best[:, :-1]], dim=1)  # best[p-1]
        advance = shifted > best
        came_from_previous[:, :, t] = advance
        best = torch.where(advance, shifted, best) + scores[:, :, t]
    frame_phones = torch.full((batch, num_frames), -1, dtype=torch.long)
    phone = phone_lens - 1  # [B]: phone at frame t while walking back
    rows = torch.arange(batch)
    for t in range(num_frames - 1, -1, -1):
        active = t < frame_lens
        frame_phones[:, t] = torch.where(active, phone, frame_phones[:, t])
        if t == 0:
            break
        stepped = came_from_previous[rows, phone.clamp(min=0), t]
        move = active & (phone > 0) & ((phone == t) | stepped)
        phone = phone - move.long()
    return frame_phones.to(log_likelihood.device)


def frame_phones_to_durations(frame_phones: torch.Tensor, num_phones: int) -> torch.Tensor:
    """frame_phones: LongTensor[T] (-1 = padding, ignored) -> durations LongTensor[num_phones]."""
    valid = frame_phones[frame_phones >= 0]
    return torch.bincount(valid, minlength=num_phones)[:num_phones]


def durations_to_frame_phones(durations: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """durations: LongTensor[P] (>= 0) -> frame_phones LongTensor[sum(durations)] (phone of each frame)."""
    durations = torch.as_tensor(durations, dtype=torch.long)
    if durations.dim() != 1 or bool((durations < 0).any()):
        raise DataError(f"durations must be a 1-D tensor of non-negative counts, got {durations.tolist()}.")
    return torch.repeat_interleave(torch.arange(durations.numel()), durations)


def check_durations(utt: str, durations: Sequence[int], num_phones: int, num_frames: int) -> None:
    """DataError unless ``durations`` has one count >= 1 per phone and sums to ``num_frames``."""
    if len(durations) != num_phones or sum(durations) != num_frames or min(durations, default=0) < 1:
        raise DataError(
            f"Durations of {utt!r} do not fit: {len(durations)} counts summing to {sum(durations)} "
            f"(min {min(durations, default=0)}) for {num_phones} phones and {num_frames} frames. "
            "Re-run the alignment (python -m speechkit.bin.align) after changing phones or codes."
        )
