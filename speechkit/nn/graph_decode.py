"""A decoding step of a :class:`~speechkit.nn.transformer.TransformerStack` replayed as one CUDA graph.

On a GPU a batch-1 step is bound by the host, not the memory: the paper-size step launches
more than a hundred small kernels from Python. It took 2.4 ms on an H200 whose memory reads its weights in
0.17 ms (docs/performance.md). A CUDA graph records those launches once per generation and
replays them with one call.

A graph replays fixed kernels on fixed memory. So the step must not depend on host values that
change from step to step. :class:`StaticStepDecoder` is that step:
- the position to write is a 0-dim LongTensor on the device;
- the new keys and values go into the cache with ``index_copy_`` at that position;
- each query attends to the whole preallocated cache, masked to the positions written so far
  (``key_valid`` and ``<= position``), instead of a slice ``[0, start + 1)`` whose length
  changes every step.

It is the same computation as :class:`~speechkit.nn.lean_decode.LeanDecoder`'s, up to float
rounding (tested on the CPU). :class:`GraphDecoder` records it on CUDA and replays it.
"""
from __future__ import annotations

import os
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from speechkit.nn.attention import KVCache
from speechkit.nn.lean_decode import LeanDecoder


class StaticStepDecoder:
    """One decoding step of ``stack`` at a position given as a tensor (see the module docstring).

    Args:
        stack: an unconditioned TransformerStack (:meth:`LeanDecoder.supports`).
        cache: the generation's KV cache (its layout is bound here).
    """

    def __init__(self, stack: nn.Module, cache: KVCache) -> None:
        self.stack = stack
        self._lean = LeanDecoder(stack)  # the bound plan of the layers
        self._cache = weakref.ref(cache)  # a runner kept on the cache must not keep it alive
        self._slots = torch.arange(cache.max_length, device=cache.keys.device)

    def __call__(self, x: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """x: FloatTensor[B, 1, D] (embedded new positions), position: LongTensor[] (where they
        are written) -> FloatTensor[B, 1, D] (normed). Writes the keys and values at ``position``;
        reads nothing from the host."""
        cache = self._cache()
        if cache is None:
            raise RuntimeError("the KV cache of this decoding step was freed")
        index = position.view(1)
        mask = (cache.key_valid & (self._slots <= position))[:, None, None, :]  # [B, 1, 1, L]

        def attend(layer: int, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
            cache.store_at(layer, keys, values, index)
            cached_keys, cached_values = cache.read(layer, cache.max_length, query.dtype)
            return F.scaled_dot_product_attention(query.unsqueeze(2), cached_keys, cached_values, attn_mask=mask)

        return self._lean.run(x, attend)


class GraphDecoder:
    """Runs ``stack``'s decoding step for x FloatTensor[B, 1, D] on CUDA as one recorded graph
    (same call as :class:`LeanDecoder`; the batch size and the cache are fixed per generation).

    Recording runs the step twice on a side stream and then captures it. Those runs write the
    cache's last position, which no step reads before it writes it itself. The graph writes into
    that cache's memory, so it is only ever replayed for that cache: the runner lives on it
    (``cache.step_runner``) and keeps only a weak reference back, so the two are freed together
    as soon as the generation ends.
    """

    def __init__(self, stack: nn.Module, x: torch.Tensor, cache: KVCache) -> None:
        self.stack = stack
        self._cache = weakref.ref(cache)
        #: kept: the graph reads tensors it owns (the slot indices)
        self._step = step = StaticStepDecoder(stack, cache)
        self._input = torch.zeros_like(x)
        self._position = torch.full((), cache.max_length - 1, dtype=torch.long, device=x.device)
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(2):  # lazy initialisation (cuBLAS handles, workspaces) outside the capture
                step(self._input, self._position)
        torch.cuda.current_stream(x.device).wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._output = step(self._input, self._position)

    @staticmethod
    def enabled() -> bool:
        """False with ``SPEECHKIT_CUDA_GRAPHS=0`` in the environment (steps then run layer by layer,
        :class:`LeanDecoder`: for A/B measurements and debugging)."""
        return os.environ.get("SPEECHKIT_CUDA_GRAPHS", "1") != "0"

    @staticmethod
    def supports(stack: nn.Module, x: torch.Tensor, cache: KVCache) -> bool:
        """A CUDA step of one position per sequence of the cache's batch, for a stack the lean plan
        supports."""
        return (x.device.type == "cuda" and x.dim() == 3 and x.shape[1] == 1 and x.shape[0] == cache.keys.shape[1]
                and cache.keys.device == x.device and LeanDecoder.supports(stack))

    def __call__(self, x: torch.Tensor, cache: KVCache, start: int) -> torch.Tensor:
        """x: FloatTensor[B, 1, D] -> FloatTensor[B, 1, D] (normed, a new tensor); writes the
        keys/values at ``start`` and sets ``cache.length = start + 1``."""
        if cache is not self._cache():
            raise RuntimeError("a GraphDecoder replays the step it recorded for one KV cache; this is another")
        if start >= cache.max_length:
            raise RuntimeError(f"KV cache overflow: writing up to {start + 1} of {cache.max_length} positions")
        self._input.copy_(x)
        self._position.fill_(start)
        self._graph.replay()
        cache.length = start + 1
        return self._output.clone()
