"""A tiny random-weight VALL-E X pipeline pack (mel_rvq codec, valle_ar/nar, transformer_st), built once."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speechkit.infer import SynthesisOptions, VallexPipeline, VoicePrompt
from speechkit.infer.tiny import build_tiny_pipeline_pack, synthetic_voice


@pytest.fixture(scope="session")
def tiny_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_pipeline_pack(tmp_path_factory.mktemp("vallex"))


@pytest.fixture(scope="session")
def pipeline(tiny_pack: Path) -> VallexPipeline:
    return VallexPipeline.load(tiny_pack, SynthesisOptions(temperature=0.0))


@pytest.fixture(scope="session")
def prompt_wav() -> np.ndarray:
    return synthetic_voice(1.0, 140, seed=7).numpy()


@pytest.fixture(scope="session")
def zh_prompt(pipeline: VallexPipeline, prompt_wav: np.ndarray) -> VoicePrompt:
    return pipeline.make_voice_prompt(prompt_wav, 16000, "昨天是星期日。")
