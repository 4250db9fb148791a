"""Attention masks (boolean, ``True`` = may attend), in the layout of
:func:`torch.nn.functional.scaled_dot_product_attention`, and the padding/layout helpers of
``[phones ; acoustic segment]`` sequences that the codec LMs share."""
from __future__ import annotations

import torch


def lengths_to_mask(lengths: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """lengths: LongTensor[B] -> BoolTensor[B, max_length], True on the first ``lengths[b]`` items."""
    max_length = int(lengths.max()) if max_length is None else max_length
    return torch.arange(max_length, device=lengths.device) < lengths.unsqueeze(-1)


def prefix_causal_mask(valid: torch.Tensor, is_prefix: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """Mask for a prefix-LM over one padded sequence per row.

    A query may attend to a valid key that is a prefix item (phones: bidirectional among
    themselves); a non-prefix query (acoustic) may also attend to valid non-prefix keys at
    positions <= its own (causal) or to all of them (``causal=False``). Prefix queries never see
    non-prefix keys. Every position also sees itself, so padded rows are never empty (their
    outputs are ignored).

    Args:
        valid: BoolTensor[B, S], False on padding.
        is_prefix: BoolTensor[B, S], True on prefix (phone) positions.
        causal: whether non-prefix keys are restricted to positions <= the query.

    Returns:
        BoolTensor[B, 1, S, S] (query x key), broadcast over heads.
    """
    size = valid.shape[1]
    key_prefix = (valid & is_prefix).unsqueeze(1)  # [B, 1, S]: prefix keys, visible to all
    key_other = (valid & ~is_prefix).unsqueeze(1)  # [B, 1, S]
    query_other = (~is_prefix).unsqueeze(2)  # [B, S, 1]
    allowed_other = query_other & key_other  # [B, S, S]
    if causal:
        allowed_other = allowed_other & torch.ones(size, size, dtype=torch.bool, device=valid.device).tril()
    eye = torch.eye(size, dtype=torch.bool, device=valid.device)
    return (key_prefix | allowed_other | eye).unsqueeze(1)


def key_padding_mask(valid: torch.Tensor) -> torch.Tensor:
    """valid: BoolTensor[B, S] -> BoolTensor[B, 1, 1, S]: full (non-causal) attention to valid keys."""
    return valid[:, None, None, :]


def zero_phone_padding(
    phones: torch.Tensor, phone_lens: torch.Tensor, phone_langs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """phones, phone_langs LongTensor[B, P], phone_lens LongTensor[B] -> copies of phones and
    phone_langs with padded positions set to 0 (safe to embed), and BoolTensor[B, P] validity."""
    phone_valid = lengths_to_mask(phone_lens, phones.shape[1])
    return phones.masked_fill(~phone_valid, 0), phone_langs.masked_fill(~phone_valid, 0), phone_valid


def phones_then_frames_mask(phone_valid: torch.Tensor, acoustic_valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The prefix-LM mask of ``[phones ; acoustic segment]`` (phones bidirectional, frames causal).

    phone_valid: BoolTensor[B, P], acoustic_valid: BoolTensor[B, A] -> validity BoolTensor[B, P+A]
    and mask BoolTensor[B, 1, P+A, P+A] (see :func:`prefix_causal_mask`).
    """
    valid = torch.cat([phone_valid, acoustic_valid], dim=1)
    is_prefix = torch.zeros_like(valid)
    is_prefix[:, : phone_valid.shape[1]] = True
    return valid, prefix_causal_mask(valid, is_prefix)


def prompt_segment_layout(counts: torch.Tensor, segment: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Layout of acoustic segments ``[BOS, prompt items]`` left-padded to end together.

    counts: LongTensor[B], prompt items (frames or groups) per row; segment: the padded length
    (at least ``max(counts) + 1``). Returns positions LongTensor[B, segment] (0 at each BOS,
    clamped to 0 on the padding before it) and validity BoolTensor[B, segment].
    """
    index = torch.arange(segment, device=counts.device)
    first = segment - 1 - counts  # [B]: where each BOS sits
    positions = (index.unsqueeze(0) - first.unsqueeze(1)).clamp(min=0)
    return positions, index.unsqueeze(0) >= first.unsqueeze(1)
