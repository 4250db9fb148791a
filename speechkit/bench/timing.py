"""Timing and memory measurement for the benchmarks, the same on CPU and CUDA.

On CUDA, kernels run asynchronously: :class:`Clock` records CUDA events and reads them after one
synchronisation at the end, so marks inside a loop do not stall it; on CPU it reads
``time.perf_counter``. Peak memory (:class:`PeakMemory`) is the allocator's peak on CUDA and
the process's peak resident set on CPU.
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import torch

T = TypeVar("T")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Clock:
    """Named time marks on ``device``; :meth:`seconds` between two of them.

    Marks are CUDA events on a CUDA device (read after one synchronisation), wall-clock
    readings on CPU.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._marks: dict[str, object] = {}

    def mark(self, name: str) -> None:
        """Record the time ``name`` (after the work queued so far, on CUDA)."""
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._marks[name] = event
        else:
            self._marks[name] = time.perf_counter()

    def seconds(self, start: str, end: str) -> float:
        """Seconds from mark ``start`` to mark ``end``."""
        first, last = self._marks[start], self._marks[end]
        if self.device.type == "cuda":
            synchronize(self.device)
            return first.elapsed_time(last) / 1000.0  # type: ignore[attr-defined]
        return float(last) - float(first)  # type: ignore[arg-type]


def warm_up_runs(device: torch.device) -> int:
    """Untimed runs a benchmark makes of each model and batch size before timing it: 1 on CUDA,
    where a model's first call pays for cuBLAS handles, kernel selection and the caching
    allocator's first blocks (measured on an H200: the first bf16 NAR call took 4x the next one),
    0 on CPU, whose weights are packed and kernels built by ``apply_precision`` beforehand."""
    return 1 if device.type == "cuda" else 0


def timed(device: torch.device, function: Callable[[], T]) -> tuple[T, float]:
    """Run ``function()`` once -> (its result, seconds), synchronised on CUDA."""
    clock = Clock(device)
    synchronize(device)
    clock.mark("start")
    result = function()
    clock.mark("end")
    return result, clock.seconds("start", "end")


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads (0 = leave torch's setting)."""
    previous = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


_PROC_STATM = Path("/proc/self/statm")
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _resident_bytes() -> int | None:
    """The process's resident set size now (Linux), or None."""
    try:
        return int(_PROC_STATM.read_text().split()[1]) * _PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return None


def _release_freed_memory() -> None:
    """Hand memory freed by earlier measurements back to the system (glibc), so the next peak
    counts what is alive, not what the allocator kept."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Peak memory of a block, MB: the CUDA allocator's peak on a CUDA device; on CPU the largest
    resident set size of the process seen by a thread that samples it every ``interval`` seconds
    (the kernel's own peak, VmHWM, cannot be reset everywhere). ``peak_mb`` is None where the
    platform does not report it.
    """

    def __init__(self, device: torch.device, interval: float = 0.01) -> None:
        self.device, self.interval = device, interval
        self.peak_mb: float | None = None
        self._stop = threading.Event()
        self._peak = 0
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, _resident_bytes() or 0)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        _release_freed_memory()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif _resident_bytes() is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.device.type == "cuda":
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 1e6
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, _resident_bytes() or 0)
            self.peak_mb = self._peak / 1e6
