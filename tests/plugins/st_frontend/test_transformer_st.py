"""transformer_st: contract, shapes, padding, incremental decoding, an overfit on synthetic tones
(recognise, translate, MT, forced alignment), state_dict round trip, config validation."""
from __future__ import annotations

import math

import pytest
import torch

from speechkit.errors import AudioError, ConfigError, DataError, TextError
from speechkit.interfaces.frontend import Phone
from speechkit.registry import build
from speechkit.testing import check_st_frontend

TOKENS = ["<pad>", "<unk>", "<sp>", "<sil>", "en:AA", "en:B", "en:K", "en:S", "zh:a1", "zh:b", "zh:i2", "zh:m"]
EN, ZH = 1, 2  # speechkit.text.languages IDs
TINY = {"d_model": 32, "num_heads": 2, "ffn_dim": 64, "encoder_layers": 2, "decoder_layers": 1,
        "conv_channels": 8, "num_mels": 40, "dropout": 0.0}
# Two "utterances": each phone is a 160 ms tone whose pitch identifies it (16 fbank frames per phone).
EN_SOURCE, ZH_TARGET = [4, 5, 6], [8, 11]  # en:AA en:B en:K -> zh:a1 zh:m
ZH_SOURCE, EN_TARGET = [9, 10, 8, 9], [7, 4, 6]  # zh:b zh:i2 zh:a1 zh:b -> en:S en:AA en:K
FRAMES_PER_PHONE = 16


