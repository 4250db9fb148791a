"""valle_ar: masks, KV cache, batched generation, guards, and a tiny overfit."""
from __future__ import annotations

import pytest
import torch

from speechkit.errors import ConfigError, DataError
from speechkit.registry import build
from speechkit.testing import check_ar_lm

CONTEXT = {"num_phones": 20, "codebook_size": 16, "num_languages": 3}
TINY = {"d_model": 32, "num_heads": 2, "num_layers": 2, "ffn_dim": 64, "dropout": 0.0}


def tiny_ar(**options: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build("ar_lm", {"name": "valle_ar", **TINY, **options}, **CONTEXT).eval()


def random_batch(seed: int = 0, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    batch = {
        "phones": torch.randint(1, 20, (3, 6), generator=generator),
        "phone_lens": torch.tensor([6, 3, 5]),
        "phone_langs": torch.randint(0, 3, (3, 6), generator=generator),
        "codes": torch.randint(0, 16, (3, 9), generator=generator),
        "code_lens": torch.tensor([9, 4, 0]),
        "code_langs": torch.tensor([0, 1, 2]),
    }
    return {key: value.to(device) for key, value in batch.items()}


@pytest.mark.parametrize("frames_per_step", [1, 2])
def test_contract(frames_per_step: int) -> None:
    check_ar_lm(tiny_ar(frames_per_step=frames_per_step), **CONTEXT)


def test_shapes_and_future_codes_never_change_past_logits() -> None:
    model, batch = tiny_ar(), random_batch()
    out = model(batch)
    assert out["logits"].shape == (3, 10, 17) and out["loss"].dim() == 0
    for frame in (0, 3, 8):
        changed = {**batch, "codes": batch["codes"].clone()}
        changed["codes"][0, frame] = (changed["codes"][0, frame] + 5) % 16
        logits = model(changed)["logits"]
        assert torch.allclose(logits[0, : frame + 1], out["logits"][0, : frame + 1], atol=1e-6)
        assert not torch.allclose(logits[0, frame + 1 :], out["logits"][0, frame + 1 :])
        assert torch.equal(logits[1:], out["logits"][1:])


def test_phones_attend_to_all_phones() -> None:
    model, batch = tiny_ar(), random_batch()
    captured: list[torch.Tensor] = []
    model.decoder.register_forward_hook(lambda module, args, output: captured.append(output))
    model(batch)
    changed = {**batch, "phones": batch["phones"].clone()}
    changed["phones"][0, 5] = changed["phones"][0, 5] % 19 + 1  # the last phone
    model(changed)
    first_phone_before, first_phone_after = captured[0][0, 0], captured[1][0, 0]
    assert not torch.allclose(first_phone_before, first_phone_after), "the first phone must see the last one"


def test_language_id_changes_the_prediction() -> None:
    model, batch = tiny_ar(), random_batch()
    other = {**batch, "code_langs": (batch["code_langs"] + 1) % 3}
    assert not torch.allclose(model(batch)["logits"], model(other)["logits"])


@pytest.mark.parametrize("frames_per_step", [1, 2])
def test_cached_steps_equal_full_recomputation(frames_per_step: int, device: torch.device) -> None:
    model, batch = tiny_ar(frames_per_step=frames_per_step).to(device), random_batch(1, device)
    k, steps = frames_per_step, 4
    prompt_lens = torch.tensor([6, 2, 0], device=device)  # different prompt lengths, one empty
    fed = torch.randint(0, 16, (3, steps, k), generator=torch.Generator().manual_seed(5)).to(device)
    state, logits = model.prefill(
        batch["phones"], batch["phone_lens"], batch["phone_langs"], batch["codes"], prompt_lens, batch["code_langs"], steps
    )
    step_logits = [logits]
    for step in range(steps):
        step_logits.append(model.decode_step(state, fed[:, step]))
    for row in range(3):
        length = int(prompt_lens[row])
        codes = torch.cat([batch["codes"][row, :length], fed[row].flatten()]).unsqueeze(0)
        p = int(batch["phone_lens"][row])
        full = model(
            {
                "phones": batch["phones"][row : row + 1, :p], "phone_lens": torch.tensor([p], device=device),
                "phone_langs": batch["phone_langs"][row : row + 1, :p], "codes": codes,
                "code_lens": torch.tensor([codes.shape[1]], device=device), "code_langs": batch["code_langs"][row : row + 1],
            }
        )["logits"][0]
        for step, cached in enumerate(step_logits):
            frame = length + step * k
            assert torch.allclose(cached[row], full[frame : frame + k], atol=1e-5), (row, step)


def test_batched_greedy_equals_one_at_a_time(device: torch.device) -> None:
    model, batch = tiny_ar(loop_min_repeats=0, repeat_run_limit=0).to(device), random_batch(2, device)
    args = (batch["phones"], batch["phone_lens"], batch["phone_langs"], batch["codes"], batch["code_lens"], batch["code_langs"])
    result = model.generate_batch(*args, temperature=0.0, top_k=5)
    lengths = {len(codes) for codes in result.codes}
    for row in range(3):
        p, t = int(batch["phone_lens"][row]), int(batch["code_lens"][row])
        one = model.generate(batch["phones"][row, :p], batch["phone_langs"][row, :p], batch["codes"][row, :t], int(batch["code_langs"][row]), top_k=1)
        assert torch.equal(one, result.codes[row])
    assert lengths, "generated something"


def test_sampling_is_reproducible_with_a_generator(device: torch.device) -> None:
    model, batch = tiny_ar().to(device), random_batch(3, device)
    args = (batch["phones"][0], batch["phone_langs"][0], batch["codes"][0], 1)
    first = model.generate(*args, temperature=1.0, top_p=0.9, generator=torch.Generator(device).manual_seed(7))
    second = model.generate(*args, temperature=1.0, top_p=0.9, generator=torch.Generator(device).manual_seed(7))
    assert torch.equal(first, second) and first.device.type == device.type


def never_end(model: torch.nn.Module, favourite: int | None = None, runner_up: int | None = None) -> None:
    """Make the model never emit the end token (and optionally prefer two tokens)."""
    with torch.no_grad():
        model.head.bias[model.eos_id] = -1e4
        if favourite is not None:
            model.head.weight.zero_()
            model.head.bias[favourite] = 10.0
            model.head.bias[runner_up] = 5.0


def test_length_guard_stops_a_sequence_without_end_token() -> None:
    model = tiny_ar(max_frames_per_phone=2.0, max_frames_margin=3, loop_min_repeats=0, repeat_run_limit=0)
    never_end(model)
    phones = torch.randint(1, 20, (7,))
    codes = model.generate(phones, torch.zeros(7, dtype=torch.long), torch.randint(0, 16, (4,)), 0, num_target_phones=4, temperature=0)
    assert len(codes) == 2 * 4 + 3 == model.frame_limit(4)
    capped = tiny_ar(max_frames=5, loop_min_repeats=0, repeat_run_limit=0)
    never_end(capped)
    result = capped.generate_batch(phones[None], torch.tensor([7]), torch.zeros(1, 7, dtype=torch.long), torch.zeros(1, 0, dtype=torch.long), torch.tensor([0]), torch.tensor([1]))
    assert len(result.codes[0]) == 5 and result.stop_reasons == ["max_length"]


def test_repetition_guards(device: torch.device) -> None:
    phones, langs = torch.arange(1, 6, device=device), torch.zeros(5, dtype=torch.long, device=device)
    prompt = torch.tensor([1, 2], device=device)
    banned = tiny_ar(repeat_run_limit=4, loop_min_repeats=0, max_frames=30).to(device)
    never_end(banned, favourite=3, runner_up=5)
    codes = banned.generate(phones, langs, prompt, 0, temperature=0).tolist()
    assert codes[:10] == [3, 3, 3, 3, 5, 3, 3, 3, 3, 5], "a run of 4 bans the token for one step"
    looping = tiny_ar(repeat_run_limit=4, loop_max_period=6, loop_min_repeats=3, max_frames=60).to(device)
    never_end(looping, favourite=3, runner_up=5)
    lengths = torch.tensor([[5], [2], [0]], device=device)
    result = looping.generate_batch(phones[None], lengths[0], langs[None], prompt[None], lengths[1], lengths[2], temperature=0)
    assert result.stop_reasons == ["loop"]
    assert result.codes[0].tolist() == [3, 3, 3, 3, 5], "a loop repeated 3 times stops, keeping one copy"


@pytest.mark.parametrize("longest", [2, 3, 5])
def test_loop_detection_matches_checking_every_period(longest: int) -> None:
    """The quick pre-check (frame[-1] == frame[-1-p] for some p) never hides a loop: the
    result equals checking every period's window on histories with and without loops."""
    model = tiny_ar(loop_max_period=longest, loop_min_repeats=3)
    generator = torch.Generator().manual_seed(0)
    history = torch.randint(0, 16, (40, 30), generator=generator)
    for row in range(0, 40, 3):  # every third row ends in a block of period 2..6 repeated 3-4 times
        period, repeats = 2 + row % 5, 3 + row % 2
        block = torch.randint(0, 16, (period,), generator=generator)
        history[row, 30 - period * repeats :] = block.repeat(repeats)
    for frames in (5, 6, 18, 30):
        looped, lengths = model._find_loops(history, frames)
        expected = torch.zeros(40, dtype=torch.bool)
        expected_lengths = torch.zeros(40, dtype=torch.long)
        for row in range(40):
            for period in range(2, longest + 1):
                span = 3 * period
                window = history[row, frames - span : frames]
                if span <= frames and bool((window[period:] == window[:-period]).all()):
                    expected[row], expected_lengths[row] = True, frames - span + period
                    break
        assert torch.equal(looped, expected) and torch.equal(lengths, expected_lengths)
    assert bool(model._find_loops(history, 30)[0].any())


def test_bad_inputs_are_clear_errors() -> None:
    model, batch = tiny_ar(), random_batch()
    with pytest.raises(DataError, match="codes"):
        model({**batch, "codes": batch["codes"] + 100})
    with pytest.raises(DataError, match="phone_lens"):
        model({**batch, "phone_lens": batch["phone_lens"][:2]})
    with pytest.raises(ConfigError, match="num_languages"):
        build("ar_lm", {"name": "valle_ar", **TINY}, num_phones=20, codebook_size=16)


@pytest.mark.parametrize("name", ["valle_ar", "aligned_ar"])
@pytest.mark.parametrize("bad, message", [({"num_layers": 0}, "num_layers must be >= 1"),
                                          ({"ffn_dim": 0}, "ffn_dim must be >= 1"),
                                          ({"num_heads": 0}, "must be positive"),
                                          ({"d_model": -8}, "must be positive"),
                                          ({"d_model": 30, "num_heads": 4}, "divisible"),
                                          ({"dropout": 1.5}, r"dropout must lie in \[0, 1\)"),
                                          ({"top_p": 3.0}, "top_p"), ({"temperature": -1.0}, "temperature")])
def test_impossible_sizes_and_sampling_are_config_errors_naming_the_model(name: str, bad: dict, message: str) -> None:
    """Not a ZeroDivisionError or a negative-dimension RuntimeError, nor a model without layers."""
    with pytest.raises(ConfigError, match=f"ar_lm '{name}': .*{message}"):
        build("ar_lm", {"name": name, **TINY, **bad}, **CONTEXT)


def test_overfits_a_fixed_sequence() -> None:
    torch.manual_seed(0)
    model = build("ar_lm", {"name": "valle_ar", **TINY}, **CONTEXT).train()
    target = torch.tensor([[3, 7, 1, 9, 4, 4, 12, 0, 5, 8]])
    batch = {
        "phones": torch.tensor([[4, 5, 6, 7]]), "phone_lens": torch.tensor([4]),
        "phone_langs": torch.zeros(1, 4, dtype=torch.long), "codes": target,
        "code_lens": torch.tensor([10]), "code_langs": torch.tensor([0]),
    }
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        loss = model(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], f"loss {losses[0]:.3f} -> {losses[-1]:.3f}"
    model.eval()
    generated = model.generate(batch["phones"][0], batch["phone_langs"][0], torch.zeros(0, dtype=torch.long), 0, temperature=0)
    assert generated.tolist() == target[0].tolist(), "the overfit model reads back its sequence and stops"
