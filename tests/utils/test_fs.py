"""Atomic writes: no partial files, identical rewrites keep the file untouched."""
from __future__ import annotations

import os
import stat

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


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_new_files_get_the_umask_modes_of_a_plain_open(tmp_path, umask):
    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "results.md", "| a |\n")
        with atomic_open(tmp_path / "out.wav", "wb") as handle:
            handle.write(b"RIFF")
        with open(tmp_path / "plain.txt", "w") as handle:
            handle.write("x")
    finally:
        os.umask(previous)
    plain = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert plain == 0o666 & ~umask
    for name in ("results.md", "out.wav"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == plain, name


def test_rewrite_keeps_the_replaced_files_mode(tmp_path):
    path = tmp_path / "shared.json"
    atomic_write_text(path, "{}")
    path.chmod(0o640)
    atomic_write_text(path, "{1}")
    assert path.read_text() == "{1}" and stat.S_IMODE(path.stat().st_mode) == 0o640


def test_code_arks_are_written_with_plain_modes(tmp_path):
    import torch

    from speechkit.data.tokens import load_codes, write_codes_shard

    write_codes_shard([("utt1", torch.zeros(2, 5, dtype=torch.long))], tmp_path / "codes.ark", tmp_path / "codes.scp",
                      codebook_size=256)
    (tmp_path / "plain.txt").write_text("x")
    expected = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    for name in ("codes.ark", "codes.scp"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name
    assert load_codes(tmp_path / "codes.scp")["utt1"].shape == (2, 5)
