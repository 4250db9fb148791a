"""The Kaldi data-dir validator: every kind of problem gives an error that names it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speechkit.audio.io import save_audio
from speechkit.data.datadir import DataDir, read_table, validate_datadir, write_table
from speechkit.errors import DataError

UTTS = {
    "spkA-p1-en": ("spkA", "en", "Hello there."),
    "spkA-p1-zh": ("spkA", "zh", "你好。"),
    "spkB-p2-en": ("spkB", "en", "Good morning."),
}


def _tone(seconds: float, rate: int) -> np.ndarray:
    time = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220.0 * time)).astype(np.float32)


def make_datadir(root: Path, rate: int = 16000) -> Path:
    """A valid 3-utterance, 2-speaker data dir with real wavs under ``root``."""
    directory = root / "set"
    wavs = {}
    for utt in UTTS:
        wavs[utt] = str(root / "wav" / f"{utt}.wav")
        save_audio(wavs[utt], _tone(0.2, rate), rate)
    DataDir(
        directory,
        wav_scp=wavs,
        text={utt: text for utt, (_, _, text) in UTTS.items()},
        utt2spk={utt: spk for utt, (spk, _, _) in UTTS.items()},
        utt2lang={utt: lang for utt, (_, lang, _) in UTTS.items()},
        extra={"utt2pair": {utt: utt.split("-")[1] for utt in UTTS}},
    ).save()
    return directory


def test_valid_datadir_passes_and_round_trips(tmp_path: Path) -> None:
    directory = make_datadir(tmp_path)
    validate_datadir(directory, sample_rate=16000)
    loaded = DataDir.load(directory)
    assert loaded.utts == sorted(UTTS)
    assert loaded.spk2utt == {"spkA": ["spkA-p1-en", "spkA-p1-zh"], "spkB": ["spkB-p2-en"]}
    assert loaded.extra["utt2pair"]["spkA-p1-zh"] == "p1"
    assert read_table(directory / "spk2utt")["spkA"] == "spkA-p1-en spkA-p1-zh"


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist; run stage 1"):
        validate_datadir(tmp_path / "nowhere")


def test_missing_required_file(tmp_path: Path) -> None:
    directory = make_datadir(tmp_path)
    (directory / "utt2lang").unlink()
    with pytest.raises(DataError, match="lacks utt2lang; re-run stage 1"):
        validate_datadir(directory)


def test_unsorted_table(tmp_path: Path) -> None:
    directory = make_datadir(tmp_path)
    lines = (directory / "text").read_text(encoding="utf-8").splitlines(keepends=True)
    (directory / "text").write_text("".join(reversed(lines)), encoding="utf-8")
    with pytest.raises(DataError, match=r"text is not sorted by key \(sort it with LC_ALL=C sort\)"):
        validate_datadir(directory, check_audio=False)


def test_tables_disagree_on_utterances(tmp_path: Path) -> None:
    directory = make_datadir(tmp_path)
    text = read_table(directory / "text")
    del text["spkB-p2-en"]
    write_table(directory / "text", text)
    with pytest.raises(DataError, match=r"text and wav.scp disagree on utterances .*missing: \['spkB-p2-en'\]"):
        validate_datadir(directory, check_audio=False)


def test_optional_table_must_cover_the_same_utterances(tmp_path: Path) -> None:
    directory = make_datadir(tmp_path)
    write_table(directory / "utt2pair", {"spkA-p1-en": "p1"})
    with pytest.raises(DataError, match="utt2pair and wav.scp disagree"):
        validate_datadir(directory, check_audio=False)


def test_utterance_without_speaker_prefix(tmp_path: Path) -> None:
    directory = make_datadir(tmp_path)
    utt2spk = read_table(directory / "utt2spk")
    utt2spk["spkB-p2-en"] = "spkC"
    write_table(directory / "utt2spk", utt2spk)
    with pytest.raises(DataError, match="'spkB-p2-en' does not start with its speaker id 'spkC'"):
        validate_datadir(directory, check_audio=False)


def test_spk2utt_inconsistent_with_utt2spk(tmp_path: Path) -> None:
    directory = make_datadir(tmp_path)
    write_table(directory / "spk2utt", {"spkA": "spkA-p1-en", "spkB": "spkB-p2-en"})
    with pytest.raises(DataError, match="spk2utt does not match utt2spk"):
        validate_datadir(directory, check_audio=False)


def test_unknown_language(tmp_path: Path) -> None:
    directory = make_datadir(tmp_path)
    utt2lang = read_table(directory / "utt2lang")
    utt2lang["spkA-p1-zh"] = "fr"
    write_table(directory / "utt2lang", utt2lang)
    with pytest.raises(DataError, match=r"unsupported languages \['fr'\]"):
        validate_datadir(directory, check_audio=False)


def test_empty_transcript_names_file_and_utterance(tmp_path: Path) -> None:
    directory = make_datadir(tmp_path)
    text = (directory / "text").read_text(encoding="utf-8").replace("Good morning.", "   ")
    (directory / "text").write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=r"text:3: key 'spkB-p2-en' has no value"):
        validate_datadir(directory, check_audio=False)


def test_missing_wav(tmp_path: Path) -> None:
    directory = make_datadir(tmp_path)
    (tmp_path / "wav" / "spkA-p1-zh.wav").unlink()
    with pytest.raises(DataError, match=r"spkA-p1-zh: Audio file .*spkA-p1-zh.wav does not exist"):
        validate_datadir(directory)
    validate_datadir(directory, check_audio=False)  # the tables themselves are fine


def test_wrong_sample_rate(tmp_path: Path) -> None:
    directory = make_datadir(tmp_path, rate=22050)
    validate_datadir(directory)  # no rate asked for: fine
    with pytest.raises(DataError, match=r"is at 22050 Hz, expected 16000 Hz"):
        validate_datadir(directory, sample_rate=16000)


def test_corrupt_wav(tmp_path: Path) -> None:
    directory = make_datadir(tmp_path)
    (tmp_path / "wav" / "spkB-p2-en.wav").write_bytes(b"RIFF not really a wav")
    with pytest.raises(DataError, match=r"spkB-p2-en: Cannot read audio"):
        validate_datadir(directory)


def test_duplicate_key(tmp_path: Path) -> None:
    directory = make_datadir(tmp_path)
    with (directory / "utt2lang").open("a", encoding="utf-8") as handle:
        handle.write("spkB-p2-en en\n")
    with pytest.raises(DataError, match=r"utt2lang:4: duplicate key 'spkB-p2-en'"):
        validate_datadir(directory, check_audio=False)
