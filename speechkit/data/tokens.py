"""Acoustic-token dumps: codec codes stored as kaldiio ark/scp, sharded for parallel writing.

Layout of one set (stage 3)::

    dump/<set>/codes.<i>.ark             shard i: ``<utt> NPY<len><.npy bytes>`` records
    dump/<set>/codes.<i>.scp             ``<utt> <absolute ark path>:<offset>`` for shard i
    dump/<set>/codes.<i>.utt2num_frames  ``<utt> <T>`` for shard i
    dump/<set>/codes.scp                 all shards merged, sorted by utterance
    dump/<set>/utt2num_frames            ``<utt> <T>`` merged

Each entry is one ``codes: LongTensor[L, T]`` matrix kept as int16 (codebooks up to 32768) or
int32 through kaldiio's numpy record writer, because Kaldi's binary matrix format only holds
floats. Writes are atomic: an ark is written under a temporary name and renamed, and each scp
is replaced atomically, so a killed run leaves either a complete shard or none. Scp entries name
arks by absolute path, so a dump reads the same from any working directory (moving the recipe
directory means re-running stage 3).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from speechkit.errors import DataError
from speechkit.utils.fs import atomic_open, atomic_write_text

#: Name of the merged scp inside ``dump/<set>/``.
CODES_SCP = "codes.scp"
UTT2NUM_FRAMES = "utt2num_frames"


def codes_dtype(codebook_size: int) -> np.dtype:
    """Smallest signed integer dtype that holds ids ``0..codebook_size-1`` (int16 or int32)."""
    if codebook_size <= 0:
        raise DataError(f"codebook_size must be positive, got {codebook_size}.")
    return np.dtype(np.int16) if codebook_size <= np.iinfo(np.int16).max + 1 else np.dtype(np.int32)


def shard_paths(set_dir: str | Path, index: int) -> dict[str, Path]:
    """Paths of shard ``index`` in ``set_dir``: keys ``ark``, ``scp``, ``utt2num_frames``, ``bad``."""
    set_dir = Path(set_dir)
    stem = f"codes.{index}"
    return {
        "ark": set_dir / f"{stem}.ark",
        "scp": set_dir / f"{stem}.scp",
        "utt2num_frames": set_dir / f"{stem}.utt2num_frames",
        "bad": set_dir / f"{stem}.bad_utts",
    }


def split_into_shards(utts: Sequence[str], num_shards: int) -> list[list[str]]:
    """Contiguous, nearly equal chunks of ``utts`` (sorted order is kept, like Kaldi's split_scp).

    Returns ``min(num_shards, len(utts))`` non-empty chunks (at least one, possibly empty).
    """
    if num_shards < 1:
        raise DataError(f"The number of shards (--nj) must be >= 1, got {num_shards}.")
    count = max(1, min(num_shards, len(utts)))
    bounds = np.linspace(0, len(utts), count + 1).round().astype(int)
    return [list(utts[bounds[i]:bounds[i + 1]]) for i in range(count)]


def _as_code_matrix(utt: str, codes: torch.Tensor | np.ndarray, dtype: np.dtype) -> np.ndarray:
    array = codes.detach().cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
    if array.ndim != 2:
        raise DataError(f"Codes of {utt!r} must be a [L, T] matrix, got shape {tuple(array.shape)}.")
    if array.size and (array.min() < 0 or array.max() > np.iinfo(dtype).max):
        raise DataError(
            f"Codes of {utt!r} hold ids outside 0..{np.iinfo(dtype).max} "
            f"(min {array.min()}, max {array.max()}); the codec's codebook_size is wrong."
        )
    return np.ascontiguousarray(array.astype(dtype, copy=False))


def write_codes_shard(
    entries: Iterable[tuple[str, torch.Tensor | np.ndarray]],
    ark_path: str | Path,
    scp_path: str | Path,
    *,
    codebook_size: int,
) -> dict[str, int]:
    """Write ``(utt, codes: LongTensor[L, T])`` pairs to one ark + scp, atomically.

    The ark is written to a temporary sibling and renamed once complete; the scp (whose entries
    name the final ark by absolute path) is then replaced atomically.

    Returns:
        ``{utt: T}`` number of frames per written utterance, in write order.
    """
    import kaldiio

    ark_path, scp_path = Path(ark_path).absolute(), Path(scp_path)
    ark_path.parent.mkdir(parents=True, exist_ok=True)
    dtype = codes_dtype(codebook_size)
    num_frames: dict[str, int] = {}
    scp_lines: list[str] = []
    with atomic_open(ark_path, "wb", encoding=None) as handle:
        for utt, codes in entries:
            if utt in num_frames:
                raise DataError(f"Utterance {utt!r} is written twice to {ark_path}.")
            matrix = _as_code_matrix(utt, codes, dtype)
            offset = handle.tell() + len(f"{utt} ".encode())
            kaldiio.save_ark(handle, {utt: matrix}, write_function="numpy")
            scp_lines.append(f"{utt} {ark_path}:{offset}\n")
            num_frames[utt] = int(matrix.shape[1])
    atomic_write_text(scp_path, "".join(scp_lines))
    return num_frames


def write_utt2num_frames(path: str | Path, num_frames: Mapping[str, int]) -> None:
    """Write ``<utt> <T>`` lines sorted by utterance, atomically."""
    atomic_write_text(Path(path), "".join(f"{utt} {num_frames[utt]}\n" for utt in sorted(num_frames)))


def read_utt2num_frames(path: str | Path) -> dict[str, int]:
    """Read a ``utt2num_frames`` file; :class:`DataError` naming the line if malformed."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; run stage 3 (dump_codes) first.")
    table: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise DataError(f"{path}:{number}: expected '<utt> <num_frames>', got {line!r}.")
        table[parts[0]] = int(parts[1])
    return table


