"""Stage 8's curve step: configuration errors (the full step runs in the mini recipe test)."""
from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from speechkit.bin import curve
from speechkit.errors import ConfigError, DataError


def _config(**section: object) -> OmegaConf:
    return OmegaConf.create({"curve": section, "infer": {}, "score": {"scorers": {"en": [{"name": "whisper_wer"}]}},
                             "ar_lm": {"name": "aligned_ar"}})


def test_only_tts_tasks_can_be_on_the_curve(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a TTS task"):
        curve.run_stage(_config(tasks=["s2st_zh2en"]), tmp_path / "data", tmp_path / "dump", tmp_path / "exp")


def test_a_variant_without_checkpoints_names_the_stage_to_run(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="'aligned_ar'.*no checkpoints"):
        curve.run_stage(_config(), tmp_path / "data", tmp_path / "dump", tmp_path / "exp")
    with pytest.raises(DataError, match="'valle'.*ar_valle has no checkpoints"):
        curve.run_stage(_config(variants={"valle": "ar_valle"}), tmp_path / "data", tmp_path / "dump", tmp_path / "exp")


def test_misspelled_option_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_item"):
        curve.run_stage(_config(max_item=3), tmp_path / "data", tmp_path / "dump", tmp_path / "exp")


def test_run_name_must_be_a_plain_directory(tmp_path: Path) -> None:
    from speechkit.bin import train_ar

    config = tmp_path / "c.yaml"
    config.write_text("ar_lm: {name: valle_ar}\nar_train: {max_steps: 1}\n")
    with pytest.raises(ConfigError, match="plain directory name"):
        train_ar.main(["--config", str(config), "--run-name", "../elsewhere"])
