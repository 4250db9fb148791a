"""aligned_ar: contract, causality with durations, KV cache, advance/EOS logic, batching, overfit."""
from __future__ import annotations

import pytest
import torch

from speechkit.errors import ConfigError, DataError
from speechkit.plugins.ar_lm.aligned_ar import positions_in_phone
from speechkit.registry import build
from speechkit.testing import check_ar_lm

CONTEXT = {"num_phones": 20, "codebook_size": 16, "num_languages": 3}
TINY = {"d_model": 32, "num_heads": 2, "num_layers": 2, "ffn_dim": 64, "dropout": 0.0}


def tiny_ar(**options: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build("ar_lm", {"name": "aligned_ar", **TINY, **options}, **CONTEXT).eval()


def aligned_batch(device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Two pairs: item 0 = 2 prompt phones + 3 target phones, 3 prompt frames + 7 target frames;
    item 1 = no prompt, 2 phones, 4 frames (padded)."""
    generator = torch.Generator().manual_seed(0)
    batch = {
        "phones": torch.randint(2, 20, (2, 5), generator=generator),
        "phone_lens": torch.tensor([5, 2]),
        "phone_langs": torch.randint(0, 3, (2, 5), generator=generator),
        "codes": torch.randint(0, 16, (2, 10), generator=generator),
        "code_lens": torch.tensor([10, 4]),
        "code_langs": torch.tensor([1, 2]),
        "prompt_lens": torch.tensor([3, 0]),
        "durations": torch.tensor([[0, 0, 2, 1, 4], [3, 1, 0, 0, 0]]),
    }
    return {key: value.to(device) for key, value in batch.items()}


def test_contract() -> None:
    check_ar_lm(tiny_ar(), **CONTEXT)


def test_frame_stacking_is_rejected() -> None:
    with pytest.raises(ConfigError, match="frames_per_step"):
        build("ar_lm", {"name": "aligned_ar", **TINY, "frames_per_step": 2}, **CONTEXT)


def test_frame_phones_and_positions_follow_durations() -> None:
    model, batch = tiny_ar(), aligned_batch()
    frame_phones = model.frame_phones(batch)
    assert frame_phones[0].tolist() == [-1, -1, -1, 2, 2, 3, 4, 4, 4, 4]
    assert frame_phones[1].tolist() == [0, 0, 0, 1] + [-1] * 6
    assert positions_in_phone(frame_phones)[0, 3:].tolist() == [0, 1, 0, 0, 1, 2, 3]
    bad = {**batch, "durations": torch.tensor([[0, 0, 2, 1, 3], [3, 1, 0, 0, 0]])}
    with pytest.raises(DataError, match="sum to 6"):
        model(bad)


def test_loss_terms_and_marginal_logits_are_distributions() -> None:
    model, batch = tiny_ar(), aligned_batch()
    out = model(batch)
    assert out["logits"].shape == (2, 11, 17)
    assert torch.allclose(out["logits"].exp().sum(-1)[0, :11], torch.ones(11), atol=1e-4)
    assert torch.allclose(out["loss"], out["code_loss"] + out["advance_loss"])
    # EOS is only possible after the last phone: rows whose previous frame is on phone 4 (item 0)
    eos = out["logits"][0, :, 16]
    assert bool((eos[:7] < -1e3).all()) and bool((eos[7:] > -1e3).all())


def test_future_codes_never_change_past_outputs() -> None:
    model, batch = tiny_ar(), aligned_batch()
    out = model(batch)
    for frame in (3, 6, 9):
        changed = {**batch, "codes": batch["codes"].clone()}
        changed["codes"][0, frame] = (changed["codes"][0, frame] + 5) % 16
        logits = model(changed)["logits"]
        assert torch.allclose(logits[0, : frame + 1], out["logits"][0, : frame + 1], atol=1e-5)
        assert not torch.allclose(logits[0, frame + 1 :], out["logits"][0, frame + 1 :])
        assert torch.allclose(logits[1], out["logits"][1], atol=1e-5)


def test_kv_cache_decoding_equals_full_recomputation(device: torch.device) -> None:
    """Feed the teacher-forced frames through prefill + decode_step; the marginal logits computed
    from the cached hidden states equal those of the full forward pass, row by row."""
    model, batch = tiny_ar().to(device), aligned_batch(device)
    row = {key: value[:1] for key, value in batch.items()}
    full = model(row)["logits"][0]  # [11, 17]
    frame_phones = model.frame_phones(row)  # [1, 10]
    positions = positions_in_phone(frame_phones)
    phones, phone_langs, codes = row["phones"], row["phone_langs"], row["codes"]
    state, hidden = model.prefill(phones, row["phone_lens"], phone_langs, codes[:, :3], torch.tensor([3], device=device),
                                  row["code_langs"], 8)
    hiddens = [hidden]
    for frame in range(3, 10):
        phone = frame_phones[:, frame]
        hiddens.append(model.decode_step(state, codes[:, frame], phone, positions[:, frame]))
    acoustic = torch.stack(hiddens, dim=1)  # [1, 8, D]: rows 3..10
    current = frame_phones[:, 2:]  # phone of frame m-1 for rows 3..10 (-1 for row 3)
    current_pos = positions[:, 2:]
    following = torch.cat([frame_phones[:, 3:], torch.tensor([[-1]], device=device)], dim=1)
    following_pos = torch.cat([positions[:, 3:], torch.tensor([[0]], device=device)], dim=1)
    with torch.no_grad():
        code_logits = model.code_head(model._fuse(acoustic, model._gather_phone(state.phone_states, following),
                                                  following_pos, following >= 0))
        advance = model.advance_head(model._fuse(acoustic, model._gather_phone(state.phone_states, current),
                                                 current_pos, current >= 0)).squeeze(-1)
        cached = model._marginal_logits(acoustic, state.phone_states, code_logits, advance, current, current_pos,
                                        row["phone_lens"])
    assert torch.allclose(cached[0], full[3:], atol=1e-4)


def test_generation_stops_after_the_last_phone_and_reports_the_alignment(device: torch.device) -> None:
    model, batch = tiny_ar().to(device), aligned_batch(device)
    targets = torch.tensor([3, 2], device=device)
    with torch.no_grad():
        model.advance_head[-1].weight.zero_()
        model.advance_head[-1].bias.fill_(10.0)  # always advance: one frame per phone
    result = model.generate_batch(batch["phones"], batch["phone_lens"], batch["phone_langs"], batch["codes"][:, :3],
                                  batch["prompt_lens"], batch["code_langs"], num_target_phones=targets,
                                  temperature=0.0)
    assert result.stop_reasons == ["eos", "eos"]
    assert [codes.numel() for codes in result.codes] == [3, 2]
    assert [a.tolist() for a in result.frame_phones] == [[0, 1, 2], [0, 1]]
    with torch.no_grad():
        model.advance_head[-1].bias.fill_(-10.0)  # never advance: the per-phone guard moves on
    limited = tiny_ar(max_frames_in_phone=2).to(device)
    limited.load_state_dict(model.state_dict())
    result = limited.generate_batch(batch["phones"], batch["phone_lens"], batch["phone_langs"], batch["codes"][:, :3],
                                    batch["prompt_lens"], batch["code_langs"], num_target_phones=targets,
                                    temperature=0.0)
    assert result.stop_reasons == ["eos", "eos"]
    assert [a.tolist() for a in result.frame_phones] == [[0, 0, 1, 1, 2, 2], [0, 0, 1, 1]]
    capped = tiny_ar(max_frames_per_phone=1.0, max_frames_margin=1).to(device)
    capped.load_state_dict(model.state_dict())
    result = capped.generate_batch(batch["phones"], batch["phone_lens"], batch["phone_langs"], batch["codes"][:, :3],
                                   batch["prompt_lens"], batch["code_langs"], num_target_phones=targets,
                                   temperature=0.0)
    assert result.stop_reasons == ["max_length", "max_length"] and [c.numel() for c in result.codes] == [4, 3]


def test_survival_rule_advances_at_the_median_duration() -> None:
    """P(advance) = 0.25 every frame: the threshold rule (0.5) never advances (the guard does),
    the survival rule leaves when 0.75^k < 0.5, i.e. after k = 3 frames (the geometric median)."""
    batch = aligned_batch()
    args = (batch["phones"], batch["phone_lens"], batch["phone_langs"], batch["codes"][:, :3], batch["prompt_lens"],
            batch["code_langs"])
    durations = {}
    for rule in ({"max_frames_in_phone": 6}, {"max_frames_in_phone": 6, "advance_survival": 0.5}):
        model = tiny_ar(**rule)
        with torch.no_grad():
            model.advance_head[-1].weight.zero_()
            model.advance_head[-1].bias.fill_(float(torch.logit(torch.tensor(0.25))))
        result = model.generate_batch(*args, num_target_phones=torch.tensor([3, 2]), temperature=0.0)
        durations[rule.get("advance_survival", 0.0)] = torch.bincount(result.frame_phones[0]).tolist()
    assert durations == {0.0: [6, 6, 6], 0.5: [3, 3, 3]}
    with pytest.raises(ConfigError, match="advance_survival"):
        tiny_ar(advance_survival=1.0)


def test_the_step_fusion_equals_fusing_the_gathered_phone_state() -> None:
    """Generation projects every phone state once and gathers rows (``_fuse_step``); that is
    ``_fuse`` of each sequence's phone state (bit for bit where the projection's rows do not
    depend on each other: the stream blocks of ``apply_precision``)."""
    from speechkit.infer.precision import apply_precision
    from speechkit.nn.decode_kernel import decode_kernel_available

    generator = torch.Generator().manual_seed(0)
    hidden, states = torch.randn(3, 32, generator=generator), torch.randn(3, 5, 32, generator=generator)
    pointer, position = torch.tensor([0, 4, 2]), torch.tensor([0, 7, 100])  # 100: clipped like _fuse
    for model in (tiny_ar(), apply_precision(tiny_ar(), "fp32")):
        with torch.inference_mode():
            expected = model._fuse(hidden, states[torch.arange(3), pointer], position, torch.ones(3, dtype=torch.bool))
            projected = model.phone_state_projection(states).flatten(0, 1)  # sequences one after the other
            got = model._fuse_step(hidden, projected, torch.arange(3) * 5 + pointer, position)
        assert torch.allclose(got, expected, atol=1e-6, rtol=0)
    if decode_kernel_available():  # the last model's projection: stream blocks
        assert torch.equal(got, expected)


def test_batched_greedy_equals_one_at_a_time_with_prompts(device: torch.device) -> None:
    model, batch = tiny_ar().to(device), aligned_batch(device)
    prompts, prompt_lens = batch["codes"][:, :3], torch.tensor([3, 1], device=device)
    targets = torch.tensor([3, 1], device=device)
    result = model.generate_batch(batch["phones"], batch["phone_lens"], batch["phone_langs"], prompts, prompt_lens,
                                  batch["code_langs"], num_target_phones=targets, temperature=0.0)
    for row in range(2):
        p, t = int(batch["phone_lens"][row]), int(prompt_lens[row])
        one = model.generate(batch["phones"][row, :p], batch["phone_langs"][row, :p], prompts[row, :t],
                             int(batch["code_langs"][row]), temperature=0.0, num_target_phones=int(targets[row]))
        assert torch.equal(one, result.codes[row])


def test_tiny_overfit_reads_the_sequence_back_with_its_durations() -> None:
    """Train on one (prompt, target) pair; greedy decoding must reproduce the target's codes and
    its phone durations exactly."""
    torch.manual_seed(0)
    model = build("ar_lm", {"name": "aligned_ar", **TINY, "num_layers": 2}, **CONTEXT)
    phones = torch.tensor([[3, 4, 5, 6, 7]])
    phone_langs = torch.tensor([[1, 1, 1, 1, 1]])
    prompt = torch.tensor([9, 9, 2])
    target = torch.tensor([1, 1, 5, 7, 7, 7, 3, 3])
    durations = torch.tensor([[0, 0, 2, 4, 2]])
    batch = {"phones": phones, "phone_lens": torch.tensor([5]), "phone_langs": phone_langs,
             "codes": torch.cat([prompt, target]).unsqueeze(0), "code_lens": torch.tensor([11]),
             "code_langs": torch.tensor([1]), "prompt_lens": torch.tensor([3]), "durations": durations}
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        out = model(batch)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    model.eval()
    result = model.generate_batch(phones, torch.tensor([5]), phone_langs, prompt.unsqueeze(0), torch.tensor([3]),
                                  torch.tensor([1]), num_target_phones=torch.tensor([3]), temperature=0.0)
    assert result.stop_reasons == ["eos"]
    assert result.codes[0].tolist() == target.tolist()
    assert result.frame_phones[0].tolist() == [0, 0, 1, 1, 1, 1, 2, 2]
