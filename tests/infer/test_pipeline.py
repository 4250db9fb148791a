"""VallexPipeline on tiny random weights: shapes, batching, languages, accent, long text, S2ST, errors."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from speechkit.errors import AudioError, ConfigError, DataError, TextError
from speechkit.infer import SynthesisOptions, VallexPipeline, VoicePrompt, assemble_pipeline_pack
from speechkit.infer.precision import int8_streams_vectorized
from speechkit.infer.tiny import synthetic_voice
from speechkit.text.languages import language_id, token_language_ids

TEXTS = ["Yesterday was Sunday.", "Good.", "我很好。", "She is a young teacher, and she likes tea."]


def test_synthesize_returns_one_waveform_per_text(pipeline: VallexPipeline, zh_prompt: VoicePrompt) -> None:
    wavs = pipeline.synthesize(TEXTS[:2], zh_prompt)
    assert len(wavs) == 2
    for wav in wavs:
        assert wav.dtype == np.float32 and wav.ndim == 1 and wav.size > 0 and np.all(np.isfinite(wav))
    assert pipeline.sample_rate == 16000


def test_batched_greedy_equals_one_at_a_time(pipeline: VallexPipeline, zh_prompt: VoicePrompt) -> None:
    en_prompt = pipeline.make_voice_prompt(synthetic_voice(0.7, 200, seed=3).numpy(), 16000, "Hello.")
    requests = [pipeline.text_request(text, prompt) for text in TEXTS for prompt in (zh_prompt, en_prompt)]
    batched = pipeline.generate(requests, batch_size=8)
    single = [pipeline.generate([request], batch_size=1)[0] for request in requests]
    assert len({tuple(result.codes.shape) for result in batched}) > 1  # padding was exercised
    for one, many in zip(single, batched):
        assert torch.equal(one.codes, many.codes) and one.stop_reason == many.stop_reason
        assert np.allclose(one.wav, many.wav, atol=1e-5)


def test_language_is_detected_and_code_switching_keeps_both(pipeline: VallexPipeline) -> None:
    assert pipeline.phonemize("Yesterday was Sunday.")[1] == "en"
    assert pipeline.phonemize("昨天是星期日。")[1] == "zh"
    tokens, lang = pipeline.phonemize("我今天用 iPhone 打电话")
    assert lang == "zh" and {token.split(":")[0] for token in tokens} >= {"zh", "en"}


def spy_target_langs(pipeline: VallexPipeline, monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    seen: list[list[int]] = []
    original = pipeline.ar_lm.generate_batch

    def spy(*args, **kwargs):
        seen.append(args[5].tolist())
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline.ar_lm, "generate_batch", spy)
    return seen


def test_accent_overrides_the_language_id_given_to_the_ar(pipeline: VallexPipeline, zh_prompt: VoicePrompt,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    seen = spy_target_langs(pipeline, monkeypatch)
    pipeline.synthesize("Good morning.", zh_prompt)
    pipeline.synthesize("Good morning.", zh_prompt, accent="zh")
    assert seen == [[language_id("en")], [language_id("zh")]]


def test_long_text_is_split_batched_and_joined_with_pauses(pipeline: VallexPipeline, zh_prompt: VoicePrompt,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    seen = spy_target_langs(pipeline, monkeypatch)
    sentences = ["Yesterday was Sunday.", "我很好。", "Good."]
    [joined] = pipeline.synthesize(" ".join(sentences), zh_prompt, batch_size=8)
    assert len(seen) == 1 and sorted(seen[0]) == [1, 1, 2]  # one batch, per-sentence language IDs
    parts = [pipeline.synthesize(sentence, zh_prompt)[0] for sentence in sentences]
    pause = int(pipeline.options.sentence_pause_ms * pipeline.sample_rate / 1000)
    assert joined.shape == (sum(part.size for part in parts) + 2 * pause,)
    assert np.allclose(joined[: parts[0].size], parts[0], atol=1e-5)
    assert np.all(joined[parts[0].size : parts[0].size + pause] == 0)


def test_sampling_is_seeded(pipeline: VallexPipeline, zh_prompt: VoicePrompt) -> None:
    first = pipeline.synthesize(TEXTS[0], zh_prompt, temperature=1.0, seed=5)[0]
    again = pipeline.synthesize(TEXTS[0], zh_prompt, temperature=1.0, seed=5)[0]
    assert np.array_equal(first, again)


def test_clear_errors_for_bad_text_audio_and_languages(pipeline: VallexPipeline, zh_prompt: VoicePrompt,
                                                       prompt_wav: np.ndarray) -> None:
    with pytest.raises(TextError, match="empty"):
        pipeline.synthesize(["Hello.", "  "], zh_prompt)
    with pytest.raises(TextError, match="Empty"):
        pipeline.make_voice_prompt(prompt_wav, 16000, "")
    with pytest.raises(TextError, match="No text"):
        pipeline.synthesize([], zh_prompt)
    with pytest.raises(ConfigError, match="'fr'"):
        pipeline.synthesize("Bonjour.", zh_prompt, lang="fr")
    with pytest.raises(ConfigError, match="accent 'de'"):
        pipeline.synthesize("Hello.", zh_prompt, accent="de")
    with pytest.raises(AudioError, match="mono"):
        pipeline.make_voice_prompt(np.stack([prompt_wav, prompt_wav]), 16000, "你好")
    with pytest.raises(AudioError, match="silent"):
        pipeline.make_voice_prompt(np.zeros(16000, dtype=np.float32), 16000, "你好")
    with pytest.raises(AudioError, match="NaN"):
        pipeline.make_voice_prompt(np.full(16000, np.nan, dtype=np.float32), 16000, "你好")
    with pytest.raises(AudioError, match="at least"):
        pipeline.make_voice_prompt(prompt_wav[:800], 16000, "你好")
    with pytest.raises(AudioError, match="sample_rate"):
        pipeline.make_voice_prompt(prompt_wav, 0, "你好")


def test_long_prompts_are_cropped(pipeline: VallexPipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline.options, "max_prompt_seconds", 0.5)
    prompt = pipeline.make_voice_prompt(synthetic_voice(1.5, 120).numpy(), 16000, "你好")
    assert abs(prompt.seconds - 0.5) < 0.05


def test_s2st_with_the_st_frontend_and_with_oracle_text(pipeline: VallexPipeline, prompt_wav: np.ndarray) -> None:
    request, info = pipeline.speech_request(prompt_wav, 16000, "en")
    assert info["target_lang"] == "en" and not info["oracle"]
    assert request.lid == "en" and request.phones == info["target_phones"]
    assert request.prompt.phones == (info["source_phones"] or ["<sil>"])
    wav, info = pipeline.s2st(prompt_wav, 16000, "en")
    assert wav.ndim == 1 and info["stop_reason"] in ("eos", "max_length", "loop", "empty")
    wav, info = pipeline.s2st(prompt_wav, 16000, source_text="昨天是星期日。", target_text="Yesterday was Sunday.")
    assert info["oracle"] and (info["source_lang"], info["target_lang"]) == ("zh", "en")
    assert info["target_phones"] == pipeline.phonemize("Yesterday was Sunday.", "en")[0]
    with pytest.raises(TextError, match="both"):
        pipeline.s2st(prompt_wav, 16000, source_text="你好")


def test_pipeline_without_st_and_mismatched_parts(pipeline: VallexPipeline, tiny_pack: Path, tmp_path: Path,
                                                  prompt_wav: np.ndarray) -> None:
    no_st = VallexPipeline(pipeline.frontend, pipeline.phone_table, pipeline.codec, pipeline.ar_lm, pipeline.nar_lm)
    with pytest.raises(ConfigError, match="no st_frontend"):
        no_st.s2st(prompt_wav, 16000, "en")
    assert no_st.s2st(prompt_wav, 16000, source_text="你好。", target_text="Hello.")[1]["oracle"]
    parts = tiny_pack.parent / "parts"
    short_table = tmp_path / "tokens.txt"
    short_table.write_text("".join(line + "\n" for line in (parts / "tokens.txt").read_text().splitlines()[:-1]))
    with pytest.raises(ConfigError, match="num_phones"):
        assemble_pipeline_pack(tmp_path / "bad", parts / "codec", parts / "ar_pack", parts / "nar_pack", None,
                               {"name": "multilingual"}, short_table)


@pytest.mark.parametrize("ar_name", ["valle_ar", "aligned_ar"])
def test_the_ar_gets_the_target_phone_count_so_it_starts_on_the_target_text(
    pipeline: VallexPipeline, zh_prompt: VoicePrompt, monkeypatch: pytest.MonkeyPatch, ar_name: str
) -> None:
    from speechkit.registry import build

    if ar_name != "valle_ar":
        source = pipeline.ar_lm
        torch.manual_seed(0)
        model = build("ar_lm", {"name": ar_name, "d_model": 32, "num_heads": 2, "num_layers": 1, "ffn_dim": 64,
                                "max_frames": 40, "max_frames_per_phone": 2.0, "max_frames_margin": 4},
                      num_phones=source.num_phones, codebook_size=source.codebook_size,
                      num_languages=source.num_languages).eval()
        monkeypatch.setattr(pipeline, "ar_lm", model)
    calls: list[tuple[tuple, dict, object]] = []
    original = pipeline.ar_lm.generate_batch

    def spy(*args, **kwargs):
        generation = original(*args, **kwargs)
        calls.append((args, kwargs, generation))
        return generation

    monkeypatch.setattr(pipeline.ar_lm, "generate_batch", spy)
    requests = [pipeline.text_request(text, zh_prompt) for text in ("Good.", "She is a young teacher.")]
    pipeline.generate(requests, batch_size=2)
    [(args, kwargs, generation)] = calls
    phones, phone_lens = args[0], args[1]
    by_length = sorted(requests, key=lambda r: -len(r.phones))  # the engine decodes the longest first
    assert kwargs["num_target_phones"].tolist() == [len(r.phones) for r in by_length]
    for row, request in enumerate(by_length):
        start, end = int(phone_lens[row]) - len(request.phones), int(phone_lens[row])
        assert start == len(zh_prompt.phones)
        assert phones[row, start:end].tolist() == pipeline.phone_table.encode(request.phones)
        if generation.frame_phones is not None:  # aligned_ar: indices among the target phones
            frame_phones = generation.frame_phones[row]
            assert frame_phones.numel() > 0 and int(frame_phones[0]) == 0
            assert int(frame_phones.min()) >= 0 and int(frame_phones.max()) < len(request.phones)


def test_a_feature_predicting_nar_feeds_the_vocoder_directly(tmp_path: Path) -> None:
    from speechkit.infer.tiny import NAR_SPEC, build_tiny_pipeline_pack

    spec = {**NAR_SPEC, "name": "continuous_nar", "feature_dim": 40}
    continuous = VallexPipeline.load(build_tiny_pipeline_pack(tmp_path, with_st=False, nar_spec=spec),
                                     SynthesisOptions(temperature=0.0))
    assert continuous.decodes_features
    prompt = continuous.make_voice_prompt(synthetic_voice(1.0, 140, seed=7).numpy(), 16000, "昨天是星期日。")
    requests = [continuous.text_request(text, prompt) for text in TEXTS[:3]]
    batched = continuous.generate(requests, batch_size=3)
    for result in batched:
        phones = torch.tensor(continuous.phone_table.encode(result.request.phones))
        langs = torch.tensor(token_language_ids(result.request.phones))
        level1 = result.codes[0]
        features = continuous.nar_lm.generate_features_batch(
            phones[None], torch.tensor([len(phones)]), langs[None], prompt.codes[None],
            torch.tensor([prompt.num_frames]), level1[None], torch.tensor([len(level1)]))[0]
        expected = continuous.codec.features_to_wav(features).numpy()
        assert np.allclose(result.wav, expected, atol=1e-4), "the wav is the vocoded NAR features, not the codes"
        assert torch.equal(result.codes, continuous.nar_lm.requantize(features[None], level1[None])[0])
    single = [continuous.generate([request], batch_size=1)[0] for request in requests]
    for one, many in zip(single, batched):
        assert torch.equal(one.codes, many.codes) and np.allclose(one.wav, many.wav, atol=1e-4)
    # a phone-synchronous AR's frame alignment reaches the NAR
    seen: list[torch.Tensor] = []
    ar_generate, nar_features = continuous.ar_lm.generate_batch, continuous.nar_lm.generate_features_batch

    def aligned_generate(*args, **kwargs):
        generation = ar_generate(*args, **kwargs)
        generation.frame_phones = [torch.zeros_like(codes) for codes in generation.codes]
        return generation

    def recording_features(*args, frame_phones=None):
        seen.append(frame_phones)
        return nar_features(*args, frame_phones=frame_phones)

    continuous.ar_lm.generate_batch, continuous.nar_lm.generate_features_batch = aligned_generate, recording_features
    [aligned] = continuous.generate(requests[:1])
    assert seen and seen[0] is not None and seen[0].shape == (1, aligned.codes.shape[1]) and int(seen[0].max()) == 0
    # complete_level1 (the nar_oracle path): the same NAR + vocoder on given codes and alignment
    [completed] = continuous.complete_level1(requests[:1], [aligned.codes[0]], [seen[0][0]])
    assert completed.stop_reason == "oracle" and torch.equal(completed.codes, aligned.codes)
    assert np.allclose(completed.wav, aligned.wav, atol=1e-4)
    with pytest.raises(DataError, match="frame_phones"):
        continuous.complete_level1(requests[:1], [aligned.codes[0]], [seen[0][0] + len(requests[0].phones)])
    with pytest.raises(DataError, match="one level-1 sequence"):
        continuous.complete_level1(requests[:2], [aligned.codes[0]])


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precision_pipelines_run_and_batch(tiny_pack: Path, zh_prompt: VoicePrompt, precision: str) -> None:
    reduced = VallexPipeline.load(tiny_pack, SynthesisOptions(temperature=0.0, precision=precision))
    requests = [reduced.text_request(text, zh_prompt) for text in TEXTS]
    batched = reduced.generate(requests, batch_size=4)
    single = [reduced.generate([request], batch_size=1)[0] for request in requests]
    assert len(batched) == len(requests) and all(np.all(np.isfinite(result.wav)) for result in batched)
    if precision == "bf16":  # weight-only: each row's result does not depend on the others
        assert all(torch.equal(one.codes, many.codes) for one, many in zip(single, batched))
    elif int8_streams_vectorized():  # the AR's fused int8 step quantises each row on its own: level 1 agrees
        assert all(torch.equal(one.codes[0], many.codes[0]) for one, many in zip(single, batched))
    # int8 NAR layers (torch.ao) quantise each call's activations with one scale for the whole
    # batch, so batching may change their near-ties: not asserted (docs/performance.md)


def test_a_device_that_is_not_here_is_a_config_error(tiny_pack: Path) -> None:
    with pytest.raises(ConfigError, match="not a torch device"):
        VallexPipeline.load(tiny_pack, device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            VallexPipeline.load(tiny_pack, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pipeline_on_cuda_batches_and_samples_like_on_the_cpu(tiny_pack: Path, zh_prompt: VoicePrompt,
                                                               prompt_wav: np.ndarray) -> None:
    """The LMs on the GPU (the codec and vocoder stay where they run): batched greedy equals one at
    a time, seeded sampling repeats, S2ST runs, and the codes follow the CPU's greedy ones."""
    cuda = VallexPipeline.load(tiny_pack, SynthesisOptions(temperature=0.0), device="cuda")
    assert cuda.device.type == "cuda"
    requests = [cuda.text_request(text, zh_prompt) for text in TEXTS]
    batched = cuda.generate(requests, batch_size=4)
    single = [cuda.generate([request], batch_size=1)[0] for request in requests]
    for one, many in zip(single, batched):
        assert torch.equal(one.codes, many.codes) and np.all(np.isfinite(many.wav))
    cpu = VallexPipeline.load(tiny_pack, SynthesisOptions(temperature=0.0)).generate(requests, batch_size=4)
    agreement = [float((a.codes[0] == b.codes[0]).float().mean()) for a, b in zip(cpu, batched)
                 if a.codes.shape == b.codes.shape]
    assert agreement and min(agreement) >= 0.9, "the same greedy decoding up to float near-ties"
    sampled = VallexPipeline.load(tiny_pack, SynthesisOptions(temperature=1.0, seed=3), device="cuda")
    first, second = (sampled.generate(requests[:1], batch_size=1)[0] for _ in range(2))
    assert torch.equal(first.codes, second.codes)
    wav, info = cuda.s2st(prompt_wav, 16000, "en")
    assert wav.ndim == 1 and info["stop_reason"] in ("eos", "max_length", "loop", "empty")


