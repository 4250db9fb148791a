"""checked_device: a user's device name, checked before anything is put there."""
from __future__ import annotations

import pytest
import torch

from speechkit.errors import ConfigError
from speechkit.train.distributed import resolve_device
from speechkit.utils.device import checked_device


def test_known_devices_pass_and_bad_names_are_config_errors() -> None:
    assert checked_device("cpu") == torch.device("cpu")
    assert checked_device(torch.device("cpu")) == torch.device("cpu")
    for bad in ("gpu", "cuda:x", ""):
        with pytest.raises(ConfigError, match="--device .* is not a torch device"):
            checked_device(bad, "--device")


def test_cuda_is_checked_against_what_torch_sees() -> None:
    if not torch.cuda.is_available():
        for name in ("cuda", "cuda:0"):
            with pytest.raises(ConfigError, match="CUDA is not available here"):
                checked_device(name, "--device")
        with pytest.raises(ConfigError, match="train.device"):
            resolve_device("cuda")
        assert resolve_device("auto") == torch.device("cpu")
    else:
        assert checked_device("cuda").type == "cuda"
        beyond = f"cuda:{torch.cuda.device_count()}"
        with pytest.raises(ConfigError, match="CUDA device"):
            checked_device(beyond)
        assert resolve_device("cuda", local_rank=0) == torch.device("cuda:0")
