"""Voice prompts: made from audio + transcript, saved as plain .npz, reusable."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from speechkit.errors import DataError
from speechkit.infer import VallexPipeline, VoicePrompt


def test_prompt_holds_codes_phones_and_language(pipeline: VallexPipeline, zh_prompt: VoicePrompt) -> None:
    codec = pipeline.codec
    assert zh_prompt.codes.shape[0] == codec.num_quantizers
    assert abs(zh_prompt.seconds - 1.0) < 0.05
    assert zh_prompt.lang == "zh" and zh_prompt.codec == "mel_rvq"
    assert zh_prompt.phones[0].startswith("zh:") and zh_prompt.phones[-1] == "<sil>"


def test_save_load_round_trip_without_pickle(zh_prompt: VoicePrompt, tmp_path: Path) -> None:
    path = zh_prompt.save(tmp_path / "voice.npz")
    with np.load(path, allow_pickle=False) as archive:  # plain arrays only
        assert archive["codes"].dtype == np.int64
    loaded = VoicePrompt.load(path)
    assert torch.equal(loaded.codes, zh_prompt.codes)
    assert (loaded.phones, loaded.lang, loaded.text, loaded.codec) == (
        zh_prompt.phones, zh_prompt.lang, zh_prompt.text, zh_prompt.codec)
    assert loaded.frame_rate == zh_prompt.frame_rate


def test_saved_prompt_gives_the_same_speech(pipeline: VallexPipeline, zh_prompt: VoicePrompt, tmp_path: Path) -> None:
    loaded = VoicePrompt.load(zh_prompt.save(tmp_path / "voice.npz"))
    [direct] = pipeline.synthesize("Good morning.", zh_prompt)
    [reused] = pipeline.synthesize("Good morning.", loaded)
    assert np.array_equal(direct, reused)


def test_bad_prompt_files_are_clear_errors(tmp_path: Path, pipeline: VallexPipeline, zh_prompt: VoicePrompt) -> None:
    with pytest.raises(DataError, match="does not exist"):
        VoicePrompt.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "partial.npz", codes=np.zeros((3, 4), dtype=np.int64))
    with pytest.raises(DataError, match="lacks"):
        VoicePrompt.load(tmp_path / "partial.npz")
    good = zh_prompt.save(tmp_path / "good.npz").read_bytes()
    for name, damaged in [("truncated", good[: len(good) // 2]), ("renamed", good.replace(b"codes.npy", b"codez.npy", 1)),
                          ("header", good.replace(b"descr", b"dscr(", 1)), ("random", bytes(range(256)) * 4)]:
        (tmp_path / f"{name}.npz").write_bytes(damaged)
        with pytest.raises(DataError, match="Re-create it with --save-prompt"):
            VoicePrompt.load(tmp_path / f"{name}.npz")
    np.savez(tmp_path / "floats.npz", **{**{key: np.array("x") for key in ("lang", "text", "codec")},
                                           "codes": np.zeros((3, 4)), "phones": np.array(["a"]), "frame_rate": np.array(75.0)})
    with pytest.raises(DataError, match="not integer codes"):
        VoicePrompt.load(tmp_path / "floats.npz")
    other_codec = VoicePrompt(zh_prompt.codes, zh_prompt.phones, "zh", codec="encodec")
    with pytest.raises(DataError, match="encodec"):
        pipeline.check_prompt(other_codec)
    with pytest.raises(DataError, match="Tp"):
        VoicePrompt(torch.zeros(3, 0, dtype=torch.long), ["<sil>"], "zh")
