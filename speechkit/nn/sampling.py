"""Choosing the next token from logits: greedy, temperature, top-k and nucleus (top-p)."""
from __future__ import annotations

import torch

from speechkit.errors import ConfigError


def check_sampling(temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                   what: str = "sampling") -> None:
    """Raise :class:`ConfigError` for settings :func:`sample_tokens` cannot mean (None = not set):
    a negative temperature (0 is greedy) or top_k (0 keeps all, 1 is greedy), a top_p outside (0, 1]."""
    if temperature is not None and not temperature >= 0:
        raise ConfigError(f"{what}: temperature must be >= 0 (0 = greedy), got {temperature}.")
    if top_k is not None and top_k < 0:
        raise ConfigError(f"{what}: top_k must be >= 0 (0 = all codes, 1 = greedy), got {top_k}.")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ConfigError(f"{what}: top_p must lie in (0, 1] (1 = all codes), got {top_p}.")


def sample_tokens(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """logits: FloatTensor[N, V] -> LongTensor[N].

    Greedy (argmax) when ``temperature <= 0`` or ``top_k == 1``. Otherwise logits are divided
    by ``temperature``, restricted to the ``top_k`` best (0 = all) and to the smallest set whose
    probability reaches ``top_p`` (1.0 = all; the best token is always kept), then sampled with
    ``generator`` (seed it for reproducible output).
    """
    if temperature <= 0 or top_k == 1:
        return logits.argmax(dim=-1)
    check_sampling(top_p=top_p)
    logits = logits.float() / temperature
    if 0 < top_k < logits.shape[-1]:
        kth_best = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        drop_sorted = cumulative - torch.softmax(sorted_logits, dim=-1) >= top_p  # mass before it already enough
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probabilities = torch.softmax(logits, dim=-1)
    # torch.multinomial's draw of one sample (the probabilities over exponential noise, argmax: the
    # same tokens from the same generator state, tested) without its checks of the input: half the
    # time, once per decoding step
    noise = torch.empty_like(probabilities).exponential_(generator=generator)
    return probabilities.div_(noise).argmax(dim=-1)