def merge_scps(shard_scps: Sequence[str | Path], merged_path: str | Path) -> int:
    """Concatenate shard scps into ``merged_path`` sorted by utterance (atomic); returns #entries.

    Raises:
        DataError: a shard scp is missing or an utterance appears in two shards.
    """
    lines: dict[str, str] = {}
    for scp in map(Path, shard_scps):
        if not scp.is_file():
            raise DataError(f"Shard scp {scp} is missing; re-run stage 3 to rewrite that shard.")
        for line in scp.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            utt = line.split(" ", 1)[0]
            if utt in lines:
                raise DataError(f"Utterance {utt!r} appears in two shards (second: {scp}).")
            lines[utt] = line
    atomic_write_text(Path(merged_path), "".join(lines[utt] + "\n" for utt in sorted(lines)))
    return len(lines)


def _to_long_tensor(key: str, array: np.ndarray) -> torch.Tensor:
    if not isinstance(array, np.ndarray) or array.ndim != 2 or array.dtype.kind not in "iu":
        shape = getattr(array, "shape", None)
        raise DataError(f"Entry {key!r} is not an integer [L, T] code matrix (shape {shape}).")
    return torch.from_numpy(array.astype(np.int64))


class CodesReader(Mapping[str, torch.Tensor]):
    """Lazy ``{utt: codes LongTensor[L, T]}`` view of a codes scp (reads an entry on access)."""

    def __init__(self, scp_path: str | Path) -> None:
        import kaldiio

        self.scp_path = Path(scp_path)
        if not self.scp_path.is_file():
            raise DataError(f"Codes scp {self.scp_path} does not exist; run stage 3 (dump_codes) first.")
        self._loader = kaldiio.load_scp(str(self.scp_path))

    def __getitem__(self, utt: str) -> torch.Tensor:
        try:
            array = self._loader[utt]
        except KeyError:
            raise KeyError(f"{utt!r} is not in {self.scp_path}") from None
        except Exception as error:  # truncated/missing ark: kaldiio raises various errors
            raise DataError(
                f"Cannot read codes of {utt!r} listed in {self.scp_path}: {error}. "
                "The ark is missing or corrupt; re-run stage 3."
            ) from error
        return _to_long_tensor(utt, array)

    def __iter__(self) -> Iterator[str]:
        return iter(self._loader)

    def __len__(self) -> int:
        return len(self._loader)


def load_codes(scp_path: str | Path) -> CodesReader:
    """A lazy mapping ``utt -> codes: LongTensor[L, T]`` over ``scp_path`` (e.g. dump/train/codes.scp)."""
    return CodesReader(scp_path)


def read_codes(specifier: str) -> torch.Tensor:
    """Read one entry: an ark specifier ``path.ark:offset`` or a whole scp line ``utt path.ark:offset``.

    Returns:
        codes: LongTensor[L, T]
    """
    import kaldiio

    specifier = specifier.strip()
    key, _, rest = specifier.partition(" ")
    target = rest.strip() if rest else key
    try:
        array = kaldiio.load_mat(target)
    except Exception as error:
        raise DataError(f"Cannot read codes from {target!r}: {error}. Expected 'path.ark:offset'.") from error
    return _to_long_tensor(target, array)