def test_compile_option_compiles_the_nar_and_keeps_the_outputs(tiny_pack: Path, zh_prompt: VoicePrompt) -> None:
    from speechkit.infer.compiled import is_compiled

    compiled = VallexPipeline.load(tiny_pack, SynthesisOptions(temperature=0.0, compile=True))
    assert any(is_compiled(module) for module in compiled.nar_lm.modules())
    assert not any(is_compiled(module) for module in compiled.ar_lm.modules())
    eager = VallexPipeline.load(tiny_pack, SynthesisOptions(temperature=0.0))
    request = [eager.text_request(TEXTS[0], zh_prompt)]
    [expected], [got] = eager.generate(request), compiled.generate(request)
    assert torch.equal(got.codes, expected.codes)


def test_ar_decoding_options_are_set_over_the_trained_config(tiny_pack: Path) -> None:
    from speechkit.infer.pipeline import apply_ar_decoding

    pipeline = VallexPipeline.load(tiny_pack, SynthesisOptions(ar_decoding={"repeat_run_limit": 3, "top_p": 0.9}))
    assert pipeline.ar_lm.config.repeat_run_limit == 3 and pipeline.ar_lm.config.top_p == 0.9
    with pytest.raises(ConfigError, match="advance_survival.*not options of ar_lm"):
        apply_ar_decoding(pipeline.ar_lm, {"advance_survival": 0.5})  # valle_ar has no phone pointer


