"""Inference precision of the codec LMs: ``fp32``, ``bf16`` or ``int8`` linear layers.

A trained model keeps its fp32 weights; :func:`apply_precision` swaps its ``nn.Linear`` layers
(where nearly all weights and FLOPs of a Transformer sit) for an inference-only variant, in place:

* ``fp32``: the same weights; on CPU they are pre-packed once into oneDNN's blocked layout
  (:class:`PackedLinear`), ~3x faster than the default BLAS path for a few rows; the linear
  layers of AR decoder stacks are kept as "stream blocks" instead, for the fused decoding step
  (:mod:`speechkit.nn.fused_decode`: a whole step in one compiled call, reading the weights at
  close to the memory bandwidth; the prompt goes through the same blocks), and so are the AR
  model's other linear layers (its output head, read every step too; a GELU that follows one
  in an MLP head is applied by the layer itself, :func:`fold_activations`; ``fused_step=False``
  packs them all for oneDNN like the rest);
* ``bf16``: bfloat16 weights (half the bytes per step; AVX512-BF16 / tensor-core matmuls), the
  activations around them stay fp32 (cast in and out), so norms, softmax, positions and the KV
  cache keep full precision; on CPU the AR decoder stacks keep them as bfloat16 stream blocks
  for the fused step, as fp32 does;
* ``int8``: dynamic quantisation (CPU only): int8 weights with one scale per output channel,
  activations quantised per call. Where the compiled kernels multiply int8 with vector
  instructions (AVX512-VNNI or -BW), every linear layer is kept as int8 stream blocks (a quarter
  of the fp32 bytes; :func:`~speechkit.nn.fused_decode.quantize_stream`): their inputs are
  quantised per row to uint8 with a zero point (:func:`~speechkit.nn.fused_decode.quantize_inputs`)
  and multiplied with ``vpdpbusd``, sums exact in int32, so a sequence's output does not depend
  on its batch; the AR decoder stacks' layers are read by the fused decoding step, the others
  (the NAR's) by :func:`~speechkit.nn.fused_decode.stream_linear`. Elsewhere (and for the AR
  decoder stacks without the fused step) linear layers go through
  ``torch.ao.quantization.quantize_dynamic``, whose activation scale is shared by the rows of a
  call, so there a sequence's output can depend on the others in its batch.

The KV cache of AR decoding is fp32 unless ``kv_cache="bf16"``: a bfloat16 cache halves the
bytes every decoding step reads (at batch 8 the cache is as large as the fp32 weights); on CPU
the compiled decoding kernel (:mod:`speechkit.nn.decode_kernel`) reads it directly. ``kv_cache="int8"``
quarters them: keys and values rounded to int8 with one scale per position and head
(``max |x| / 127``), read by the same kernel; queries, scores and softmax stay fp32.

Embeddings and norms are untouched. Attention over whole sequences (the NAR's passes) follows the
precision unless ``attention`` says otherwise: bf16 and int8 models on CPU multiply its queries,
keys, values and probabilities in bfloat16 with float32 sums (:mod:`speechkit.nn.bf16_attention`),
fp32 models keep torch's float32 attention. Reduced precision changes the outputs slightly:
``speechkit bench ar`` reports greedy token agreement against fp32 next to the speed, ``speechkit
bench nar`` the share of codes equal to fp32's.

``compile=True`` (fp32 or bf16) runs the Transformer stacks of non-autoregressive models (the
NAR) through ``torch.compile`` instead (:mod:`speechkit.infer.compiled`): their linear layers
keep plain weights (bf16: cast once), which Inductor freezes and packs itself, and the
operations between them are fused. AR decoders keep the paths above.
"""
from __future__ import annotations

