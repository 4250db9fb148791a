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


def _lm_batch(num_phones: int, codebook_size: int, num_languages: int, seed: int) -> dict[str, Any]:
    """A tiny right-padded batch of 3 items with different lengths (phones, codes, languages)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    phone_lens, code_lens = torch.tensor([6, 3, 5]), torch.tensor([8, 5, 2])
    phones = torch.randint(1, num_phones, (3, 6), generator=generator)
    phone_langs = torch.randint(0, num_languages, (3, 6), generator=generator)
    codes = torch.randint(0, codebook_size, (3, 8), generator=generator)
    code_langs = torch.randint(0, num_languages, (3,), generator=generator)
    return {"phones": phones, "phone_lens": phone_lens, "phone_langs": phone_langs, "codes": codes,
            "code_lens": code_lens, "code_langs": code_langs}


def check_ar_lm(model: Any, *, num_phones: int, codebook_size: int, num_languages: int) -> None:
    """Contract of an :class:`~speechkit.interfaces.ARLanguageModel` (an ``nn.Module``).

    Checks the training step (finite scalar loss with gradients, ``accuracy``, logits of at
    least ``[B, T+1, K+1]``), causality (a changed future code never changes an earlier logit),
    padding invariance, and generation: codes in ``[0, K)``, greedy determinism, and batched
    greedy output equal to one-at-a-time output with valid stop reasons.
    """
    import torch

    _check_spec_roundtrip("ar_lm", model)
    was_training = model.training
    batch = _lm_batch(num_phones, codebook_size, num_languages, seed=0)
    model.train()
    out = model(batch)
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"]), "loss must be a finite scalar"
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters()), "loss has no gradient"
    model.zero_grad(set_to_none=True)
    assert "accuracy" in out and 0.0 <= float(out["accuracy"]) <= 1.0, "forward must report accuracy in [0, 1]"
    model.eval()
    try:
        with torch.no_grad():
            logits = model(batch)["logits"]
            assert logits.dim() == 3 and logits.shape[0] == 3 and logits.shape[1] >= 9, f"logits {tuple(logits.shape)}"
            assert logits.shape[2] == codebook_size + 1, "logits need K+1 classes (the last is end-of-sentence)"
            changed = {**batch, "codes": batch["codes"].clone()}
            changed["codes"][0, 4] = (changed["codes"][0, 4] + 1) % codebook_size
            after = model(changed)["logits"]
            assert torch.allclose(after[0, :5], logits[0, :5], atol=1e-5), "a future code changed an earlier logit"
            assert not torch.allclose(after[0, 5:9], logits[0, 5:9]), "later logits ignore the code before them"
            single = {key: value[1:2] for key, value in batch.items()}
            single["phones"], single["phone_langs"] = batch["phones"][1:2, :3], batch["phone_langs"][1:2, :3]
            single["codes"] = batch["codes"][1:2, :5]
            alone = model(single)["logits"][0, :6]
            assert torch.allclose(alone, logits[1, :6], atol=1e-4), "padding changed the logits of a shorter item"
            phones, phone_lens, phone_langs = batch["phones"], batch["phone_lens"], batch["phone_langs"]
            prompts, prompt_lens, langs = batch["codes"], batch["code_lens"], batch["code_langs"]
            result = model.generate_batch(phones, phone_lens, phone_langs, prompts, prompt_lens, langs, temperature=0.0,
                                         num_target_phones=torch.ones(3, dtype=torch.long))
            assert len(result.codes) == 3 and len(result.stop_reasons) == 3
            assert set(result.stop_reasons) <= {"eos", "max_length", "loop"}, f"unknown stop reasons {result.stop_reasons}"
            for row in range(3):
                p, t = int(phone_lens[row]), int(prompt_lens[row])
                one = model.generate(phones[row, :p], phone_langs[row, :p], prompts[row, :t], int(langs[row]),
                                     temperature=0.0, num_target_phones=1)
                assert one.dtype == torch.long and one.dim() == 1, "generate must return LongTensor[T]"
                assert one.numel() == 0 or (int(one.min()) >= 0 and int(one.max()) < codebook_size), "codes out of range"
                assert torch.equal(one, result.codes[row]), f"batched greedy output differs from one-at-a-time (item {row})"
                again = model.generate(phones[row, :p], phone_langs[row, :p], prompts[row, :t], int(langs[row]),
                                       temperature=0.0, num_target_phones=1)
                assert torch.equal(one, again), "greedy generation must be deterministic"
    finally:
        model.train(was_training)


def check_nar_lm(model: Any, *, num_phones: int, codebook_size: int, num_quantizers: int, num_languages: int) -> None:
    """Contract of a :class:`~speechkit.interfaces.NARLanguageModel` (an ``nn.Module``).

    Checks the training step at a fixed and a random level (finite loss with gradients, logits
    ``[B, T, K]``, the level used in 2..L), padding invariance, and greedy generation: shape
    ``[L, T]``, level 1 kept, codes in range, determinism, batched equal to one at a time.
    """
    import torch

    _check_spec_roundtrip("nar_lm", model)
    levels = num_quantizers
    was_training = model.training
    base = _lm_batch(num_phones, codebook_size, num_languages, seed=1)
    generator = torch.Generator().manual_seed(2)
    batch = {key: base[key] for key in ("phones", "phone_lens", "phone_langs", "code_lens")}
    batch["codes"] = torch.randint(0, codebook_size, (3, levels, 8), generator=generator)
    batch["prompt_codes"] = torch.randint(0, codebook_size, (3, levels, 4), generator=generator)
    batch["prompt_lens"] = torch.tensor([4, 2, 3])
    model.train()
    out = model({**batch, "level": levels})
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"]), "loss must be a finite scalar"
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters()), "loss has no gradient"
    model.zero_grad(set_to_none=True)
    assert out["logits"].shape == (3, 8, codebook_size), f"logits must be [B, T, K], got {tuple(out['logits'].shape)}"
    random_level = int(model(batch)["level"])
    assert 2 <= random_level <= levels, f"the random training level {random_level} is outside 2..{levels}"
    model.eval()
    try:
        with torch.no_grad():
            logits = model({**batch, "level": 2})["logits"]
            single = {
                "phones": batch["phones"][1:2, :3], "phone_lens": batch["phone_lens"][1:2],
                "phone_langs": batch["phone_langs"][1:2, :3], "prompt_codes": batch["prompt_codes"][1:2, :, :2],
                "prompt_lens": batch["prompt_lens"][1:2], "codes": batch["codes"][1:2, :, :5],
                "code_lens": batch["code_lens"][1:2], "level": 2,
            }
            alone = model(single)["logits"][0]
            assert torch.allclose(alone, logits[1, :5], atol=1e-4), "padding changed the logits of a shorter item"
            args = (batch["phones"], batch["phone_lens"], batch["phone_langs"], batch["prompt_codes"], batch["prompt_lens"])
            generated = model.generate_batch(*args, batch["codes"][:, 0], batch["code_lens"])
            assert generated.shape == (3, levels, 8) and generated.dtype == torch.long
            for row in range(3):
                p, tp, t = int(batch["phone_lens"][row]), int(batch["prompt_lens"][row]), int(batch["code_lens"][row])
                level1 = batch["codes"][row, 0, :t]
                one = model.generate(batch["phones"][row, :p], batch["phone_langs"][row, :p], batch["prompt_codes"][row, :, :tp], level1)
                assert one.shape == (levels, t), f"generate must return [L, T] = {(levels, t)}, got {tuple(one.shape)}"
                assert torch.equal(one[0], level1), "generate must keep the given level-1 codes"
                assert int(one.min()) >= 0 and int(one.max()) < codebook_size, "codes out of range"
                assert torch.equal(one, generated[row, :, :t]), f"batched output differs from one at a time (item {row})"
                again = model.generate(batch["phones"][row, :p], batch["phone_langs"][row, :p], batch["prompt_codes"][row, :, :tp], level1)
                assert torch.equal(one, again), "NAR generation must be deterministic"
    finally:
        model.train(was_training)


def check_st_frontend(model: Any, *, sample_rate: int = 16000, target_langs: Sequence[str] = ("en", "zh")) -> None:
    """Contract of an :class:`~speechkit.interfaces.STFrontend` (built with its phone table).

    Checks that ``recognize`` and ``translate`` (into each of ``target_langs``) return lists of
    :class:`Phone` deterministically, that a multi-channel waveform is refused with an
    ``AudioError``, and, where the component offers them, that ``recognize_batch`` /
    ``translate_batch`` equal one-at-a-time results and ``ctc_align`` durations sum to the frames.
    """
    import torch

    from speechkit.errors import AudioError

    _check_spec_roundtrip("st_frontend", model)
    wavs = [make_test_signal(sample_rate, seconds, seed) for seconds, seed in ((1.0, 0), (0.6, 1))]
    recognized = model.recognize(wavs[0], sample_rate)
    assert isinstance(recognized, list) and all(isinstance(p, Phone) for p in recognized), "recognize must return list[Phone]"
    assert model.recognize(wavs[0], sample_rate) == recognized, "recognize must be deterministic"
    translations = {}
    for lang in target_langs:
        translations[lang] = model.translate(wavs[0], sample_rate, lang)
        assert all(isinstance(p, Phone) for p in translations[lang]), "translate must return list[Phone]"
        assert model.translate(wavs[0], sample_rate, lang) == translations[lang], "translate must be deterministic"
    _expect_error(AudioError, lambda: model.recognize(torch.stack([wavs[0], wavs[0]]), sample_rate), "recognize(stereo)")
    if hasattr(model, "recognize_batch"):
        batched = model.recognize_batch(wavs, sample_rate)
        assert batched[0] == recognized, "recognize_batch differs from recognize (padding leaks into results)"
        assert batched[1] == model.recognize(wavs[1], sample_rate), "recognize_batch differs from recognize"
    if hasattr(model, "translate_batch"):
        lang = target_langs[0]
        batched = model.translate_batch(wavs, sample_rate, lang)
        assert batched[0] == translations[lang], "translate_batch differs from translate (padding leaks into results)"
        assert batched[1] == model.translate(wavs[1], sample_rate, lang), "translate_batch differs from translate"
    if hasattr(model, "ctc_align") and recognized:
        features = model.featurize(wavs[0], sample_rate)
        durations = model.ctc_align(features, model.phones_to_ids(recognized[:3]))
        assert durations.shape == (min(3, len(recognized)),), "ctc_align must return one duration per phone"
        assert int(durations.sum()) == features.shape[0], "ctc_align durations must sum to the number of frames"


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
    "ar_lm": check_ar_lm,
    "nar_lm": check_nar_lm,
    "st_frontend": check_st_frontend,
}


def check_component(kind: str, component: Any, **kwargs: Any) -> None:
    """Run the contract check of ``kind`` on ``component`` (see the ``check_<kind>`` functions)."""
    if kind not in CHECKS:
        raise KeyError(f"no contract check for kind {kind!r} yet; available: {', '.join(CHECKS)}")
    CHECKS[kind](component, **kwargs)
