"""Small C++ CPU kernels compiled on first use (``torch.utils.cpp_extension.load_inline``).

:class:`InlineExtension` builds its source once per process (the build is cached on disk under
``~/.cache/torch_extensions``, ~40 s the first time on a machine), thread-safely, and returns
``None`` instead of the module where it cannot be built (no C++ compiler or ninja) or where its
environment switch is ``0``; callers then use their torch fallback.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Any, Sequence

log = logging.getLogger("speechkit.nn")


#: C++ shared by the kernels: includes, and widening loads of float32 / bfloat16 (as uint16_t)
#: values: ``load(p, i)`` one value, ``load16(p)`` 16 values into an AVX-512 register.
CPP_PRELUDE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

static inline float load(const float* p, int64_t i) { return p[i]; }
static inline float load(const uint16_t* p, int64_t i) {
  uint32_t bits = static_cast<uint32_t>(p[i]) << 16;
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

#if defined(__AVX512F__)
#include <immintrin.h>
static inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
static inline __m512 load16(const uint16_t* p) {
  __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}
#endif
"""


class InlineExtension:
    """A lazily built C++ extension.

    Args:
        name: extension name (unique per source).
        source: C++ source with ``#include <torch/extension.h>``.
        functions: names of the functions to bind.
        switch: environment variable that disables it when set to ``0``.
        fallback: what runs instead (for the warning).
    """

    def __init__(self, name: str, source: str, functions: Sequence[str], *, switch: str, fallback: str) -> None:
        self.name, self.source, self.functions = name, source, list(functions)
        self.switch, self.fallback = switch, fallback
        self._lock = threading.Lock()
        self._module: Any = None
        self._failed = False

    def get(self) -> Any:
        """The compiled module, built on the first call; None where it cannot be built or is disabled."""
        if self._module is not None or self._failed:
            return self._module
        if os.environ.get(self.switch, "1") == "0":
            self._failed = True
            return None
        with self._lock:
            if self._module is None and not self._failed:
                try:
                    from torch.utils.cpp_extension import load_inline

                    self._module = load_inline(
                        name=self.name, cpp_sources=[self.source], functions=self.functions,
                        extra_cflags=["-O3", "-march=native", "-fopenmp"], extra_ldflags=["-fopenmp"], verbose=False,
                    )
                except Exception as error:  # no compiler / ninja / headers: the torch path is used instead
                    self._failed = True
                    log.warning("%s unavailable (%s: %s); using %s instead. Install a C++ compiler and ninja "
                                "(pip install ninja) for faster CPU decoding.", self.name, type(error).__name__,
                                str(error).splitlines()[0] if str(error) else "", self.fallback)
        return self._module
