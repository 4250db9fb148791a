"""Shared batches of the NAR tests."""
from __future__ import annotations

from typing import Callable

import pytest
import torch


def random_nar_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """2 right-padded items (20 phones, 3 languages, 4 levels of 16 codes); item 2 has no prompt."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "phones": torch.randint(1, 20, (2, 5), generator=generator),
        "phone_lens": torch.tensor([5, 3]),
        "phone_langs": torch.randint(0, 3, (2, 5), generator=generator),
        "prompt_codes": torch.randint(0, 16, (2, 4, 6), generator=generator),
        "prompt_lens": torch.tensor([6, 0]),
        "codes": torch.randint(0, 16, (2, 4, 7), generator=generator),
        "code_lens": torch.tensor([7, 4]),
    }


@pytest.fixture
def nar_batch() -> Callable[..., dict[str, torch.Tensor]]:
    """:func:`random_nar_batch` (call it with a seed)."""
    return random_nar_batch