def tiny_st(**options: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build("st_frontend", {"name": "transformer_st", **TINY, **options}, num_languages=3, token_list=TOKENS).eval()


def tones(phone_ids: list[int], sample_rate: int = 16000) -> torch.Tensor:
    """FloatTensor[S]: one 160 ms sine per phone, 300 Hz + 150 Hz per id."""
    t = torch.arange(int(0.01 * FRAMES_PER_PHONE * sample_rate)) / sample_rate
    return torch.cat([0.5 * torch.sin(2 * math.pi * (300 + 150 * (index - 4)) * t) for index in phone_ids])


def padded(sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(map(len, sequences))
    return torch.tensor([s + [0] * (longest - len(s)) for s in sequences]), torch.tensor([len(s) for s in sequences])


def random_batch(model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """3 speech items of different lengths (features are noise) with random phones."""
    generator = torch.Generator().manual_seed(seed)
    feature_lens, source_lens, target_lens = torch.tensor([60, 33, 45]), torch.tensor([5, 2, 4]), torch.tensor([6, 3, 1])
    return {
        "features": torch.randn(3, 60, model.config.num_mels, generator=generator),
        "feature_lens": feature_lens,
        "source_phones": torch.randint(4, 12, (3, 5), generator=generator),
        "source_lens": source_lens,
        "target_phones": torch.randint(4, 12, (3, 6), generator=generator),
        "target_lens": target_lens,
        "target_langs": torch.tensor([EN, ZH, EN]),
    }


def single(batch: dict[str, torch.Tensor], row: int) -> dict[str, torch.Tensor]:
    """Item ``row`` of a padded batch, trimmed to its own lengths."""
    item = {key: value[row : row + 1] for key, value in batch.items()}
    item["features"] = item["features"][:, : int(batch["feature_lens"][row])]
    item["source_phones"] = item["source_phones"][:, : int(batch["source_lens"][row])]
    item["target_phones"] = item["target_phones"][:, : int(batch["target_lens"][row])]
    return item


@pytest.fixture(scope="module")
def trained() -> torch.nn.Module:
    """A tiny model overfit on ASR + ST (both directions) + MT items of the two tone utterances."""
    model = tiny_st().train()
    features, feature_lens = model.featurize_batch([tones(EN_SOURCE), tones(ZH_SOURCE)], 16000)
    rows = [0, 0, 1, 1]
    source, source_lens = padded([EN_SOURCE, EN_SOURCE, ZH_SOURCE, ZH_SOURCE, EN_SOURCE, ZH_SOURCE])
    target, target_lens = padded([EN_SOURCE, ZH_TARGET, ZH_SOURCE, EN_TARGET, ZH_TARGET, EN_TARGET])
    no_speech = torch.zeros(2, *features.shape[1:])
    batch = {
        "features": torch.cat([features[rows], no_speech]),
        "feature_lens": torch.cat([feature_lens[rows], torch.zeros(2, dtype=torch.long)]),  # last 2: MT items
        "source_phones": source, "source_lens": source_lens,
        "target_phones": target, "target_lens": target_lens,
        "target_langs": torch.tensor([EN, ZH, ZH, EN, ZH, EN]),
    }
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        out = model(batch)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    assert float(out["accuracy"]) == 1.0 and float(out["ctc_loss"]) < 0.1, "the tiny model did not overfit"
    return model.eval()


def test_registered_and_contract(trained: torch.nn.Module) -> None:
    check_st_frontend(trained)


def test_shapes_and_finite_losses() -> None:
    model = tiny_st().train()
    batch = random_batch(model)
    out = model(batch)
    assert out["logits"].shape == (3, 7, len(TOKENS) + 1)
    assert int(out["weight"]) == int(batch["target_lens"].sum()) + 3  # phones + one EOS each
    for name in ("loss", "ctc_loss", "att_loss", "accuracy"):
        assert out[name].dim() == 0 and torch.isfinite(out[name]), name
    out["loss"].backward()
    assert all(p.grad is not None for p in model.parameters()), "every parameter gets a gradient (DDP)"
    memory, lengths = model.encode_speech(batch["features"], batch["feature_lens"])
    assert lengths.tolist() == [((n - 1) // 2 - 1) // 2 for n in (60, 33, 45)] == [14, 7, 10]
    assert memory.shape == (3, 14, 32)
    # too few frames for the transcript: CTC counts zero instead of inf
    impossible = {**batch, "source_lens": torch.tensor([5, 2, 4]), "feature_lens": torch.tensor([60, 7, 45])}
    assert torch.isfinite(model(impossible)["ctc_loss"])


def test_padding_never_changes_an_item() -> None:
    model = tiny_st()
    batch = random_batch(model)
    with torch.no_grad():
        logits = model(batch)["logits"]
        log_probs, lengths = model.ctc_log_probs(batch["features"], batch["feature_lens"])
        for row in range(3):
            item = single(batch, row)
            alone = model(item)["logits"][0]
            assert torch.allclose(alone, logits[row, : alone.shape[0]], atol=1e-5)
            alone_ctc, _ = model.ctc_log_probs(item["features"], item["feature_lens"])
            assert torch.allclose(alone_ctc[0], log_probs[row, : int(lengths[row])], atol=1e-5)
    langs = batch["target_langs"]
    together = model.translate_ids(batch["features"], batch["feature_lens"], langs, beam_size=1)
    beams = model.translate_ids(batch["features"], batch["feature_lens"], langs, beam_size=3)
    for row in range(3):
        item = single(batch, row)
        assert model.translate_ids(item["features"], item["feature_lens"], langs[row : row + 1], beam_size=1)[0] == together[row]
        assert model.translate_ids(item["features"], item["feature_lens"], langs[row : row + 1], beam_size=3)[0] == beams[row]


def test_mixed_speech_and_text_batch_equals_separate_batches() -> None:
    model = tiny_st()
    batch = random_batch(model)
    mixed = {**batch, "feature_lens": torch.tensor([60, 0, 45])}  # item 1 becomes MT (text input)
    with torch.no_grad():
        logits = model(mixed)["logits"]
        text_only = {key: value[1:2] for key, value in batch.items() if not key.startswith("feature")}
        text_only["source_phones"] = text_only["source_phones"][:, :2]
        text_only["target_phones"] = text_only["target_phones"][:, :3]
        assert torch.allclose(model(text_only)["logits"][0], logits[1, :4], atol=1e-5)
        assert torch.allclose(model(single(batch, 0))["logits"][0], logits[0], atol=1e-5)


def test_incremental_decoding_equals_full_recomputation() -> None:
    model = tiny_st()
    batch = random_batch(model)
    with torch.no_grad():
        memory, lengths = model.encode_speech(batch["features"], batch["feature_lens"])
        valid = torch.arange(memory.shape[1]) < lengths.unsqueeze(1)
        full = model.decoder(batch["target_phones"], batch["target_langs"], memory, valid)  # [B, 7, V]
        state = model.decoder.start_state(memory, valid, batch["target_langs"], max_phones=6)
        steps = [model.decoder.step(state, None)]
        steps += [model.decoder.step(state, batch["target_phones"][:, n]) for n in range(6)]
    assert torch.allclose(torch.stack(steps, dim=1), full, atol=1e-5)


def test_overfit_recognizes_and_translates(trained: torch.nn.Module) -> None:
    wavs = [tones(EN_SOURCE), tones(ZH_SOURCE)]
    features, lengths = trained.featurize_batch(wavs, 16000)
    assert trained.recognize_ids(features, lengths) == [EN_SOURCE, ZH_SOURCE]
    for beam_size in (1, 3):
        translations = trained.translate_ids(features, lengths, torch.tensor([ZH, EN]), beam_size=beam_size)
        assert translations == [ZH_TARGET, EN_TARGET], beam_size
        # ASR through the decoder: the target language is the source language
        assert trained.translate_ids(features, lengths, torch.tensor([EN, ZH]), beam_size=beam_size) == [EN_SOURCE, ZH_SOURCE]
    source, source_lens = padded([EN_SOURCE, ZH_SOURCE])
    assert trained.translate_text_ids(source, source_lens, torch.tensor([ZH, EN])) == [ZH_TARGET, EN_TARGET]
    # the string API
    assert trained.recognize(wavs[0], 16000) == [Phone("AA", "en"), Phone("B", "en"), Phone("K", "en")]
    assert trained.translate(wavs[1], 16000, "en") == [Phone("S", "en"), Phone("AA", "en"), Phone("K", "en")]
    assert [p.token for p in trained.translate(wavs[0], 16000, "zh")] == ["zh:a1", "zh:m"]
    # input at another sample rate is resampled
    assert trained.recognize(tones(ZH_SOURCE, 8000), 8000) == trained.ids_to_phones(ZH_SOURCE)


def test_ctc_align_finds_the_tone_boundaries(trained: torch.nn.Module) -> None:
    for phone_ids in (EN_SOURCE, ZH_SOURCE):
        features = trained.featurize(tones(phone_ids), 16000)
        durations = trained.ctc_align(features, torch.tensor(phone_ids))
        assert int(durations.sum()) == features.shape[0] and bool((durations > 0).all())
        boundaries = torch.cumsum(durations, 0)[:-1]
        truth = torch.arange(1, len(phone_ids)) * FRAMES_PER_PHONE
        assert int((boundaries - truth).abs().max()) <= FRAMES_PER_PHONE // 2, durations.tolist()
        codec_frames = trained.ctc_align(features, trained.phones_to_ids([Phone.from_token(TOKENS[i]) for i in phone_ids]),
                                         num_frames=30)
        assert int(codec_frames.sum()) == 30
    with pytest.raises(DataError, match="too short"):
        trained.ctc_align(trained.featurize(tones([4]), 16000), torch.tensor([4, 5, 6, 7, 4, 5]))


def test_phone_log_likelihood_prefers_the_phones_the_audio_says(trained: torch.nn.Module) -> None:
    en_tokens = [TOKENS[i] for i in EN_SOURCE]
    zh_tokens = [TOKENS[i] for i in ZH_SOURCE]
    wavs = [tones(EN_SOURCE), tones(ZH_SOURCE), tones(EN_SOURCE), tones([4]), torch.zeros(100)]
    scores = trained.phone_log_likelihood(wavs, 16000, [en_tokens, zh_tokens, zh_tokens, zh_tokens * 3, en_tokens])
    right_en, right_zh, wrong, too_few_frames, too_short = scores
    assert right_en > -0.5 and right_zh > -0.5, scores  # the overfit model is sure of its own utterances
    assert wrong < right_en - 1.0, scores
    assert too_few_frames == -math.inf and too_short == -math.inf
    # batched == one at a time; unknown tokens are skipped; sample rates are handled
    alone = trained.phone_log_likelihood([wavs[1]], 16000, [zh_tokens + ["xx:unknown"]])
    assert alone[0] == pytest.approx(right_zh, abs=1e-4)
    assert trained.phone_log_likelihood([tones(ZH_SOURCE, 8000)], 8000, [zh_tokens])[0] > -0.5
    assert trained.phone_log_likelihood([], 16000, []) == []
    with pytest.raises(DataError, match="2 waveforms but 1"):
        trained.phone_log_likelihood(wavs[:2], 16000, [en_tokens])


def test_state_dict_round_trip(trained: torch.nn.Module, tmp_path) -> None:
    path = tmp_path / "st.pt"
    torch.save(trained.state_dict(), path)
    spec = trained.spec()
    rebuilt = build("st_frontend", spec, num_languages=3, token_list=TOKENS).eval()
    rebuilt.load_state_dict(torch.load(path, weights_only=True))
    features, lengths = trained.featurize_batch([tones(EN_SOURCE)], 16000)
    with torch.no_grad():
        assert torch.equal(rebuilt.ctc_log_probs(features, lengths)[0], trained.ctc_log_probs(features, lengths)[0])
    assert rebuilt.translate_ids(features, lengths, torch.tensor([ZH])) == [ZH_TARGET]


def test_config_and_input_validation() -> None:
    for bad in ({"d_model": 30, "num_heads": 4}, {"ctc_weight": 1.5}, {"subsampling_layers": 4},
                {"label_smoothing": 1.0}, {"beam_size": 0}, {"max_length_ratio": 0.0}, {"num_heads": 0},
                {"dropout": 1.5}):
        with pytest.raises(ConfigError):
            build("st_frontend", {"name": "transformer_st", **TINY, **bad}, num_phones=12, num_languages=3)
    with pytest.raises(ConfigError, match="d_modle"):
        build("st_frontend", {"name": "transformer_st", "d_modle": 32}, num_phones=12, num_languages=3)
    with pytest.raises(ConfigError, match="num_phones"):
        build("st_frontend", {"name": "transformer_st", **TINY}, num_languages=3)
    with pytest.raises(ConfigError, match="token_list"):
        build("st_frontend", {"name": "transformer_st", **TINY}, num_phones=5, num_languages=3, token_list=TOKENS)
    model = tiny_st()
    with pytest.raises(AudioError, match="too short"):
        model.recognize(torch.zeros(800) + 0.1, 16000)  # 50 ms
    with pytest.raises(TextError, match="Unknown language"):
        model.translate(tones(EN_SOURCE), 16000, "fr")
    with pytest.raises(DataError, match="lacks"):
        model({"features": torch.zeros(1, 20, 40), "feature_lens": torch.tensor([20])})
    with pytest.raises(DataError, match="not in the model's phone table"):
        model.phones_to_ids([Phone("XX", "en")])
    without_tokens = build("st_frontend", {"name": "transformer_st", **TINY}, num_phones=12, num_languages=3)
    with pytest.raises(ConfigError, match="token_list"):
        without_tokens.recognize(tones(EN_SOURCE), 16000)
