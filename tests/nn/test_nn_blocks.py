"""speechkit.nn: masks, positions, level norms, KV-cached attention and sampling."""
from __future__ import annotations

import pytest
import torch

from speechkit.errors import ConfigError
from speechkit.nn import (
    LevelLayerNorm,
    SinusoidalPositionalEncoding,
    TransformerStack,
    key_padding_mask,
    lengths_to_mask,
    phones_then_frames_mask,
    prefix_causal_mask,
    prompt_segment_layout,
    sample_tokens,
    zero_phone_padding,
)
from speechkit.nn.sampling import check_sampling


def test_prefix_causal_mask_rules() -> None:
    # one row: 2 phones, 1 pad, 3 acoustic positions
    valid = torch.tensor([[True, True, False, True, True, True]])
    is_prefix = torch.tensor([[True, True, True, False, False, False]])
    mask = prefix_causal_mask(valid, is_prefix)[0, 0]
    assert mask[0, :2].all() and not mask[0, 3:].any(), "phones see all phones and no acoustic position"
    assert not mask[3, 2] and not mask[0, 2], "padding is never a key (except for itself)"
    assert mask[4, :2].all() and mask[4, 3] and mask[4, 4] and not mask[4, 5], "acoustic: all phones, causal acoustic"
    assert mask[2, 2], "a padded query sees itself, so no row is empty"
    full = prefix_causal_mask(valid, is_prefix, causal=False)[0, 0]
    assert full[3, 5]
    assert key_padding_mask(valid).shape == (1, 1, 1, 6)
    assert lengths_to_mask(torch.tensor([1, 3])).tolist() == [[True, False, False], [True, True, True]]


def test_positional_encoding_uses_given_positions() -> None:
    encoding = SinusoidalPositionalEncoding(8)
    x = torch.zeros(2, 3, 8)
    shifted = encoding(x, torch.tensor([[0, 1, 2], [5, 6, 7]]))
    assert torch.allclose(shifted[0], encoding(x[:1], torch.arange(3))[0])
    assert not torch.allclose(shifted[0], shifted[1])
    assert torch.allclose(encoding.encoding(torch.tensor([0]))[0, :4], torch.zeros(4)), "sin(0) = 0"


def test_level_layer_norm_is_a_norm_per_level() -> None:
    norm = LevelLayerNorm(4, num_conditions=3)
    with torch.no_grad():
        norm.gain.weight[1] = 2.0
        norm.bias.weight[2] = 1.0
    x = torch.randn(3, 5, 4)
    out = norm(x, torch.tensor([0, 1, 2]))
    reference = torch.nn.functional.layer_norm(x, (4,))
    assert torch.allclose(out[0], reference[0], atol=1e-6)
    assert torch.allclose(out[1], 2 * reference[1], atol=1e-6)
    assert torch.allclose(out[2], reference[2] + 1, atol=1e-6)


def test_cached_decoding_equals_full_recomputation() -> None:
    torch.manual_seed(0)
    stack = TransformerStack(num_layers=2, d_model=16, num_heads=2, ffn_dim=32).eval()
    x = torch.randn(2, 7, 16)
    valid = torch.tensor([[False, True, True, True, True, True, True], [True] * 7])  # row 0 left-padded
    is_prefix = torch.zeros_like(valid)
    is_prefix[:, :3] = True
    full = stack(x, prefix_causal_mask(valid, is_prefix))
    cache = stack.new_cache(2, 7, dtype=x.dtype, device=x.device)
    cache.mark_valid(valid, 0)
    first = stack(x[:, :4], prefix_causal_mask(valid[:, :4], is_prefix[:, :4]), cache=cache, start=0)
    assert torch.allclose(first[:, 1:], full[:, 1:4], atol=1e-5)
    storage = cache.keys.data_ptr()
    for position in range(4, 7):
        step = stack(x[:, position : position + 1], cache.step_mask(position + 1), cache=cache, start=position)
        assert torch.allclose(step[:, 0], full[:, position], atol=1e-5)
    assert cache.keys.data_ptr() == storage and cache.length == 7, "the cache is written in place"


def test_sampling_modes() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0]]).repeat(200, 1)
    assert sample_tokens(logits, temperature=0).eq(1).all()
    assert sample_tokens(logits, top_k=1).eq(1).all()
    generator = torch.Generator().manual_seed(0)
    top_two = sample_tokens(logits, top_k=2, generator=generator)
    assert set(top_two.tolist()) == {1, 3}
    nucleus = sample_tokens(logits, top_p=0.5, generator=generator)
    assert set(nucleus.tolist()) == {1}, "the best token alone holds > 50% of the mass"
    again = sample_tokens(logits, generator=torch.Generator().manual_seed(3))
    assert torch.equal(again, sample_tokens(logits, generator=torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("setting, message", [({"temperature": -1.0}, "temperature must be >= 0"),
                                              ({"top_k": -2}, "top_k must be >= 0"),
                                              ({"top_p": 0.0}, r"top_p must lie in \(0, 1\]"),
                                              ({"top_p": 2.0}, r"top_p must lie in \(0, 1\]")])
def test_sampling_settings_out_of_range_are_config_errors(setting: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_sampling(**setting, what="test")
    check_sampling(temperature=0.0, top_k=0, top_p=1.0)  # greedy, all codes, all the mass: fine
    check_sampling()  # nothing set


def test_sampling_draws_what_torch_multinomial_draws(device: torch.device) -> None:
    """sample_tokens draws like ``torch.multinomial(softmax(logits / temperature), 1)``: the same
    tokens from the same generator state, which it leaves where multinomial would."""
    for seed, (rows, vocabulary) in enumerate([(1, 257), (8, 1025), (3, 17)] * 10):
        logits = torch.randn(rows, vocabulary, generator=torch.Generator().manual_seed(100 + seed)).to(device) * 3
        ours, theirs = torch.Generator(device).manual_seed(seed), torch.Generator(device).manual_seed(seed)
        got = sample_tokens(logits, temperature=0.7, generator=ours)
        expected = torch.multinomial(torch.softmax(logits / 0.7, dim=-1), 1, generator=theirs).squeeze(-1)
        assert torch.equal(got, expected)
        assert torch.equal(ours.get_state(), theirs.get_state())
    banned = torch.zeros(4, 6, device=device).index_fill_(1, torch.tensor([0, 2], device=device), float("-inf"))
    drawn = sample_tokens(banned, generator=torch.Generator(device).manual_seed(0))
    assert not bool(torch.isin(drawn, torch.tensor([0, 2], device=device)).any())


def test_prompt_segment_layout_left_pads_segments_to_end_together() -> None:
    positions, valid = prompt_segment_layout(torch.tensor([2, 0]), 4)
    assert positions.tolist() == [[0, 0, 1, 2], [0, 0, 0, 0]]
    assert valid.tolist() == [[False, True, True, True], [False, False, False, True]]


def test_phones_then_frames_mask_and_zero_phone_padding() -> None:
    phones, langs, phone_valid = zero_phone_padding(torch.tensor([[5, 7, 9]]), torch.tensor([2]), torch.tensor([[1, 1, 2]]))
    assert phones.tolist() == [[5, 7, 0]] and langs.tolist() == [[1, 1, 0]]
    valid, mask = phones_then_frames_mask(phone_valid, torch.tensor([[True, True]]))
    assert valid.tolist() == [[True, True, False, True, True]]
    is_prefix = torch.tensor([[True, True, True, False, False]])
    assert torch.equal(mask, prefix_causal_mask(valid, is_prefix))
