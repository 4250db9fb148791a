"""Huge-page tensors: zero-filled, aligned, kept alive by their views, plain where turned off."""
from __future__ import annotations

import gc
import mmap

import pytest
import torch

from speechkit.nn.attention import KVCache
from speechkit.nn.fused_decode import pack_stream
from speechkit.nn.huge_pages import HUGE_PAGE_BYTES, huge_page_zeros, huge_pages_enabled

needs_madvise = pytest.mark.skipif(not hasattr(mmap, "MADV_HUGEPAGE"), reason="no madvise(MADV_HUGEPAGE) here")


@needs_madvise
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int8])
def test_large_tensors_are_zero_filled_and_aligned_to_a_huge_page(dtype: torch.dtype) -> None:
    tensor = huge_page_zeros((3, 1024, 1024), dtype)
    assert tensor.shape == (3, 1024, 1024) and tensor.dtype == dtype and tensor.is_contiguous()
    assert tensor.data_ptr() % HUGE_PAGE_BYTES == 0  # our own mapping, not torch's allocator
    assert not tensor.any()
    tensor[2, 1023, 1023] = 5
    assert tensor.sum().item() == 5


@needs_madvise
def test_views_keep_the_mapping_alive() -> None:
    view = huge_page_zeros((4, 1024, 1024))[1:3]
    gc.collect()  # the base tensor is gone; the view still owns the memory
    view.fill_(2.0)
    assert view.sum().item() == 2.0 * 2 * 1024 * 1024


def test_small_tensors_and_switched_off_are_plain_zeros(monkeypatch: pytest.MonkeyPatch) -> None:
    small = huge_page_zeros((10, 3), torch.int8)
    assert small.shape == (10, 3) and not small.any()
    monkeypatch.setenv("SPEECHKIT_HUGE_PAGES", "0")
    assert not huge_pages_enabled()
    plain = huge_page_zeros((2, 1024, 1024))
    assert plain.shape == (2, 1024, 1024) and not plain.any()


def test_kv_caches_and_stream_blocks_use_huge_pages_on_cpu() -> None:
    cache = KVCache(num_layers=2, batch_size=2, num_heads=4, head_dim=64, max_length=2048, dtype=torch.int8)
    assert not cache.keys.any() and not cache.values.any() and cache.keys.dtype == torch.int8
    weight = torch.randn(4096, 1024)
    blocks = pack_stream(weight)
    assert torch.equal(blocks[3, :, 5], weight[3 * 64 + 5])
    if huge_pages_enabled():
        assert cache.keys.data_ptr() % HUGE_PAGE_BYTES == 0 and blocks.data_ptr() % HUGE_PAGE_BYTES == 0
