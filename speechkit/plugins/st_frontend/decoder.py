"""Attention decoder of the ST frontend: a causal pre-LN Transformer with cross-attention to the
encoder output, emitting target-language phones after a target-language start token.

Training runs :meth:`PhoneDecoder.forward` over whole sequences; decoding runs
:meth:`PhoneDecoder.step` one position at a time with a self-attention KV cache and the encoder
keys/values projected once (:class:`DecoderState`), which gives the same logits.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from speechkit.nn import KVCache, MultiHeadAttention, SinusoidalPositionalEncoding


@dataclasses.dataclass
class DecoderState:
    """What :meth:`PhoneDecoder.step` carries between positions, for K hypotheses.

    cache: self-attention keys/values of the positions decoded so far; memory_kv: per layer the
    encoder keys and values FloatTensor[K, H, S, Dh]; memory_mask: BoolTensor[K, 1, 1, S];
    target_langs: LongTensor[K]; length: positions decoded so far (0 = next is the start token).
    """

    cache: KVCache
    memory_kv: list[tuple[torch.Tensor, torch.Tensor]]
    memory_mask: torch.Tensor
    target_langs: torch.Tensor
    length: int = 0

    def select(self, rows: torch.Tensor) -> None:
        """Keep (and reorder, repeat) hypotheses: rows LongTensor[K'] indexes the current K."""
        self.cache.keys = self.cache.keys[:, rows]
        self.cache.values = self.cache.values[:, rows]
        self.cache.key_valid = self.cache.key_valid[rows]
        self.memory_kv = [(key[rows], value[rows]) for key, value in self.memory_kv]
        self.memory_mask = self.memory_mask[rows]
        self.target_langs = self.target_langs[rows]


class CrossAttention(nn.Module):
    """Queries from the decoder, keys/values from the encoder output (``memory``).

    Args:
        d_model: width; num_heads: heads (``d_model % num_heads == 0``); dropout: attention dropout.
    """

    def __init__(self, d_model: int, num_heads: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} must be divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, d_model // num_heads
        self.query = nn.Linear(d_model, d_model)
        self.key_value = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def project_memory(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """memory: FloatTensor[B, S, D] -> keys, values FloatTensor[B, H, S, Dh]."""
        batch, length, _ = memory.shape
        key, value = self.key_value(memory).view(batch, length, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return key, value

    def forward(
        self, x: torch.Tensor, memory_kv: tuple[torch.Tensor, torch.Tensor], memory_mask: torch.Tensor
    ) -> torch.Tensor:
        """x: FloatTensor[B, N, D], memory_kv: :meth:`project_memory` of the encoder output,
        memory_mask: BoolTensor[B, 1, 1, S] (True = attend) -> FloatTensor[B, N, D]."""
        batch, length, width = x.shape
        query = self.query(x).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)  # [B, H, N, Dh]
        key, value = memory_kv
        attended = F.scaled_dot_product_attention(
            query, key, value, attn_mask=memory_mask, dropout_p=self.dropout if self.training else 0.0
        )  # [B, H, N, Dh]
        return self.out(attended.transpose(1, 2).reshape(batch, length, width))


class DecoderLayer(nn.Module):
    """Pre-LN: ``x + self_attn(norm(x))``, ``x + cross_attn(norm(x), memory)``, ``x + ffn(norm(x))``."""

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.self_norm = nn.LayerNorm(d_model)
        self.self_attention = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.cross_norm = nn.LayerNorm(d_model)
        self.cross_attention = CrossAttention(d_model, num_heads, dropout=dropout)
        self.ffn_norm = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, d_model))
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        causal_mask: torch.Tensor | None,
        memory_kv: tuple[torch.Tensor, torch.Tensor],
        memory_mask: torch.Tensor,
        *,
        cache: KVCache | None = None,
        layer: int = 0,
        start: int = 0,
    ) -> torch.Tensor:
        """x: FloatTensor[B, N, D], causal_mask: BoolTensor[N, N] (None when one new position
        attends to a cache of its past) -> FloatTensor[B, N, D]."""
        x = x + self.dropout(self.self_attention(self.self_norm(x), causal_mask, cache=cache, layer=layer, start=start))
        x = x + self.dropout(self.cross_attention(self.cross_norm(x), memory_kv, memory_mask))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class PhoneDecoder(nn.Module):
    """Target phones, conditioned on a target-language start token and the encoder output.

    Output classes: the ``num_phones`` phone ids plus end-of-sentence ``eos_id = num_phones``.
    Input position 0 is the language embedding of the target language (``<2en>``, ``<2zh>``);
    positions 1..N are the phones decoded so far. Right padding of ``phones`` never changes the
    logits of earlier positions (the self-attention is causal).
    """

    def __init__(
        self, *, num_phones: int, num_languages: int, d_model: int, num_heads: int, num_layers: int, ffn_dim: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.eos_id = num_phones
        self.num_heads, self.head_dim = num_heads, d_model // num_heads
        self.phone_embedding = nn.Embedding(num_phones, d_model, padding_idx=0)
        self.language_embedding = nn.Embedding(num_languages, d_model)
        self.positions = SinusoidalPositionalEncoding(d_model, dropout=dropout)
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, num_heads, ffn_dim, dropout=dropout) for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_phones + 1)

    def forward(
        self, phones: torch.Tensor, target_langs: torch.Tensor, memory: torch.Tensor, memory_valid: torch.Tensor
    ) -> torch.Tensor:
        """phones: LongTensor[B, N] (right-padded with 0), target_langs: LongTensor[B], memory:
        FloatTensor[B, S, D], memory_valid: BoolTensor[B, S] -> logits FloatTensor[B, N + 1, V]
        where row ``n`` predicts phone ``n`` (row N predicts what follows the last phone)."""
        start = self.language_embedding(target_langs).unsqueeze(1)  # [B, 1, D]
        x = torch.cat([start, self.phone_embedding(phones)], dim=1)  # [B, N+1, D]
        length = x.shape[1]
        x = self.positions(x, torch.arange(length, device=x.device))
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        memory_mask = memory_valid[:, None, None, :]  # [B, 1, 1, S]
        for layer in self.layers:
            x = layer(x, causal, layer.cross_attention.project_memory(memory), memory_mask)
        return self.head(self.final_norm(x))

    def start_state(
        self, memory: torch.Tensor, memory_valid: torch.Tensor, target_langs: torch.Tensor, max_phones: int
    ) -> DecoderState:
        """A :class:`DecoderState` for decoding up to ``max_phones`` phones after the start token.

        memory: FloatTensor[B, S, D], memory_valid: BoolTensor[B, S], target_langs: LongTensor[B].
        """
        cache = KVCache(num_layers=len(self.layers), batch_size=memory.shape[0], num_heads=self.num_heads,
                        head_dim=self.head_dim, max_length=max_phones + 1, dtype=memory.dtype, device=memory.device)
        memory_kv = [layer.cross_attention.project_memory(memory) for layer in self.layers]
        return DecoderState(cache, memory_kv, memory_valid[:, None, None, :], target_langs)

    def step(self, state: DecoderState, phones: torch.Tensor | None) -> torch.Tensor:
        """Feed the next position and return its logits FloatTensor[K, V] (what follows it).

        phones: LongTensor[K], the phones chosen at the previous step; None for the first step,
        which feeds the target-language start token.
        """
        if phones is None:
            x = self.language_embedding(state.target_langs)  # [K, D]
        else:
            x = self.phone_embedding(phones)
        position = torch.full((1,), state.length, dtype=torch.long, device=x.device)
        x = self.positions(x.unsqueeze(1), position)  # [K, 1, D]
        for index, layer in enumerate(self.layers):
            x = layer(x, None, state.memory_kv[index], state.memory_mask,
                      cache=state.cache, layer=index, start=state.length)
        state.length += 1
        state.cache.length = state.length
        return self.head(self.final_norm(x[:, 0]))
