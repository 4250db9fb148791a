"""``python -m speechkit.nn.build_kernels``: build the compiled CPU kernels now.

The decoding-attention, fused-step, stream-linear and bf16-attention kernels
(:mod:`speechkit.nn.decode_kernel`) are C++ compiled on first use, which takes 30-60 s on a
2-core machine; ``tools/install.sh`` runs this so that the first synthesis does not wait for the
compiler. The build is cached under ``~/.cache/torch_extensions`` (``$TORCH_EXTENSIONS_DIR``).
Exits 1 where the kernels cannot be built: inference then uses torch's operations.
"""
from __future__ import annotations

import logging
import os
import time

from speechkit.nn.decode_kernel import compiled_kernels


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if os.environ.get("SPEECHKIT_DECODE_KERNEL", "1") == "0":
        print("speechkit CPU kernels: disabled by SPEECHKIT_DECODE_KERNEL=0; inference uses torch's operations")
        return 1
    start = time.perf_counter()
    kernels = compiled_kernels()
    if kernels is None:
        print("speechkit CPU kernels: not built (the warning says why); inference uses torch's operations")
        return 1
    print(f"speechkit CPU kernels: ready in {time.perf_counter() - start:.1f} s ({kernels.__file__})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
