"""Token dumps: kaldiio ark/scp round trip, sharding, merging and atomic resume."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from speechkit.data import tokens
from speechkit.errors import DataError


def _random_codes(count: int, levels: int = 3, codebook_size: int = 1024) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        f"spk1-utt{i:03d}": torch.randint(0, codebook_size, (levels, 5 + 7 * i), generator=generator)
        for i in range(count)
    }


def _dump(codes: dict[str, torch.Tensor], set_dir: Path, num_shards: int, codebook_size: int = 1024) -> None:
    chunks = tokens.split_into_shards(sorted(codes), num_shards)
    for index, chunk in enumerate(chunks):
        paths = tokens.shard_paths(set_dir, index)
        frames = tokens.write_codes_shard(
            ((utt, codes[utt]) for utt in chunk), paths["ark"], paths["scp"], codebook_size=codebook_size
        )
        tokens.write_utt2num_frames(paths["utt2num_frames"], frames)
    tokens.merge_scps([tokens.shard_paths(set_dir, i)["scp"] for i in range(len(chunks))], set_dir / "codes.scp")


def test_codes_dtype_picks_int16_then_int32() -> None:
    assert tokens.codes_dtype(1024) == np.int16
    assert tokens.codes_dtype(32768) == np.int16
    assert tokens.codes_dtype(32769) == np.int32
    with pytest.raises(DataError):
        tokens.codes_dtype(0)


def test_split_into_shards_is_contiguous_and_complete() -> None:
    utts = [f"u{i:02d}" for i in range(10)]
    chunks = tokens.split_into_shards(utts, 3)
    assert [len(c) for c in chunks] == [3, 4, 3]
    assert sum(chunks, []) == utts
    assert tokens.split_into_shards(utts[:2], 5) == [["u00"], ["u01"]]
    with pytest.raises(DataError, match="--nj"):
        tokens.split_into_shards(utts, 0)


def test_round_trip_through_sharded_dump(tmp_path: Path) -> None:
    codes = _random_codes(7)
    _dump(codes, tmp_path, num_shards=3)
    reader = tokens.load_codes(tmp_path / "codes.scp")
    assert sorted(reader) == sorted(codes) and len(reader) == 7
    for utt, expected in codes.items():
        loaded = reader[utt]
        assert loaded.dtype == torch.long
        assert torch.equal(loaded, expected)
    lines = (tmp_path / "codes.scp").read_text().splitlines()
    assert [line.split()[0] for line in lines] == sorted(codes)
    assert torch.equal(tokens.read_codes(lines[4]), codes[lines[4].split()[0]])
    assert torch.equal(tokens.read_codes(lines[4].split()[1]), codes[lines[4].split()[0]])
    frames = {}
    for index in range(3):
        frames.update(tokens.read_utt2num_frames(tokens.shard_paths(tmp_path, index)["utt2num_frames"]))
    assert frames == {utt: c.shape[1] for utt, c in codes.items()}
    with pytest.raises(KeyError, match="nope"):
        reader["nope"]


def test_large_codebooks_are_stored_as_int32(tmp_path: Path) -> None:
    codes = {"a-1": torch.tensor([[0, 40000, 65535]])}
    tokens.write_codes_shard(codes.items(), tmp_path / "c.ark", tmp_path / "c.scp", codebook_size=65536)
    assert torch.equal(tokens.load_codes(tmp_path / "c.scp")["a-1"], codes["a-1"])


def test_bad_codes_are_refused_and_leave_nothing(tmp_path: Path) -> None:
    ark, scp = tmp_path / "c.ark", tmp_path / "c.scp"
    with pytest.raises(DataError, match="\\[L, T\\]"):
        tokens.write_codes_shard([("a-1", torch.zeros(4, dtype=torch.long))], ark, scp, codebook_size=8)
    with pytest.raises(DataError, match="outside"):
        tokens.write_codes_shard([("a-1", torch.full((1, 3), 40000))], ark, scp, codebook_size=1024)
    with pytest.raises(DataError, match="twice"):
        tokens.write_codes_shard([("a-1", torch.ones(1, 2, dtype=torch.long))] * 2, ark, scp, codebook_size=8)
    assert list(tmp_path.iterdir()) == []  # no ark, no scp, no temporary file


def test_interrupted_writer_keeps_the_previous_shard(tmp_path: Path) -> None:
    ark, scp = tmp_path / "c.ark", tmp_path / "c.scp"
    good = {"a-1": torch.ones(2, 3, dtype=torch.long)}
    tokens.write_codes_shard(good.items(), ark, scp, codebook_size=8)
    before = ark.read_bytes(), scp.read_text()

    def killed_midway():
        yield "a-1", torch.zeros(2, 9, dtype=torch.long)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tokens.write_codes_shard(killed_midway(), ark, scp, codebook_size=8)
    assert (ark.read_bytes(), scp.read_text()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.ark", "c.scp"]


def test_merge_rejects_duplicates_and_missing_shards(tmp_path: Path) -> None:
    (tmp_path / "a.scp").write_text("u1 x.ark:5\n")
    (tmp_path / "b.scp").write_text("u1 y.ark:5\n")
    with pytest.raises(DataError, match="two shards"):
        tokens.merge_scps([tmp_path / "a.scp", tmp_path / "b.scp"], tmp_path / "m.scp")
    with pytest.raises(DataError, match="missing"):
        tokens.merge_scps([tmp_path / "a.scp", tmp_path / "c.scp"], tmp_path / "m.scp")


def test_readers_name_missing_and_malformed_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="stage 3"):
        tokens.load_codes(tmp_path / "none.scp")
    (tmp_path / "utt2num_frames").write_text("u1 12\nu2 x\n")
    with pytest.raises(DataError, match="utt2num_frames:2"):
        tokens.read_utt2num_frames(tmp_path / "utt2num_frames")
    with pytest.raises(DataError, match="Cannot read codes"):
        tokens.read_codes(f"{tmp_path / 'none.ark'}:10")