import warnings
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from speechkit.errors import ConfigError
from speechkit.infer.compiled import compile_module
from speechkit.nn.attention import MultiHeadAttention
from speechkit.nn.decode_kernel import compiled_kernels
from speechkit.nn.fused_decode import FusedDecoder, pack_stream, quantize_stream, stream_linear, streamable_linears
from speechkit.nn.lean_decode import direct_operator
from speechkit.nn.transformer import TransformerStack

Precision = Literal["fp32", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")
#: KV-cache precisions of AR decoding -> the cache's dtype.
#: ``int4``: 4-bit levels with a scale per position and head, two per byte (``torch.quint4x2`` names it
#: to :class:`~speechkit.nn.attention.KVCache`).
KV_CACHES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.int8,
                                     "int4": torch.quint4x2}
#: arithmetic of attention over whole sequences (:func:`apply_precision`'s ``attention``)
ATTENTIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


def onednn_packing_available() -> bool:
    """Whether this torch build has the oneDNN (mkldnn) pre-packed linear kernels."""
    ops = torch.ops.mkldnn
    return bool(torch.backends.mkldnn.is_available()) and all(
        hasattr(ops, name) for name in ("_reorder_linear_weight", "_linear_pointwise")
    )


class PackedLinear(nn.Module):
    """An inference-only copy of an ``nn.Linear``: weights in ``dtype``, pre-packed for oneDNN
    on CPU (``pack=True``), plain elsewhere; inputs are cast to ``dtype`` and outputs back.

    forward: FloatTensor[..., in_features] -> FloatTensor[..., out_features] (input's dtype).
    """

    def __init__(self, linear: nn.Linear, *, dtype: torch.dtype = torch.float32, pack: bool = True, stream: bool = False) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.compute_dtype = dtype
        stream = stream and dtype in (torch.float32, torch.bfloat16, torch.int8) and linear.weight.device.type == "cpu"
        if dtype == torch.int8 and not stream:
            raise ValueError("PackedLinear keeps int8 weights only as stream blocks (stream=True, on CPU)")
        weight = None if stream else linear.weight.detach().to(dtype).contiguous()
        self.packed = pack and not stream and linear.weight.device.type == "cpu"
        if self.packed:
            weight = torch.ops.mkldnn._reorder_linear_weight(weight)
        self.register_buffer("weight", weight, persistent=False)
        bias_dtype = torch.float32 if stream else dtype  # stream layers add a float32 bias to float32 sums
        bias = None if linear.bias is None else linear.bias.detach().to(bias_dtype).contiguous()
        if stream and bias is None:
            bias = torch.zeros(self.out_features)
        self.register_buffer("bias", bias, persistent=False)
        #: the weights as stream blocks instead (``stream=True``): read by the fused decoding step
        #: (:mod:`speechkit.nn.fused_decode`) and by :func:`~speechkit.nn.fused_decode.stream_linear`
        #: here; ``stream_terms``: what the blocks' sums get added (the bias, or for int8 blocks the
        #: bias, weight scales and column sums of :func:`~speechkit.nn.fused_decode.quantize_stream`)
        blocks, terms = None, None
        if stream and dtype == torch.int8:
            blocks, terms = quantize_stream(linear.weight, bias)
        elif stream:
            blocks, terms = pack_stream(linear.weight, dtype), bias
        self.register_buffer("stream_weight", blocks, persistent=False)
        self.register_buffer("stream_terms", terms, persistent=False)
        #: the GELU a stream layer applies to its outputs (``"gelu"``/``"gelu_tanh"``): the one that
        #: followed it, folded in by :func:`fold_activations`; None: none
        self.activation: str | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: FloatTensor[..., in_features] -> FloatTensor[..., out_features]."""
        if self.stream_weight is not None:  # float32 in and out (bf16/int8 blocks convert the inputs themselves)
            out = stream_linear(x, self.stream_weight, self.stream_terms, self.activation)
            return out if out.dtype == x.dtype else out.to(x.dtype)
        inputs = x if x.dtype == self.compute_dtype else x.to(self.compute_dtype)
        if self.packed:
            out = torch.ops.mkldnn._linear_pointwise(inputs.contiguous(), self.weight, self.bias, "none", [], "")
        else:
            out = F.linear(inputs, self.weight, self.bias)
        return out if out.dtype == x.dtype else out.to(x.dtype)

    def direct_forward(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """:meth:`forward` as a closure over the weights for a decoding loop that calls it many
        times (:class:`speechkit.nn.lean_decode.LeanDecoder`): x FloatTensor[B, in_features]
        contiguous -> FloatTensor[B, out_features], the same result with fewer Python steps."""
        weight, bias, dtype = self.weight, self.bias, self.compute_dtype
        if not self.packed:  # plain or stream blocks
            return self.forward
        linear = direct_operator(torch.ops.mkldnn._linear_pointwise.default)
        if dtype == torch.float32:
            return lambda x: linear(x, weight, bias, "none", [], "")
        return lambda x: linear(x.to(dtype), weight, bias, "none", [], "").to(x.dtype)

    def extra_repr(self) -> str:
        stream = ", stream=True" if self.stream_weight is not None else ""
        stream += f", activation={self.activation}" if self.activation is not None else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, dtype={self.compute_dtype}, "
                f"packed={self.packed}{stream}")


def _replace_linears(module: nn.Module, streamed: frozenset[int] = frozenset(), skipped: frozenset[int] = frozenset(),
                     **options: object) -> int:
    """Swap every ``nn.Linear`` under ``module`` for ``PackedLinear(linear, **options)`` (with
    ``stream=True`` for those whose ``id`` is in ``streamed``; those in ``skipped`` are left as
    they are); count the swapped ones."""
    count = 0
    for name, child in list(module.named_children()):
        if type(child) is nn.Linear:
            if id(child) not in skipped:
                setattr(module, name, PackedLinear(child, stream=id(child) in streamed, **options))  # type: ignore[arg-type]
                count += 1
        else:
            count += _replace_linears(child, streamed, skipped, **options)
    return count


def compile_targets(module: nn.Module) -> list[TransformerStack]:
    """The stacks ``apply_precision(..., compile=True)`` compiles: every :class:`TransformerStack`
    of a model without step-by-step decoding (no ``decode_step``); none of an AR model, whose
    decoding steps take the fused or lean path."""
    if callable(getattr(module, "decode_step", None)):
        return []
    return [child for child in module.modules() if isinstance(child, TransformerStack)]


def _fused_step_linears(module: nn.Module) -> frozenset[int]:
    """ids of the linear layers that batch-1 decoding steps read and that are kept as stream
    blocks: those of the decoder stacks under ``module`` that
    :class:`~speechkit.nn.fused_decode.FusedDecoder` supports and, for an AR model (one with
    ``decode_step``) that has such a stack, its linear layers outside the stacks (output heads,
    projections: read every step too, and through :func:`~speechkit.nn.fused_decode.stream_linear`
    faster than through oneDNN for a few rows); none where the kernel cannot be built or
    ``SPEECHKIT_FUSED_DECODE=0`` turns it off."""
    if not FusedDecoder.enabled():
        return frozenset()
    stacks = [child for child in module.modules() if isinstance(child, TransformerStack)]
    linears = {id(linear) for stack in stacks for linear in streamable_linears(stack) if type(linear) is nn.Linear}
    if not linears or compiled_kernels() is None:
        return frozenset()
    if callable(getattr(module, "decode_step", None)):
        in_stacks = {id(child) for stack in stacks for child in stack.modules()}
        linears |= {id(child) for child in module.modules() if type(child) is nn.Linear and id(child) not in in_stacks}
    return frozenset(linears)


def fold_activations(module: nn.Module) -> int:
    """Let each stream layer of ``module`` apply the ``nn.GELU`` that follows it in an
    ``nn.Sequential`` (an MLP head, or a feed-forward block of a stack that no fused decoding step
    reads: a NAR's), as its outputs are written (:func:`~speechkit.nn.fused_decode.stream_linear`);
    the GELU becomes ``nn.Identity``, in place. Saves a call per head per decoding step (torch's
    exact GELU costs ~8 us for 256 values) and a pass over the feed-forward activations (default
    NAR in fp32: 0.066 instead of 0.072 s; paper int8 NAR: 5.08 instead of 5.11 s; the same codes).
    The stacks the fused step reads keep theirs: it takes them from the layers' settings.
    Returns the count."""
    decodes = callable(getattr(module, "decode_step", None))  # an AR model: its stacks' steps are fused
    in_stacks = {id(child) for stack in module.modules() if isinstance(stack, TransformerStack) and decodes
                 and streamable_linears(stack) for child in stack.modules()}
    folded = 0
    for sequential in module.modules():
        if not isinstance(sequential, nn.Sequential) or id(sequential) in in_stacks:
            continue
        children = list(sequential.named_children())
        for (_, layer), (name, following) in zip(children, children[1:]):
            if isinstance(layer, PackedLinear) and layer.stream_weight is not None and layer.activation is None \
                    and type(following) is nn.GELU:
                layer.activation = "gelu_tanh" if following.approximate == "tanh" else "gelu"
                setattr(sequential, name, nn.Identity())
                folded += 1
    return folded


def _int8_stream_linears(module: nn.Module, fused_step: bool) -> frozenset[int]:
    """ids of the linear layers of ``module`` that int8 keeps as stream blocks: all of them (their
    inputs quantised per row, so a sequence's output does not depend on its batch; at paper size
    and 444-1095 positions the NAR's also take 2-5 % less time than ``torch.ao``'s, and the NAR's codes agree
    with fp32's 0.935 of the time instead of 0.870), except, without the fused step (``fused_step``
    False or ``SPEECHKIT_FUSED_DECODE=0``), the decoder stacks' layers it would read: those go
    through ``torch.ao`` and the lean step."""
    linears = frozenset(id(child) for child in module.modules() if type(child) is nn.Linear)
    if fused_step and FusedDecoder.enabled():
        return linears
    stacks = [child for child in module.modules() if isinstance(child, TransformerStack)]
    return linears - frozenset(id(linear) for stack in stacks for linear in streamable_linears(stack))


def int8_streams_vectorized() -> bool:
    """Whether int8 stream blocks (the fused int8 decoding step) run on vector instructions here:
    the compiled kernel is available and built with AVX512-VNNI or AVX512-BW."""
    kernel = compiled_kernels()
    return kernel is not None and bool(kernel.int8_stream_vectorized())


def _quantize_int8(module: nn.Module) -> nn.Module:
    """Dynamic int8 quantisation of the ``nn.Linear`` layers of ``module`` (in place)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch.ao.quantization's deprecation notices
        warnings.simplefilter("ignore")
        return quantize_dynamic(module, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)


def _set_sequence_attention(module: nn.Module, arithmetic: str) -> None:
    """Set ``sequence_precision`` of every attention layer of ``module`` to ``arithmetic``."""
    for layer in module.modules():
        if isinstance(layer, MultiHeadAttention):
            layer.sequence_precision = arithmetic


def apply_precision(
    module: nn.Module, precision: str = "fp32", *, pack: bool = True, kv_cache: str = "fp32", fused_step: bool = True,
    compile: bool = False, attention: str = "auto",
) -> nn.Module:
    """Prepare ``module`` for inference in ``precision`` (see the module docstring), in place.

    Args:
        module: an LM in eval mode, on its final device (packing and quantisation are per device).
        precision: ``fp32``, ``bf16`` or ``int8`` (int8: CPU only).
        pack: pre-pack CPU weights for oneDNN (fp32/bf16; ignored where unavailable).
        kv_cache: ``fp32``, ``bf16``, ``int8`` or ``int4``, the precision of the KV cache an AR model
            decodes with (set as ``module.kv_cache_dtype``; models without a cache ignore it).
        fused_step: with packing on CPU, keep the weights of the decoder stacks' linear layers
            (and the AR head) as fp32, bf16 or int8 stream blocks for the fused decoding step
            (:mod:`speechkit.nn.fused_decode`; at paper size, batch 1, ~1.7x (fp32) and ~2.5x
            (bf16) faster than the layer-by-layer step with oneDNN; int8 needs AVX512-VNNI or
            -BW, :func:`int8_streams_vectorized`).
        compile: run the Transformer stacks of a non-autoregressive model through
            ``torch.compile`` (:func:`compile_targets`, :mod:`speechkit.infer.compiled`); fp32 or
            bf16. The first call compiles (tens of seconds at paper size).
        attention: the arithmetic of attention over whole sequences (the NAR's passes; decoding
            steps and the AR prompt keep their paths): ``fp32`` (torch's attention), ``bf16``
            (:func:`~speechkit.nn.bf16_attention.bf16_attention`: bfloat16 products, float32 sums;
            about half the time on CPUs with AVX512-BF16, torch's attention elsewhere), or
            ``auto``: bf16 for bf16 and int8 models on CPU, else fp32. Compiled stacks keep fp32.

    Returns:
        ``module`` (for chaining). The result is for inference only: no gradients flow through
        the swapped layers and it must not be moved to another device afterwards.

    Raises:
        ConfigError: an unknown precision, KV-cache precision or attention arithmetic, int8 on a
            non-CPU device, or int8 with ``compile``.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    if kv_cache not in KV_CACHES:
        raise ConfigError(f"Unknown KV-cache precision {kv_cache!r}; choose one of {', '.join(KV_CACHES)}.")
    if compile and precision == "int8":
        raise ConfigError("compile works with precision fp32 or bf16; int8's dynamically quantised layers do not "
                          "compile. Drop compile, or choose bf16.")
    if attention not in ATTENTIONS:
        raise ConfigError(f"Unknown attention arithmetic {attention!r}; choose one of {', '.join(ATTENTIONS)}.")
    module.kv_cache_dtype = KV_CACHES[kv_cache]
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    module.eval()
    if attention == "auto":
        attention = "bf16" if precision in ("bf16", "int8") and device.type == "cpu" else "fp32"
    _set_sequence_attention(module, attention)
    if precision == "int8":
        if device.type != "cpu":
            raise ConfigError(f"precision int8 (dynamic quantisation) runs on CPU only; the model is on {device}. "
                              "Use bf16 on this device.")
        streamed = _int8_stream_linears(module, fused_step) if pack and int8_streams_vectorized() else frozenset()
        if streamed:  # int8 stream blocks (the AR decoder's for the fused step); the rest (if any): torch.ao
            others = frozenset(id(child) for child in module.modules() if type(child) is nn.Linear and id(child) not in streamed)
            _replace_linears(module, streamed, others, dtype=torch.int8, pack=False)
            fold_activations(module)
        return _quantize_int8(module)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    compiled = compile_targets(module) if compile else []
    compiled_linears = frozenset(id(linear) for stack in compiled for linear in stack.modules() if type(linear) is nn.Linear)
    if precision == "bf16":  # compiled stacks: plain bf16 weights, which Inductor packs itself
        for stack in compiled:
            _replace_linears(stack, dtype=dtype, pack=False)
    pack = pack and device.type == "cpu" and onednn_packing_available()
    if pack or precision == "bf16":
        streamed = _fused_step_linears(module) if pack and fused_step else frozenset()
        _replace_linears(module, streamed, compiled_linears, dtype=dtype, pack=pack)
        if streamed:
            fold_activations(module)
    for stack in compiled:
        _set_sequence_attention(stack, "fp32")  # Inductor traces torch's attention, not the compiled kernel
        compile_module(stack)
    return module
