"""Timing and memory measurement for the benchmarks, the same on CPU and CUDA.

On CUDA, kernels run asynchronously: :class:`Clock` records CUDA events and reads them after one
synchronisation at the end, so marks inside a loop do not stall it; on CPU it reads
``time.perf_counter``. Peak memory is the allocator's peak on CUDA and the process's peak
resident set (``VmHWM``, reset per measurement where the kernel allows it) on CPU.
"""
from __future__ import annotations

import contextlib
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


_PROC_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory measurement (CUDA allocator; the process's VmHWM on Linux)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):
        _CLEAR_REFS.write_text("5")  # "5" resets the peak resident set size to the current one


def peak_memory_mb(device: torch.device) -> float | None:
    """Peak memory since :func:`reset_peak_memory`, MB: CUDA tensors, or the CPU process's
    peak resident set (None where the platform does not report it)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e6
    try:
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6  # kB
    except OSError:
        pass
    return None
