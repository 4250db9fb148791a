"""Input checks shared by the NAR codec LMs (see :class:`speechkit.interfaces.lm.NARLanguageModel`)."""
from __future__ import annotations

from typing import Any

import torch

from speechkit.errors import ConfigError, DataError
from speechkit.nn import lengths_to_mask
from speechkit.nn.checks import check_id_range, check_transformer_size, require_int_context


def _check_nar_inputs(
    component: str,
    model: Any,
    phones: torch.Tensor,
    phone_lens: torch.Tensor,
    phone_langs: torch.Tensor,
    prompt_codes: torch.Tensor,
    prompt_lens: torch.Tensor,
    codes: torch.Tensor,
    code_lens: torch.Tensor,
) -> None:
    """Shapes and id ranges of NAR inputs, against ``model``'s ``num_quantizers``,
    ``num_phones``, ``num_languages`` and ``codebook_size`` (DataError naming the key).

    phones, phone_langs: [B, P]; prompt_codes: [B, L, Tp]; codes: [B, L', T] (L' >= 1);
    lengths: [B] each, within the padded sizes.
    """
    levels = model.num_quantizers
    if phones.dim() != 2 or phone_langs.shape != phones.shape:
        raise DataError(
            f"{component}: phones and phone_langs must be [B, P], got {tuple(phones.shape)}, {tuple(phone_langs.shape)}."
        )
    batch_size = phones.shape[0]
    if prompt_codes.dim() != 3 or prompt_codes.shape[:2] != (batch_size, levels):
        raise DataError(f"{component}: prompt_codes must be [B={batch_size}, L={levels}, Tp], got {tuple(prompt_codes.shape)}.")
    if codes.dim() != 3 or codes.shape[0] != batch_size or codes.shape[1] < 1:
        raise DataError(f"{component}: codes must be [B={batch_size}, L, T], got {tuple(codes.shape)}.")
    lengths = (
        ("phone_lens", phone_lens, phones.shape[1]),
        ("prompt_lens", prompt_lens, prompt_codes.shape[2]),
        ("code_lens", code_lens, codes.shape[2]),
    )
    for name, lens, size in lengths:
        if lens.shape != (batch_size,) or bool((lens < 0).any()) or (batch_size and int(lens.max()) > size):
            raise DataError(f"{component}: {name} must be [B] with values within the padded length {size}.")
    if bool((phone_lens + prompt_lens + code_lens < 1).any()):
        raise DataError(f"{component}: an item has no phones, no prompt and no frames.")
    phone_valid = lengths_to_mask(phone_lens, phones.shape[1])
    for name, values, valid, upper in (
        ("phones", phones, phone_valid, model.num_phones),
        ("phone_langs", phone_langs, phone_valid, model.num_languages),
        ("prompt_codes", prompt_codes, lengths_to_mask(prompt_lens, prompt_codes.shape[2]).unsqueeze(1), model.codebook_size),
        ("codes", codes, lengths_to_mask(code_lens, codes.shape[2]).unsqueeze(1), model.codebook_size),
    ):
        check_id_range(component, name, values, valid, upper)


def _zero_nar_padding(
    phones: torch.Tensor,
    phone_lens: torch.Tensor,
    phone_langs: torch.Tensor,
    prompt_codes: torch.Tensor,
    prompt_lens: torch.Tensor,
    codes: torch.Tensor,
    code_lens: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Copies of the id tensors with padded positions set to 0, so any pad value is safe to embed."""
    phone_valid = lengths_to_mask(phone_lens, phones.shape[1])
    prompt_valid = lengths_to_mask(prompt_lens, prompt_codes.shape[2]).unsqueeze(1)
    code_valid = lengths_to_mask(code_lens, codes.shape[2]).unsqueeze(1)
    return (
        phones.masked_fill(~phone_valid, 0),
        phone_langs.masked_fill(~phone_valid, 0),
        prompt_codes.masked_fill(~prompt_valid, 0),
        codes.masked_fill(~code_valid, 0),
    )


def prepare_nar_inputs(
    component: str,
    model: Any,
    phones: torch.Tensor,
    phone_lens: torch.Tensor,
    phone_langs: torch.Tensor,
    prompt_codes: torch.Tensor,
    prompt_lens: torch.Tensor,
    codes: torch.Tensor,
    code_lens: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check the NAR inputs (DataError naming the key) and return copies of ``phones``,
    ``phone_langs``, ``prompt_codes`` and ``codes`` with padded positions set to 0."""
    _check_nar_inputs(component, model, phones, phone_lens, phone_langs, prompt_codes, prompt_lens, codes, code_lens)
    return _zero_nar_padding(phones, phone_lens, phone_langs, prompt_codes, prompt_lens, codes, code_lens)


def init_nar_context(
    model: Any,
    component: str,
    config: Any,
    num_phones: int | None,
    codebook_size: int | None,
    num_quantizers: int | None,
    num_languages: int | None,
) -> None:
    """Check a NAR's build context and Transformer width, and store the context on ``model``.

    Raises:
        ConfigError: a missing or non-positive context value, fewer than 2 levels, or Transformer
            sizes that cannot be built (:func:`~speechkit.nn.checks.check_transformer_size`).
    """
    require_int_context(component, num_phones=num_phones, codebook_size=codebook_size,
                        num_quantizers=num_quantizers, num_languages=num_languages)
    if num_quantizers < 2:  # type: ignore[operator]
        raise ConfigError(f"{component} predicts levels 2..L: num_quantizers must be >= 2, got {num_quantizers}.")
    check_transformer_size(component, config.d_model, config.num_heads, config.num_layers, config.ffn_dim, config.dropout)
    model.num_phones, model.codebook_size = num_phones, codebook_size
    model.num_quantizers, model.num_languages = num_quantizers, num_languages


def generate_one(
    model: Any, phones: torch.Tensor, phone_langs: torch.Tensor, prompt_codes: torch.Tensor, level1_codes: torch.Tensor
) -> torch.Tensor:
    """:meth:`NARLanguageModel.generate` through ``model.generate_batch``: phones [P],
    phone_langs [P], prompt_codes [L, Tp], level1_codes [T] -> LongTensor[L, T]."""
    if phones.dim() != 1 or prompt_codes.dim() != 2 or level1_codes.dim() != 1:
        raise DataError(
            f"{model.registered_name}.generate: expected phones [P], prompt_codes [L, Tp], level1_codes [T], got "
            f"{tuple(phones.shape)}, {tuple(prompt_codes.shape)}, {tuple(level1_codes.shape)}."
        )

    def length(tensor: torch.Tensor, dim: int) -> torch.Tensor:
        return torch.tensor([tensor.shape[dim]], device=phones.device)

    codes = model.generate_batch(
        phones.unsqueeze(0), length(phones, 0), phone_langs.unsqueeze(0),
        prompt_codes.unsqueeze(0), length(prompt_codes, 1), level1_codes.unsqueeze(0), length(level1_codes, 0),
    )
    return codes[0]
