"""CPU tensors on transparent huge pages (2 MB) for the data every decoding step streams.

A batch-1 decoding step reads ~600 MB of weights at paper size. With 4 KB pages that is ~150,000
pages per step: a TLB miss and a page walk every 4 KB, and the hardware prefetchers stop at every
page boundary. On 2 MB pages the same stream crosses ~300 boundaries. docs/performance.md
("Huge pages") measures the gain on the 2-core AVX-512 machines.

Linux gives a process huge pages for anonymous memory it marks with ``madvise(MADV_HUGEPAGE)``
before first touching it. That works when ``/sys/kernel/mm/transparent_hugepage/enabled`` is
``madvise`` (the usual default) or ``always``. torch's allocator does not mark its memory unless
``THP_MEM_ALLOC_ENABLE=1`` is set before the process starts.

So :func:`huge_page_zeros` maps its own anonymous memory, aligned to 2 MB and marked, and wraps it
in a tensor. Two cases give an ordinary ``torch.zeros`` tensor instead, with the same values:
small tensors, and systems without the call (not Linux, or huge pages disabled).
``SPEECHKIT_HUGE_PAGES=0`` turns it off, for A/B runs.
"""
from __future__ import annotations

import ctypes
import math
import mmap
import os
from typing import Sequence

import torch

#: bytes of a transparent huge page on x86-64 and most arm64 kernels
HUGE_PAGE_BYTES = 2 << 20


def huge_pages_enabled() -> bool:
    """Whether :func:`huge_page_zeros` maps huge pages here: ``madvise`` support and not
    turned off with ``SPEECHKIT_HUGE_PAGES=0``."""
    return os.environ.get("SPEECHKIT_HUGE_PAGES", "1") != "0" and hasattr(mmap, "MADV_HUGEPAGE")


def huge_page_zeros(shape: Sequence[int], dtype: torch.dtype = torch.float32,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """A zero-filled contiguous tensor of ``shape`` and ``dtype``: on CPU on memory marked for huge
    pages when it is at least one huge page (see the module docstring); ``torch.zeros`` otherwise
    (other devices, small tensors, no ``madvise``).

    The memory is a private anonymous mapping, freed when the tensor (and every view of it) is
    gone. It is zero-filled by the kernel, and pages are only allocated when first touched.
    """
    numel = math.prod(int(size) for size in shape)
    nbytes = numel * torch.empty((), dtype=dtype).element_size()
    if torch.device(device).type != "cpu" or nbytes < HUGE_PAGE_BYTES or not huge_pages_enabled():
        return torch.zeros(tuple(shape), dtype=dtype, device=device)
    try:
        mapping = mmap.mmap(-1, nbytes + HUGE_PAGE_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        address = ctypes.addressof(ctypes.c_char.from_buffer(mapping))
        offset = -address % HUGE_PAGE_BYTES  # a multiple of the 4 KB page size: mmap returns page-aligned memory
        mapping.madvise(mmap.MADV_HUGEPAGE, offset, nbytes)
    except (OSError, ValueError, BufferError):  # no anonymous mappings or madvise here: plain memory
        return torch.zeros(tuple(shape), dtype=dtype)
    # frombuffer keeps the mapping alive as long as the tensor's storage
    return torch.frombuffer(mapping, dtype=dtype, count=numel, offset=offset).view(tuple(shape))
