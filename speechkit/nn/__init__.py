"""Reusable neural-network blocks: positional encodings, masks, attention with a KV cache,
pre-LN Transformer layers (optionally level-conditioned), and token sampling."""
from speechkit.nn.attention import KVCache, MultiHeadAttention
from speechkit.nn.masks import (
    key_padding_mask,
    lengths_to_mask,
    phones_then_frames_mask,
    prefix_causal_mask,
    prompt_segment_layout,
    zero_phone_padding,
)
from speechkit.nn.positional import SinusoidalPositionalEncoding
from speechkit.nn.sampling import sample_tokens
from speechkit.nn.transformer import LevelLayerNorm, TransformerLayer, TransformerStack

__all__ = [
    "KVCache",
    "LevelLayerNorm",
    "MultiHeadAttention",
    "SinusoidalPositionalEncoding",
    "TransformerLayer",
    "TransformerStack",
    "key_padding_mask",
    "lengths_to_mask",
    "phones_then_frames_mask",
    "prefix_causal_mask",
    "prompt_segment_layout",
    "sample_tokens",
    "zero_phone_padding",
]
