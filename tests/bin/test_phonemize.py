"""Stage 2 (speechkit.bin.phonemize) on a tiny data dir made in the test."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from speechkit.bin import phonemize
from speechkit.data.datadir import DataDir, read_table
from speechkit.errors import TextError
from speechkit.text.phone_table import PhoneTable

TEXTS = {
    "train": {
        "spk1-en-001": ("en", "Hello, world!"),
        "spk1-zh-001": ("zh", "你好，世界！"),
        "spk2-zh-002": ("zh", "我今天用 iPhone 15 打电话。"),
    },
    "dev": {"spk3-en-001": ("en", "I read 3 books in 1998."), "spk3-zh-001": ("zh", "一九九八年。")},
}
CONFIG = "frontend:\n  name: multilingual\n  languages:\n    en: {name: g2p_en}\n    zh: {name: pypinyin}\n"


@pytest.fixture(scope="module", autouse=True)
def nltk_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("nltk_data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NLTK_DATA", str(folder))
        yield folder


def make_data(root: Path, texts: dict[str, dict[str, tuple[str, str]]]) -> Path:
    for name, utts in texts.items():
        DataDir(
            root / name,
            wav_scp={utt: f"/nonexistent/{utt}.wav" for utt in utts},  # stage 2 reads no audio
            text={utt: text for utt, (_, text) in utts.items()},
            utt2spk={utt: utt.split("-")[0] for utt in utts},
            utt2lang={utt: lang for utt, (lang, _) in utts.items()},
        ).save()
    return root


@pytest.fixture
def recipe(tmp_path: Path) -> tuple[list[str], Path, Path]:
    data = make_data(tmp_path / "data", TEXTS)
    (tmp_path / "conf.yaml").write_text(CONFIG)
    argv = ["--config", str(tmp_path / "conf.yaml"), "--data", str(data), "--dump", str(tmp_path / "dump"),
            "--sets", "train", "dev"]
    return argv, data, tmp_path / "dump"


def test_stage_writes_phones_and_tokens_and_is_idempotent(recipe) -> None:
    argv, data, dump = recipe
    assert phonemize.main(argv) == 0
    phones = read_table(data / "train" / "phones")
    assert phones["spk1-zh-001"] == "zh:n zh:i2 zh:h zh:ao3 <sp> zh:sh zh:iii4 zh:j zh:ie4 <sil>"
    assert phones["spk1-en-001"] == "en:HH en:AH0 en:L en:OW1 <sp> en:W en:ER1 en:L en:D <sil>"
    assert "en:F en:IH0 en:F en:T en:IY1 en:N" in phones["spk2-zh-002"]  # "15" read in English
    dev = read_table(data / "dev" / "phones")
    assert dev["spk3-zh-001"].startswith("zh:i1 zh:j zh:iou2")
    table = PhoneTable.load(dump / "tokens.txt")
    assert "zh:ang4" in table and "en:ZH" in table  # full inventories, not only what train used
    assert not table.unknown(tok for line in dev.values() for tok in line.split())
    marker = json.loads((data / "train" / ".done.phones").read_text())
    assert marker["utterances"] == 3
    stamp = (data / "train" / "phones").stat().st_mtime_ns
    assert phonemize.main(argv) == 0  # finished: nothing is redone
    assert (data / "train" / "phones").stat().st_mtime_ns == stamp


def test_changed_text_is_redone(recipe) -> None:
    argv, data, _ = recipe
    phonemize.main(argv)
    text = data / "dev" / "text"
    text.write_text(text.read_text().replace("一九九八年。", "你好。"))
    phonemize.main(argv)
    assert read_table(data / "dev" / "phones")["spk3-zh-001"] == "zh:n zh:i2 zh:h zh:ao3 <sil>"


def test_bad_utterances_are_reported_by_id(tmp_path: Path) -> None:
    texts = {"train": {"spk1-en-001": ("en", "Fine."), "spk1-en-002": ("en", "..."), "spk1-zh-003": ("zh", "，。")}}
    data = make_data(tmp_path / "data", texts)
    (tmp_path / "conf.yaml").write_text(CONFIG)
    with pytest.raises(TextError) as caught:
        phonemize.main(["--config", str(tmp_path / "conf.yaml"), "--data", str(data),
                        "--dump", str(tmp_path / "dump"), "--sets", "train"])
    message = str(caught.value)
    assert "2 of 3 utterances" in message and "spk1-en-002" in message and "spk1-zh-003" in message
    assert not (data / "train" / "phones").exists() and not (data / "train" / ".done.phones").exists()


def test_run_main_turns_errors_into_exit_code_2(tmp_path: Path) -> None:
    (tmp_path / "conf.yaml").write_text(CONFIG)
    argv = ["--config", str(tmp_path / "conf.yaml"), "--data", str(tmp_path / "none"), "--dump", str(tmp_path)]
    assert phonemize.run_main(phonemize.main, argv) == 2
