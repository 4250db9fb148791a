"""A/B of the decoding step's attention: the compiled kernel, two batched matmuls, SDPA.

Times the paper-size AR's decoding step at the middle of a 10 s output (its average cost), with
the attention implementations interleaved round by round so a busy machine affects all alike;
prints the best and the median ms/step of each. The speed does not depend on the weights (random).

* ``kernel``: :func:`speechkit.nn.attention.decode_step_attention` as decoding uses it (the
  compiled kernel of :mod:`speechkit.nn.decode_kernel` where it builds);
* ``matmul``: :func:`speechkit.nn.attention.single_query_attention` (two batched matmuls);
* ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention``.

Usage::

    python tools/ab_decode_attention.py --batch 8 --precision fp32 --kv-cache bf16 --threads 2 [--rounds 4]
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F

from speechkit.bench.scenario import build_ar, get_size, make_scenario
from speechkit.infer.precision import apply_precision
from speechkit.nn import attention


def _sdpa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Any = None) -> torch.Tensor:
    return F.scaled_dot_product_attention(query, key.to(query.dtype), value.to(query.dtype), attn_mask=mask)


def _matmul(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Any = None) -> torch.Tensor:
    return attention.single_query_attention(query, key.to(query.dtype), value.to(query.dtype), mask)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--kv-cache", default="fp32", choices=["fp32", "bf16"],
                        help="fp32 or bf16 (an int8 cache has only the kernel's path)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8, help="decoding steps per round and kernel")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = get_size("paper")
    scenario = make_scenario(size, args.batch, output_seconds=10.0)
    # the layer-by-layer step (the fused step of an fp32 model calls its own attention)
    model = apply_precision(build_ar(size, scenario), args.precision, kv_cache=args.kv_cache, fused_step=False)
    kernels = {"kernel": attention.decode_step_attention, "matmul": _matmul, "sdpa": _sdpa}
    times: dict[str, list[float]] = {name: [] for name in kernels}
    half = int(scenario.output_frames.max()) // 2
    with torch.inference_mode():
        state, logits = model.prefill(*scenario.ar_args(), max_steps=2 * half + args.steps + 2)
        start, positions, tokens = state.start + half, state.positions + half, logits.argmax(-1)
        try:
            for _ in range(args.rounds):
                for name, kernel in kernels.items():
                    attention.decode_step_attention = kernel  # the name the decoding step calls (KVCache.step_attention)
                    state.start, state.positions = start, positions
                    model.decode_step(state, tokens)  # warm-up
                    began = time.perf_counter()
                    for _ in range(args.steps):
                        model.decode_step(state, tokens)
                    times[name].append(1000 * (time.perf_counter() - began) / args.steps)
        finally:
            attention.decode_step_attention = kernels["kernel"]
    for name, values in times.items():
        print(f"{name:>13}: best {min(values):.2f} ms/step, median {statistics.median(values):.2f} "
              f"(batch {args.batch}, {args.precision}, KV cache {args.kv_cache}, {start} cached positions, "
              f"{args.threads} thread(s))")


if __name__ == "__main__":
    main()
