"""Phone durations on disk (``dump/<set>/durations``) and the hook that puts them in LM batches.

File format, one utterance per line, aligned with the tokens of ``data/<set>/phones`` (boundary
tokens ``<sp>``/``<sil>`` included)::

    <utt> d_1 d_2 ... d_P        # frames of each phone, every d >= 1, sum = frames in codes.scp

For the phone-synchronous AR (``aligned_ar``) a training item's ``phones`` are the prompt's
transcript followed by the target text, and its ``codes`` the prompt's frames followed by the
target's. :func:`pair_durations` builds the matching ``durations`` LongTensor[P] (zeros for the
prompt transcript: prompt frames get no phone conditioning); :func:`add_durations` adds it to an
item dict, and ``pad_sequences`` pads it like ``phones`` (padding value 0).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from speechkit.errors import DataError
from speechkit.utils.fs import atomic_write_text

#: Name of the durations file inside ``dump/<set>/``.
DURATIONS_FILE = "durations"


def write_durations(path: str | Path, durations: Mapping[str, Sequence[int]]) -> None:
    """Write ``<utt> d1 d2 ...`` lines sorted by utterance, atomically."""
    lines = (f"{utt} {' '.join(str(int(d)) for d in durations[utt])}\n" for utt in sorted(durations))
    atomic_write_text(Path(path), "".join(lines))


def read_durations(path: str | Path) -> dict[str, list[int]]:
    """Read a durations file -> ``{utt: [d1, d2, ...]}``.

    Raises:
        DataError: missing file (run the alignment stage) or a malformed line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path} does not exist: run the alignment step first "
            "(python -m speechkit.bin.align --config C --data data --dump dump --exp exp)."
        )
    table: dict[str, list[int]] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            counts = [int(field) for field in fields[1:]]
        except ValueError:
            raise DataError(f"{path}:{number}: durations must be integers, got {line!r}.") from None
        if not counts or min(counts) < 1:
            raise DataError(f"{path}:{number}: {fields[0]!r} needs one count >= 1 per phone, got {line!r}.")
        table[fields[0]] = counts
    return table


def pair_durations(num_prompt_phones: int, target_durations: Sequence[int]) -> torch.Tensor:
    """Durations of a (prompt, target) training pair, aligned with ``prompt phones + target phones``.

    Returns LongTensor[num_prompt_phones + len(target_durations)]: 0 for each prompt-transcript
    phone, then the target's frames per phone (they must sum to the target's frame count).
    """
    if num_prompt_phones < 0:
        raise DataError(f"num_prompt_phones must be >= 0, got {num_prompt_phones}.")
    target = torch.as_tensor(list(target_durations), dtype=torch.long)
    return torch.cat([torch.zeros(num_prompt_phones, dtype=torch.long), target])


def add_durations(item: dict[str, Any], target_durations: Sequence[int], *, num_prompt_phones: int) -> dict[str, Any]:
    """Add ``durations`` (LongTensor[P], see :func:`pair_durations`) to a dataset item, in place.

    ``item["phones"]`` (LongTensor[P]) must be the prompt transcript (``num_prompt_phones``
    tokens) followed by the target text that ``target_durations`` belongs to.

    Raises:
        DataError: the phone count does not match.
    """
    durations = pair_durations(num_prompt_phones, target_durations)
    phones = item.get("phones")
    if phones is not None and int(phones.shape[-1]) != durations.numel():
        raise DataError(
            f"add_durations: item has {int(phones.shape[-1])} phones but {num_prompt_phones} prompt phones + "
            f"{len(target_durations)} target durations were given; durations must follow data/<set>/phones."
        )
    item["durations"] = durations
    return item
