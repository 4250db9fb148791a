"""Decoding the ST frontend's attention decoder: batched greedy search and beam search, both
incremental (:meth:`PhoneDecoder.step` with a KV cache)."""
from __future__ import annotations

import torch

from speechkit.plugins.st_frontend.decoder import PhoneDecoder


def greedy_search(
    decoder: PhoneDecoder,
    memory: torch.Tensor,
    memory_valid: torch.Tensor,
    target_langs: torch.Tensor,
    max_lengths: torch.Tensor,
) -> list[list[int]]:
    """Most likely phone at every step, for a batch; each row stops at end-of-sentence or its bound.

    Args:
        memory: FloatTensor[B, S, D] encoder output; memory_valid: BoolTensor[B, S].
        target_langs: LongTensor[B]; max_lengths: LongTensor[B], most phones per row.

    Returns:
        B lists of phone ids (end-of-sentence not included). A row's result does not depend on
        the other rows of the batch.
    """
    batch = memory.shape[0]
    results: list[list[int]] = [[] for _ in range(batch)]
    longest = int(max_lengths.max()) if batch else 0
    if longest <= 0:
        return results
    state = decoder.start_state(memory, memory_valid, target_langs, longest)
    active = (max_lengths > 0).tolist()
    previous: torch.Tensor | None = None
    for _ in range(longest):
        best = decoder.step(state, previous).argmax(dim=-1)  # [B]
        for row, token in enumerate(best.tolist()):
            if not active[row]:
                continue
            if token == decoder.eos_id:
                active[row] = False
                continue
            results[row].append(token)
            active[row] = len(results[row]) < int(max_lengths[row])
        if not any(active):
            break
        # finished rows keep running (their outputs are ignored); EOS is no input class: feed <pad>
        previous = best.masked_fill(best == decoder.eos_id, 0)
    return results


def beam_search(
    decoder: PhoneDecoder,
    memory: torch.Tensor,
    memory_valid: torch.Tensor,
    target_lang: int,
    *,
    beam_size: int,
    max_length: int,
    length_penalty: float = 1.0,
) -> list[int]:
    """Beam search for one utterance, hypotheses ranked by ``log P / length ** length_penalty``
    (length counts the end-of-sentence token). Stops when the best ended hypothesis ranks above
    every open one as it stands (open ones scored as if they ended next), or at ``max_length``.

    Args:
        memory: FloatTensor[1, S, D]; memory_valid: BoolTensor[1, S]; target_lang: language ID.
        beam_size: hypotheses kept per step (the batched greedy search is :func:`greedy_search`).
        max_length: most phones; hypotheses still open then are ranked with the finished ones.

    Returns:
        The best hypothesis' phone ids (end-of-sentence not included).
    """
    if max_length <= 0:
        return []
    device = memory.device
    langs = torch.full((1,), target_lang, dtype=torch.long, device=device)
    state = decoder.start_state(memory, memory_valid, langs, max_length)
    alive: list[list[int]] = [[]]
    alive_scores = torch.zeros(1, device=device)  # [K]
    finished: list[tuple[float, list[int]]] = []
    previous: torch.Tensor | None = None
    for step in range(max_length):
        totals = alive_scores.unsqueeze(1) + decoder.step(state, previous).log_softmax(dim=-1)  # [K, V]
        vocab = totals.shape[1]
        scores, flat = totals.flatten().topk(min(2 * beam_size, totals.numel()))
        keep_rows: list[int] = []
        keep_tokens: list[int] = []
        keep_scores: list[float] = []
        for score, index in zip(scores.tolist(), flat.tolist()):
            row, token = divmod(index, vocab)
            if token == decoder.eos_id:
                finished.append((score / float(step + 1) ** length_penalty, alive[row]))
            elif len(keep_rows) < beam_size:
                keep_rows.append(row)
                keep_tokens.append(token)
                keep_scores.append(score)
        if not keep_rows:
            break
        if finished:
            best_finished = max(score for score, _ in finished)
            best_open = max(keep_scores) / float(step + 2) ** length_penalty
            if best_finished >= best_open:
                break
        state.select(torch.tensor(keep_rows, device=device))
        alive = [alive[row] + [token] for row, token in zip(keep_rows, keep_tokens)]
        alive_scores = torch.tensor(keep_scores, device=device)
        previous = torch.tensor(keep_tokens, device=device)
    else:
        for score, hypothesis in zip(alive_scores.tolist(), alive):
            finished.append((score / float(len(hypothesis)) ** length_penalty, hypothesis))
    return max(finished, key=lambda item: item[0])[1]
