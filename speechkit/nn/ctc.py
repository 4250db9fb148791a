"""CTC utilities: greedy decoding, Viterbi forced alignment, and phone durations from an alignment.

Conventions: ``log_probs`` are per-frame log-posteriors over ``C`` classes, one of which is the
blank (id ``blank``, 0 by default, which is also the phone table's ``<pad>`` id, so a phone id
never collides with it). Targets never contain the blank.
"""
from __future__ import annotations

import torch

from speechkit.errors import DataError

#: Frame label of :func:`ctc_forced_align` for frames aligned to the blank.
BLANK_FRAME = -1


def ctc_greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Best path per frame, repeats collapsed, blanks dropped.

    Args:
        log_probs: FloatTensor[B, T, C] (or any scores whose argmax is meaningful).
        lengths: LongTensor[B], valid frames per row.
        blank: blank class id.

    Returns:
        B lists of class ids.
    """
    best = log_probs.argmax(dim=-1).cpu()  # [B, T]
    results: list[list[int]] = []
    for row, length in enumerate(lengths.tolist()):
        path = best[row, :length]
        if path.numel() == 0:
            results.append([])
            continue
        keep = torch.ones_like(path, dtype=torch.bool)
        keep[1:] = path[1:] != path[:-1]  # first frame of every run
        tokens = path[keep]
        results.append(tokens[tokens != blank].tolist())
    return results


def min_ctc_frames(targets: torch.Tensor) -> int:
    """Fewest frames that can emit ``targets`` (LongTensor[N]): N plus one blank per adjacent repeat."""
    repeats = int((targets[1:] == targets[:-1]).sum()) if targets.numel() > 1 else 0
    return int(targets.numel()) + repeats


def ctc_forced_align(log_probs: torch.Tensor, targets: torch.Tensor, blank: int = 0) -> torch.Tensor:
    """Viterbi alignment of ``targets`` to the frames of ``log_probs`` under the CTC topology.

    Args:
        log_probs: FloatTensor[T, C] log-posteriors of one utterance.
        targets: LongTensor[N] class ids (no blanks), N >= 1.
        blank: blank class id.

    Returns:
        LongTensor[T]: for every frame, the index ``n`` in ``[0, N)`` of the target it emits, or
        :data:`BLANK_FRAME`. Every target emits at least one frame, in order.

    Raises:
        DataError: empty targets, a blank among them, a class id out of range, or fewer frames
            than the targets need (:func:`min_ctc_frames`).
    """
    if log_probs.dim() != 2 or targets.dim() != 1:
        raise DataError(f"ctc_forced_align takes log_probs [T, C] and targets [N], got "
                        f"{tuple(log_probs.shape)} and {tuple(targets.shape)}.")
    num_frames, num_classes = log_probs.shape
    targets = targets.to(torch.long).cpu()
    if targets.numel() == 0:
        raise DataError("ctc_forced_align needs at least one target phone.")
    if bool((targets == blank).any()) or int(targets.min()) < 0 or int(targets.max()) >= num_classes:
        raise DataError(f"targets must be class ids in [0, {num_classes}) other than the blank {blank}; "
                        f"got {targets.tolist()}.")
    needed = min_ctc_frames(targets)
    if num_frames < needed:
        raise DataError(f"Cannot align {targets.numel()} phones ({needed} frames needed with the blanks "
                        f"between repeats) to {num_frames} frames; the utterance is too short for its "
                        "transcript, or the model's frame rate is too low (use less subsampling).")
    log_probs = log_probs.detach().float().cpu()
    states = torch.full((2 * targets.numel() + 1,), blank, dtype=torch.long)  # blank, t1, blank, ..., tN, blank
    states[1::2] = targets
    num_states = states.numel()
    # a skip (s-2 -> s) is allowed onto a phone that differs from the phone two states back
    can_skip = torch.zeros(num_states, dtype=torch.bool)
    can_skip[3::2] = targets[1:] != targets[:-1]
    minus_inf = torch.tensor(float("-inf"))
    emissions = log_probs[:, states]  # [T, S]
    score = torch.full((num_states,), float("-inf"))
    score[:2] = emissions[0, :2]
    back = torch.zeros(num_frames, num_states, dtype=torch.long)  # how many states each step moved
    for frame in range(1, num_frames):
        from_previous = torch.cat([minus_inf.view(1), score[:-1]])
        from_skip = torch.where(can_skip, torch.cat([minus_inf.repeat(2), score[:-2]]), minus_inf)
        candidates = torch.stack([score, from_previous, from_skip])  # [3, S]
        best, back[frame] = candidates.max(dim=0)
        score = best + emissions[frame]
    state = num_states - 1 if score[-1] >= score[-2] else num_states - 2
    path = torch.empty(num_frames, dtype=torch.long)
    for frame in range(num_frames - 1, -1, -1):
        path[frame] = state
        state -= int(back[frame, state])
    return torch.where(path % 2 == 1, (path - 1) // 2, torch.full_like(path, BLANK_FRAME))


def alignment_durations(frame_targets: torch.Tensor, num_targets: int) -> torch.Tensor:
    """Frames per target from a CTC alignment, blank frames shared out so durations sum to T.

    Frames emitting target ``n`` belong to it. A run of blanks between targets ``n`` and ``n+1``
    is split at its midpoint (the earlier half, rounded down, to ``n``); leading blanks go to the
    first target and trailing blanks to the last.

    Args:
        frame_targets: LongTensor[T] from :func:`ctc_forced_align`.
        num_targets: N.

    Returns:
        LongTensor[N], every entry >= 1 when every target emits a frame; the sum is T.
    """
    labels = frame_targets.tolist()
    durations = [0] * num_targets
    previous = -1  # last target seen
    pending_blanks = 0
    for label in labels:
        if label == BLANK_FRAME:
            pending_blanks += 1
            continue
        if not 0 <= label < num_targets:
            raise DataError(f"alignment label {label} is out of range for {num_targets} targets.")
        if pending_blanks:
            if previous < 0:
                durations[label] += pending_blanks
            else:
                to_previous = pending_blanks // 2
                durations[previous] += to_previous
                durations[label] += pending_blanks - to_previous
            pending_blanks = 0
        durations[label] += 1
        previous = label
    if pending_blanks:
        if previous < 0:
            raise DataError("the alignment has no frame emitting a target; nothing to assign durations to.")
        durations[previous] += pending_blanks
    return torch.tensor(durations, dtype=torch.long)


def rescale_durations(durations: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Durations in one frame rate -> durations summing to ``num_frames`` (another frame rate).

    Boundaries (cumulative sums) are scaled and rounded, so rounding errors never accumulate.
    Scaling down to fewer frames than targets can give zero-length targets.

    Args:
        durations: LongTensor[N], non-negative with a positive sum.
        num_frames: the total wanted.

    Returns:
        LongTensor[N] summing to ``num_frames``.
    """
    total = int(durations.sum())
    if total <= 0 or bool((durations < 0).any()):
        raise DataError(f"durations must be non-negative with a positive sum, got {durations.tolist()}.")
    boundaries = torch.cumsum(durations.double(), 0) * (num_frames / total)
    boundaries = torch.round(boundaries).long()
    boundaries[-1] = num_frames
    return torch.diff(boundaries, prepend=boundaries.new_zeros(1))
