"""One decoding step of a whole :class:`~speechkit.nn.transformer.TransformerStack`, for a batch of
sequences, in one compiled call (CPU, fp32, bf16 or int8 weights).

Batch-1 decoding reads every weight once per step, so its floor is the weight bytes over the
memory bandwidth. With one oneDNN matrix-vector product per linear layer (and the norms, attention
and residuals between them as separate tensor operations), a paper-size fp32 step streamed the
weights at ~70 % of the bandwidth ``x.sum()`` reaches (docs/performance.md). The fused step keeps
the threads in one parallel region for the whole step and streams each linear layer's weights
from a layout made for it (``stream blocks``, see :mod:`speechkit.nn.stream_gemv_source`), so the
step runs at close to the streaming rate.

It needs the stream blocks: :func:`speechkit.infer.precision.apply_precision` keeps the linear
layers of the stacks this runner supports in that layout (one copy; the prompt's many rows go
through :func:`stream_linear`, the same sums) when the precision is fp32, bf16 or int8 on CPU
(bf16: pairs of bfloat16 weights multiplied by the inputs rounded to bfloat16, ``vdpbf16ps``,
sums in float32; int8: quadruples of int8 weights with a scale per output, multiplied by the
inputs quantised per row to uint8, ``vpdpbusd``, exact int32 sums, :func:`quantize_stream`).
A batch whose sequences end one by one passes ``rows``, the sequences still decoding: the others
skip the step. :meth:`TransformerStack.decode_step` then uses :class:`FusedDecoder` for steps on CPU
with float32 inputs and :class:`~speechkit.nn.lean_decode.LeanDecoder` for the rest; ``SPEECHKIT_FUSED_DECODE=0`` turns the fused step off. The results equal the layer
by layer computation up to float rounding (sums in a different order): tests compare them. Every
output of a linear layer is one chain of multiply-adds in input order, whatever the batch, so a
sequence's step does not depend on the sequences decoded with it.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from speechkit.nn.attention import KVCache
from speechkit.nn.decode_kernel import compiled_kernels, int4_attention_supported
from speechkit.nn.huge_pages import huge_page_zeros
from speechkit.nn.lean_decode import LeanDecoder, norm_parts

#: outputs per stream block (one block: 64 outputs x all inputs, contiguous)
STREAM_BLOCK = 64


def pack_stream(weight: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A linear layer's weight [N, K] -> stream blocks, on huge pages on CPU
    (:mod:`speechkit.nn.huge_pages`); rows past N (and, for bf16 and int8, inputs past K) are zeros.

    * float32: FloatTensor[ceil(N / 64), K, 64], ``blocks[b, k, j] = weight[64 b + j, k]``;
    * bfloat16: BFloat16Tensor[ceil(N / 64), ceil(K / 2), 64, 2], ``blocks[b, k, j, i] =
      weight[64 b + j, 2 k + i]`` (rounded to nearest even): each 32-bit element holds two
      consecutive inputs' weights, which one ``vdpbf16ps`` lane multiplies;
    * int8: CharTensor[ceil(N / 64), ceil(K / 4), 64, 4] of an already quantised CharTensor weight
      (:func:`quantize_stream`), four consecutive inputs per 32-bit element (one ``vpdpbusd`` lane).
    """
    inputs = {torch.float32: 1, torch.bfloat16: 2, torch.int8: 4}.get(dtype)
    if inputs is None:
        raise ValueError(f"stream blocks are float32, bfloat16 or int8, not {dtype}")
    if (dtype == torch.int8) != (weight.dtype == torch.int8):
        raise ValueError("int8 stream blocks take an int8 weight (quantize_stream), other blocks a float one")
    rows, columns = weight.shape
    source = weight.detach() if dtype == torch.int8 else weight.detach().float()
    padded = F.pad(source, (0, -columns % inputs, 0, -rows % STREAM_BLOCK)).to(dtype)
    blocks = padded.view(-1, STREAM_BLOCK, padded.shape[1] // inputs, inputs).transpose(1, 2)
    if inputs == 1:
        blocks = blocks.squeeze(-1)
    return huge_page_zeros(blocks.shape, dtype, weight.device).copy_(blocks)  # streamed every step


def quantize_stream(weight: torch.Tensor, bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear layer's float weight [N, K] (and bias [N]) -> int8 stream blocks (:func:`pack_stream`)
    and their terms FloatTensor[3, N]: the bias (zeros without one), the weight scale of each
    output (``max |w| / 127``, symmetric) and the column sums of the int8 weights, which the
    kernel needs for the inputs' zero point (:func:`quantize_inputs`)."""
    weight = weight.detach().float()
    scale = weight.abs().amax(dim=1) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    quantized = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
    bias = torch.zeros(weight.shape[0]) if bias is None else bias.detach().float()
    terms = torch.stack([bias, scale, quantized.sum(dim=1, dtype=torch.int32).float()]).contiguous()
    return pack_stream(quantized, torch.int8), terms


def quantize_inputs(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows x FloatTensor[M, K] -> (uint8 values as LongTensor[M, K], scale FloatTensor[M], zero
    point LongTensor[M]) with x ~ scale (u - zero): each row's range (0 included) spread over
    0..255, rounded to nearest even; the int8 stream kernel quantises its inputs exactly so."""
    low = x.amin(dim=1).clamp(max=0.0)
    high = x.amax(dim=1).clamp(min=0.0)
    scale = (high - low) / 255.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.round(-low / scale)
    values = (torch.round(x / scale[:, None]) + zero[:, None]).clamp(0, 255)
    return values.long(), scale, zero.long()


def unpack_stream(blocks: torch.Tensor, inputs: int) -> torch.Tensor:
    """Stream blocks (:func:`pack_stream`) -> the weight [ceil(N / 64) * 64, inputs] they hold
    (rows past N zero): float32, or for int8 blocks the int8 values as LongTensor."""
    if blocks.dim() == 4:  # pairs / quadruples [nb, E, 64, n] -> [nb, 64, E * n]
        source = blocks.long() if blocks.dtype == torch.int8 else blocks.float()
        weight = source.permute(0, 2, 1, 3).reshape(blocks.shape[0], STREAM_BLOCK, -1)[..., :inputs]
    else:
        weight = blocks.transpose(1, 2)
    return weight.reshape(-1, inputs)


#: what :func:`stream_linear` can apply to its outputs -> the kernel's code (the GELU variants of ``nn.GELU``)
STREAM_ACTIVATIONS: dict[str | None, int] = {None: 0, "gelu": 1, "gelu_tanh": 2}


def stream_linear(x: torch.Tensor, blocks: torch.Tensor, bias: torch.Tensor, activation: str | None = None) -> torch.Tensor:
    """A linear layer kept as stream blocks: x FloatTensor[..., K], blocks (:func:`pack_stream`,
    float32, bfloat16 or int8), bias FloatTensor[N] (int8: the terms [3, N] of
    :func:`quantize_stream`) -> FloatTensor[..., N]. bfloat16 blocks multiply x rounded to
    bfloat16 (sums in float32); int8 blocks multiply x quantised per row to uint8
    (:func:`quantize_inputs`; sums exact in int32). ``activation`` (``"gelu"``, ``"gelu_tanh"``
    or None, :data:`STREAM_ACTIVATIONS`) is applied to the outputs as they are written, as the
    fused step does for its feed-forward layers (the erf of the exact GELU to ~1e-7). The compiled
    kernel on CPU (the same sums as the fused step), torch elsewhere and when gradients are needed."""
    if activation not in STREAM_ACTIVATIONS:
        raise ValueError(f"stream_linear: activation must be one of {sorted(map(str, STREAM_ACTIVATIONS))}, got {activation!r}")
    kernel = compiled_kernels() if x.device.type == "cpu" else None
    flat = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])
    if flat.dtype != torch.float32:
        flat = flat.float()
    outputs = bias.shape[-1]
    if kernel is None or (torch.is_grad_enabled() and (x.requires_grad or blocks.requires_grad)):
        if blocks.dtype == torch.int8:
            out = _int8_linear(flat, unpack_stream(blocks, flat.shape[1])[:outputs], bias)
        else:
            if blocks.dtype == torch.bfloat16:
                flat = flat.to(torch.bfloat16).float()
            weight = unpack_stream(blocks, flat.shape[1])[:outputs]
            out = flat @ weight.t() + bias
        if activation is not None:
            out = F.gelu(out, approximate="tanh" if activation == "gelu_tanh" else "none")
    else:
        if bias.dtype != torch.float32 or not bias.is_contiguous():
            bias = bias.float().contiguous()
        out = kernel.stream_linear(flat.contiguous(), blocks, bias, STREAM_ACTIVATIONS[activation])
    return out if x.dim() == 2 else out.view(*x.shape[:-1], outputs)


def _int8_linear(x: torch.Tensor, quantized: torch.Tensor, terms: torch.Tensor) -> torch.Tensor:
    """The int8 kernel's arithmetic in torch: x FloatTensor[M, K], quantized LongTensor[N, K] int8
    values, terms [3, N] -> FloatTensor[M, N]."""
    values, scale, zero = quantize_inputs(x)
    sums = values @ quantized.t() - zero[:, None] * terms[2].long()  # exact integers
    return sums.float() * (scale[:, None] * terms[1]) + terms[0]


def stream_weight(linear: nn.Module) -> torch.Tensor | None:
    """The stream blocks a linear layer keeps (``PackedLinear(..., stream=True)``), else None."""
    blocks = getattr(linear, "stream_weight", None)
    return blocks if isinstance(blocks, torch.Tensor) else None


def _linears(layer: nn.Module) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
    return layer.attention.qkv, layer.attention.out, layer.ffn[0], layer.ffn[3]


def streamable_linears(stack: nn.Module) -> list[nn.Module]:
    """The linear layers of ``stack`` that a :class:`FusedDecoder` would read (empty for stacks
    it does not support: level-conditioned ones, or other activations than GELU)."""
    if not LeanDecoder.supports(stack):
        return []
    return [linear for layer in stack.layers for linear in _linears(layer)]


def _norm(norm: nn.Module, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A norm's weight and bias as float32 tensors (ones / zeros where it has none)."""
    weight, bias, _ = norm_parts(norm)
    weight = torch.ones(width) if weight is None else weight.detach()
    bias = torch.zeros(width) if bias is None else bias.detach()
    return weight.float().contiguous(), bias.float().contiguous()


def _uniform_settings(stack: nn.Module) -> tuple[float, bool] | None:
    """The stack's one layer-norm eps and whether its GELU is the tanh one; None where they
    differ between layers (the compiled step takes one of each)."""
    norms = [norm for layer in stack.layers for norm in (layer.attention_norm, layer.ffn_norm)] + [stack.final_norm]
    eps = {norm_parts(norm)[2] for norm in norms}
    activations = {layer.ffn[1].approximate for layer in stack.layers}
    if len(eps) != 1 or len(activations) != 1:
        return None
    return eps.pop(), activations.pop() == "tanh"


class FusedDecoder:
    """Runs ``stack.decode_step`` for a batch (x FloatTensor[B, 1, D]) in one compiled call.

    Args:
        stack: a TransformerStack ready for it (:meth:`prepared`).
    """

    def __init__(self, stack: nn.Module) -> None:
        settings = _uniform_settings(stack)
        if settings is None:
            raise ValueError("FusedDecoder needs one layer-norm eps and one GELU variant for the whole stack")
        self.stack = stack
        self._eps, self._tanh = settings
        width = stack.d_model
        params: list[torch.Tensor] = []
        for layer in stack.layers:
            qkv, out, ffn_in, ffn_out = _linears(layer)  # stream layers hold their terms: bias (int8: + scales)
            params += [*_norm(layer.attention_norm, width), stream_weight(qkv), qkv.stream_terms, stream_weight(out),
                       out.stream_terms, *_norm(layer.ffn_norm, width), stream_weight(ffn_in), ffn_in.stream_terms,
                       stream_weight(ffn_out), ffn_out.stream_terms]
        self._params = params + [*_norm(stack.final_norm, width)]
        self._kernel = compiled_kernels()

    @staticmethod
    def enabled() -> bool:
        """False with ``SPEECHKIT_FUSED_DECODE=0`` in the environment (for A/B measurements: set
        before ``apply_precision``, it also keeps the fp32 layers packed for oneDNN)."""
        return os.environ.get("SPEECHKIT_FUSED_DECODE", "1") != "0"

    @staticmethod
    def supports(stack: nn.Module, x: torch.Tensor, cache: KVCache) -> bool:
        """Whether this runner can take the step: fp32 inputs on CPU, one per sequence of the
        cache, a :meth:`prepared` stack, and for an int4 cache a head size the kernel attends
        (:func:`~speechkit.nn.decode_kernel.int4_attention_supported`)."""
        if x.device.type != "cpu" or x.dtype != torch.float32 or x.shape[0] != cache.keys.shape[1]:
            return False
        if cache.bits == 4 and not int4_attention_supported(2 * cache.keys.shape[-1]):
            return False
        return FusedDecoder.prepared(stack)

    @staticmethod
    def prepared(stack: nn.Module) -> bool:
        """Whether ``stack`` is ready for fused steps: all its linear layers keep stream blocks,
        one layer-norm eps and one GELU variant throughout, and the compiled kernel available."""
        linears = streamable_linears(stack)
        if not linears or any(stream_weight(linear) is None for linear in linears):
            return False
        return _uniform_settings(stack) is not None and compiled_kernels() is not None

    def __call__(self, x: torch.Tensor, cache: KVCache, start: int, rows: torch.Tensor | None = None) -> torch.Tensor:
        """x: FloatTensor[B, 1, D] (the embedded new positions) -> FloatTensor[B, 1, D] (normed);
        writes the keys/values at ``start`` and sets ``cache.length = start + 1``. ``rows``
        (LongTensor[R], increasing): only these sequences take the step (the others' outputs
        are zeros and their cache is left as it is); None: all."""
        if start >= cache.max_length:
            raise RuntimeError(f"KV cache overflow: writing up to {start + 1} of {cache.max_length} positions")
        batch, _, width = x.shape
        inputs = x.reshape(batch, width)
        if rows is not None:
            rows = rows.to(device="cpu", dtype=torch.long).contiguous()
            inputs = inputs.index_select(0, rows)
        out = torch.empty(inputs.shape[0], width)
        valid = cache.key_valid if cache.has_padding else None
        self._kernel.fused_decode_step(inputs.contiguous(), out, self._params, self._eps, self._tanh, cache.keys,
                                       cache.values, cache.key_scales, cache.value_scales, valid, start, rows)
        cache.length = start + 1
        if rows is not None:
            out = torch.zeros(batch, width).index_copy_(0, rows, out)
        return out.view(batch, 1, width)
