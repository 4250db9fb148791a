"""``speechkit xtts`` / ``speechkit s2st`` on the tiny pipeline: files written, prompts reused, errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechkit import cli, cli_synth
from speechkit.audio.io import save_audio
from speechkit.infer import VallexPipeline


@pytest.fixture
def cli_env(pipeline: VallexPipeline, prompt_wav: np.ndarray, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Path:
    """The session pipeline stands in for loading --pack (loading is tested in test_pipeline)."""
    loaded: list[Path] = []

    def load(args):
        loaded.append(args.pack)
        return pipeline

    monkeypatch.setattr(cli_synth, "_load_pipeline", load)
    save_audio(tmp_path / "spk.wav", prompt_wav, 16000)
    return tmp_path


def test_xtts_writes_wavs_and_reuses_a_saved_prompt(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = cli_env / "out.wav"
    assert cli.main(["xtts", "--pack", "p", "--prompt", str(cli_env / "spk.wav"), "--prompt-text", "昨天是星期日。",
                     "--text", "Yesterday was Sunday.", "--out", str(out), "--save-prompt", str(cli_env / "v.npz"),
                     "--temperature", "0", "--precision", "fp32", "--candidates", "2"]) == 0
    assert sf.info(str(out)).samplerate == 16000 and sf.info(str(out)).frames > 0
    (cli_env / "lines.txt").write_text("Hello.\n\n你好。\n")
    assert cli.main(["xtts", "--pack", "p", "--voice", str(cli_env / "v.npz"), "--text-file",
                     str(cli_env / "lines.txt"), "--accent", "zh", "--out-dir", str(cli_env / "many")]) == 0
    assert sorted(path.name for path in (cli_env / "many").iterdir()) == ["0000.wav", "0001.wav"]
    printed = capsys.readouterr().out
    assert "v.npz" in printed and "0001.wav" in printed


def test_xtts_usage_errors(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wav = str(cli_env / "spk.wav")
    assert cli.main(["xtts", "--pack", "p", "--prompt", wav, "--text", "a", "--out", "o.wav"]) == 2
    assert "--prompt-text" in capsys.readouterr().err
    assert cli.main(["xtts", "--pack", "p", "--prompt", wav, "--prompt-text", "你好", "--text", "a", "--text", "b",
                     "--out", "o.wav"]) == 2
    assert "--out-dir" in capsys.readouterr().err


def test_s2st_writes_the_translation(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = cli_env / "s2st.wav"
    assert cli.main(["s2st", "--pack", "p", "--prompt", str(cli_env / "spk.wav"), "--out", str(out),
                     "--target-lang", "en", "--temperature", "0"]) == 0
    assert out.is_file() and "-> en" in capsys.readouterr().out
    assert cli.main(["s2st", "--pack", "p", "--prompt", str(cli_env / "spk.wav"), "--out", str(out),
                     "--source-text", "昨天是星期日。", "--target-text", "Yesterday was Sunday."]) == 0
    assert sf.info(str(out)).frames > 0
