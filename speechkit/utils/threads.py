"""Running a block of torch work with a fixed number of CPU threads."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run a block with one torch thread (the previous count is restored afterwards).

    Short FFTs and small encoders gain nothing from threads, lose a lot on a busy machine, and
    give bit-identical results on one thread.
    """
    import torch  # here, so importing this module (e.g. from a scorer) stays light

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