def test_candidates_keep_the_output_the_st_model_scores_best(tiny_pack: Path, zh_prompt: VoicePrompt,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    greedy = VallexPipeline.load(tiny_pack, SynthesisOptions(temperature=0.0))
    options = SynthesisOptions(temperature=0.0, candidates=3, candidate_temperature=1.0)
    pipeline = VallexPipeline.load(tiny_pack, options)
    requests = [pipeline.text_request(text, zh_prompt) for text in TEXTS]
    plain = greedy.generate(requests)
    # the real (random-weight) ST model scores every candidate; the kept one has the best score
    for result in pipeline.generate(requests, batch_size=3):
        scores = result.candidate_scores
        assert scores is not None and len(scores) == 3 and all(isinstance(score, float) for score in scores)
        assert scores[result.candidate] == max(scores)
    # ties keep candidate 0, which is the main (greedy) decoding; an output without audio never wins
    monkeypatch.setattr(pipeline.st_frontend, "phone_log_likelihood", lambda wavs, rate, phones: [0.0] * len(wavs))
    for one, best in zip(plain, pipeline.generate(requests)):
        if one.wav.size:
            assert best.candidate == 0 and torch.equal(one.codes, best.codes)
        else:
            assert best.candidate_scores[0] == -math.inf and best.candidate == best.candidate_scores.index(0.0)
    # a scorer that prefers the longest audio picks it among the candidates
    seen: list[int] = []

    def by_length(wavs: list[torch.Tensor], rate: int, phones: list[list[str]]) -> list[float]:
        assert rate == pipeline.sample_rate and len(phones) == len(wavs)
        seen.extend(wav.numel() for wav in wavs)
        return [float(wav.numel()) for wav in wavs]

    monkeypatch.setattr(pipeline.st_frontend, "phone_log_likelihood", by_length)
    for result in pipeline.generate(requests[:2]):
        assert result.wav.size == max(result.candidate_scores) and result.wav.size in seen
    # only the listed target languages get candidates
    pipeline.options.candidate_languages = ["zh"]
    mixed = pipeline.generate(requests)
    assert [r.candidate_scores is None for r in mixed] == [r.lang != "zh" for r in requests]
    assert torch.equal(mixed[0].codes, plain[0].codes)


def test_candidates_need_an_st_frontend_and_a_positive_count(pipeline: VallexPipeline, zh_prompt: VoicePrompt) -> None:
    options = SynthesisOptions(temperature=0.0, candidates=2)
    no_st = VallexPipeline(pipeline.frontend, pipeline.phone_table, pipeline.codec, pipeline.ar_lm, pipeline.nar_lm,
                           options=options)
    with pytest.raises(ConfigError, match="needs an ST frontend"):
        no_st.synthesize("Good.", zh_prompt)
    with pytest.raises(ConfigError, match="candidates must be >= 1"):
        VallexPipeline(pipeline.frontend, pipeline.phone_table, pipeline.codec, pipeline.ar_lm, pipeline.nar_lm,
                       options=SynthesisOptions(candidates=0))


def test_a_cropped_s2st_prompt_gets_the_phones_recognised_in_what_it_keeps(
    pipeline: VallexPipeline, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The prompt's phones must match its audio: recognised in the kept part, not the whole source."""
    source = synthetic_voice(1.5, 120).numpy()
    monkeypatch.setattr(pipeline.options, "max_prompt_seconds", 0.5)
    with caplog.at_level("WARNING", logger="speechkit.infer"):
        request, info = pipeline.speech_request(source, 16000, "en")
    assert "keeping its first 0.5 s" in caplog.text and "sox in.wav out.wav trim 0 0.5" in caplog.text
    kept = torch.from_numpy(source[:8000])
    assert abs(request.prompt.seconds - 0.5) < 0.05
    assert request.prompt.phones == ([p.token for p in pipeline.st_frontend.recognize(kept, 16000)] or ["<sil>"])
    assert info["source_phones"] == [p.token for p in pipeline.st_frontend.recognize(torch.from_numpy(source), 16000)]
    assert request.prompt.phones != info["source_phones"]  # the whole source says more than its first 0.5 s


@pytest.mark.parametrize("options, message", [({"batch_size": 0}, "batch_size"), ({"temperature": -0.5}, "temperature"),
                                              ({"top_p": 1.5}, "top_p"), ({"candidate_top_k": -1}, "top_k")])
def test_synthesis_options_out_of_range_are_config_errors(pipeline: VallexPipeline, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        VallexPipeline(pipeline.frontend, pipeline.phone_table, pipeline.codec, pipeline.ar_lm, pipeline.nar_lm,
                       options=SynthesisOptions(**options))


def test_generate_arguments_out_of_range_are_config_errors(pipeline: VallexPipeline, zh_prompt: VoicePrompt) -> None:
    request = pipeline.text_request("你好", zh_prompt)
    with pytest.raises(ConfigError, match="batch_size must be >= 1, got 0"):  # 0 is not "the default"
        pipeline.generate([request], batch_size=0)
    with pytest.raises(ConfigError, match="top_p"):
        pipeline.generate([request], top_p=2.0)
