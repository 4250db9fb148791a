"""Done-markers that make recipe stages idempotent and resumable.

A stage (or a shard of one) writes its outputs, then :meth:`StageMarker.mark_done` writes a marker
atomically holding a fingerprint of the inputs/config. Re-running a finished stage with the same
fingerprint does nothing; a changed config or an interrupted run (no marker) redoes the work.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from speechkit.utils.fs import atomic_write_text

log = logging.getLogger(__name__)


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable ``parts`` (config dicts, file lists, versions)."""
    payload = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


class StageMarker:
    """Marker file ``<directory>/.done.<name>`` with a fingerprint and the time taken.

    Args:
        directory: where the stage writes its outputs.
        name: stage or shard name, e.g. ``"codes.3"``.
        key: fingerprint of what the outputs depend on.
    """

    def __init__(self, directory: str | Path, name: str, key: str) -> None:
        self.path = Path(directory) / f".done.{name}"
        self.key = key
        self._start = time.monotonic()

    def is_done(self) -> bool:
        """True if the marker exists with the same fingerprint."""
        if not self.path.is_file():
            return False
        try:
            return json.loads(self.path.read_text()).get("key") == self.key
        except (OSError, ValueError):
            return False

    def mark_done(self, **info: Any) -> None:
        """Record success (atomically), with elapsed seconds and any extra ``info``."""
        record = {"key": self.key, "seconds": round(time.monotonic() - self._start, 2), **info}
        atomic_write_text(self.path, json.dumps(record, indent=1, default=str) + "\n")

    def clear(self) -> None:
        """Forget a previous success (before redoing the work)."""
        self.path.unlink(missing_ok=True)
