"""speechkit: a plugin-based speech toolkit with Kaldi/ESPnet-style recipes (VALL-E X flagship)."""
from __future__ import annotations

__version__ = "0.1.0"
