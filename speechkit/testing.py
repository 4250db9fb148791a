"""Contract checks a component author runs on their own component (built-in or plugin).

Each ``check_<kind>`` exercises the interface of that kind on tiny inputs and raises
``AssertionError`` with a message that says which promise is broken. Use them in a test::

    from speechkit.registry import build
    from speechkit.testing import check_codec

    def test_my_codec_contract(tmp_path):
        codec = build("codec", {"name": "mycodec"})
        check_codec(codec, work_dir=tmp_path)

``check_component(kind, component, ...)`` dispatches by kind.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, Sequence

from speechkit.errors import SpeechkitError, TextError
from speechkit.interfaces import Codec, Frontend, Phone, Scorer, ScoreItem, Vocoder


def make_test_signal(sample_rate: int, seconds: float = 1.0, seed: int = 0) -> Any:
    """A speech-like test waveform: FloatTensor[S], a gliding harmonic tone with noise bursts."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(int(sample_rate * seconds), dtype=torch.float32) / sample_rate
    f0 = 120.0 + 60.0 * torch.sin(2 * math.pi * 1.5 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / sample_rate
    voiced = sum(torch.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * torch.sin(2 * math.pi * 3.0 * t).clamp(min=0)
    noise = 0.05 * torch.randn(t.shape, generator=generator)
    wav = 0.3 * envelope * voiced + noise * (envelope < 0.6)
    return (wav / wav.abs().max() * 0.8).float()


def _check_spec_roundtrip(kind: str, component: Any) -> None:
    from speechkit.registry import registry

    name = component.registered_name
    assert name, f"{type(component).__name__} has no registered_name: register it with @{kind.upper()}.register(...)"
    assert registry(kind).get(name) is type(component), f"{kind} {name!r} does not resolve to {type(component)}"
    assert dataclasses.is_dataclass(component.config), f"{kind} {name!r}: .config must be its Config dataclass"
    spec = component.spec()
    assert spec["name"] == name


def check_codec(codec: Codec, *, work_dir: Path | None = None, fit_wavs: Sequence[Any] = ()) -> None:
    """Contract of a :class:`~speechkit.interfaces.Codec`.

    Checks properties, ``encode`` shape/dtype/range and frame rate, ``decode`` length, decoding
    with fewer levels, determinism, and for trainable codecs save/load equality (``fit_wavs``
    are used to fit it first if it is not fitted yet; ``work_dir`` is needed for save/load).
    """
    import torch

    _check_spec_roundtrip("codec", codec)
    rate, frame_rate = codec.sample_rate, codec.frame_rate
    levels, size = codec.num_quantizers, codec.codebook_size
    assert isinstance(rate, int) and rate > 0, f"sample_rate must be a positive int, got {rate!r}"
    assert frame_rate > 0 and levels >= 1 and size >= 2, "frame_rate, num_quantizers, codebook_size must be positive"
    if codec.trainable and not getattr(codec, "is_fitted", True):
        assert fit_wavs, "trainable codec is not fitted: pass fit_wavs to check_codec"
        codec.fit(list(fit_wavs), work_dir)
    wav = make_test_signal(rate, seconds=1.0)
    codes = codec.encode(wav)
    assert isinstance(codes, torch.Tensor) and codes.dtype == torch.long, "encode must return a LongTensor"
    assert codes.dim() == 2 and codes.shape[0] == levels, f"encode must give [L={levels}, T], got {tuple(codes.shape)}"
    expected_frames = len(wav) / rate * frame_rate
    assert abs(codes.shape[1] - expected_frames) <= max(2, 0.05 * expected_frames), (
        f"encode gave {codes.shape[1]} frames for 1 s, frame_rate says {frame_rate}"
    )
    assert int(codes.min()) >= 0 and int(codes.max()) < size, "codes must lie in [0, codebook_size)"
    assert torch.equal(codes, codec.encode(wav)), "encode must be deterministic"
    out = codec.decode(codes)
    assert out.dim() == 1 and out.dtype == torch.float32, "decode must return FloatTensor[S]"
    assert abs(len(out) - len(wav)) <= 2 * rate / frame_rate + 1, f"decode length {len(out)} vs input {len(wav)}"
    assert torch.isfinite(out).all(), "decode produced NaN/inf"
    assert codec.decode(codes[:1]).dim() == 1, "decode must accept fewer levels (codes[:1])"
    if codec.trainable and work_dir is not None:
        target = Path(work_dir) / "codec_contract"
        codec.save(target)
        clone = type(codec)(codec.config)
        clone.load(target)
        assert torch.equal(clone.encode(wav), codes), "a saved and loaded codec must give the same codes"


def check_vocoder(vocoder: Vocoder, *, num_features: int, hop_length: int, frames: int = 50) -> None:
    """Contract of a :class:`~speechkit.interfaces.Vocoder` (fitted already if trainable)."""
    import torch

    _check_spec_roundtrip("vocoder", vocoder)
    features = torch.randn(frames, num_features, generator=torch.Generator().manual_seed(0)) * 0.5
    wav = vocoder.synthesize(features)
    assert wav.dim() == 1 and wav.dtype == torch.float32, "synthesize must return FloatTensor[S]"
    assert abs(len(wav) - frames * hop_length) <= 2 * hop_length, f"{len(wav)} samples for {frames} frames"
    assert torch.isfinite(wav).all(), "synthesize produced NaN/inf"


def check_frontend(frontend: Frontend, samples: dict[str, str]) -> None:
    """Contract of a :class:`~speechkit.interfaces.Frontend`.

    ``samples`` maps each language to a short sentence in it. Checks that phonemize returns
    :class:`Phone` objects tagged with that language (or boundaries), that tokens round-trip,
    that output is deterministic, and that empty text raises :class:`TextError`.
    """
    _check_spec_roundtrip("frontend", frontend)
    assert set(samples) <= set(frontend.languages), "samples must be in the frontend's languages"
    for lang, text in samples.items():
        assert isinstance(frontend.normalize(text, lang), str)
        phones = frontend.phonemize(text, lang)
        assert phones and all(isinstance(p, Phone) for p in phones), f"phonemize({text!r}) must give Phones"
        assert any(p.lang == lang for p in phones), f"no phone tagged {lang!r} in {phones}"
        assert all(p.lang in (lang, "-") for p in phones), f"unexpected languages in {phones}"
        assert all(Phone.from_token(p.token) == p for p in phones), "Phone.token must round-trip"
        assert phones == frontend.phonemize(text, lang), "phonemize must be deterministic"
        for empty in ("", "   ", "!!!"):
            _expect_error(TextError, lambda: frontend.phonemize(empty, lang), f"phonemize({empty!r}, {lang!r})")


def check_scorer(scorer: Scorer, items: Sequence[ScoreItem]) -> None:
    """Contract of a :class:`~speechkit.interfaces.Scorer` on caller-provided ``items``."""
    _check_spec_roundtrip("scorer", scorer)
    metrics = list(scorer.metrics)
    assert metrics, "a scorer must name its metrics"
    scores = scorer.score(items)
    assert len(scores) == len(items), "score must return one dict per item"
    for score in scores:
        assert set(metrics) <= set(score), f"score lacks metrics {set(metrics) - set(score)}"
        assert all(isinstance(score[m], float) and math.isfinite(score[m]) for m in metrics)
    summary = scorer.summarize(items, scores)
    assert set(metrics) <= set(summary), "summarize must report every metric"


def _expect_error(error: type[Exception], call: Callable[[], Any], what: str) -> None:
    try:
        call()
    except error:
        return
    except SpeechkitError as other:
        raise AssertionError(f"{what} raised {type(other).__name__}, expected {error.__name__}") from other
    raise AssertionError(f"{what} should raise {error.__name__}")


CHECKS: dict[str, Callable[..., None]] = {
    "codec": check_codec,
    "vocoder": check_vocoder,
    "frontend": check_frontend,
    "scorer": check_scorer,
}


def check_component(kind: str, component: Any, **kwargs: Any) -> None:
    """Run the contract check of ``kind`` on ``component`` (see the ``check_<kind>`` functions)."""
    if kind not in CHECKS:
        raise KeyError(f"no contract check for kind {kind!r} yet; available: {', '.join(CHECKS)}")
    CHECKS[kind](component, **kwargs)
