"""Atomic writes: no partial files, identical rewrites keep the file untouched."""
from __future__ import annotations

import os

import pytest

from speechkit.utils.fs import atomic_open, atomic_write_text


def test_identical_rewrite_keeps_mtime(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_text(path, "{}\n")
    os.utime(path, (1_000_000, 1_000_000))
    atomic_write_text(path, "{}\n")
    assert path.stat().st_mtime == 1_000_000
    atomic_write_text(path, "{1}\n")
    assert path.read_text() == "{1}\n" and path.stat().st_mtime != 1_000_000


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    path = tmp_path / "b.txt"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_open(path) as handle:
            handle.write("new, half written")
            raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["b.txt"]
