"""How fast the decoding attention gets through a KV cache: from memory, from the CPU's caches, and
the reading alone.

Times :func:`speechkit.nn.decode_kernel.decode_attention` (the compiled kernel) over ``--layers``
distinct caches of ``--batch`` sequences x ``--heads`` heads x ``--positions`` positions (a
decoding step's attention at paper size: 12 layers, 16 heads of 64), three ways per round:

* ``memory``: every layer's cache once, so each is read from memory (146 MB for int8, batch 8,
  700 positions);
* ``cache``: the first layer's cache ``--layers`` times (12 MB at batch 8, int8: it stays in L3),
  the same arithmetic with little memory traffic;
* ``read``: the bytes of all layers divided by the rate ``torch.sum`` reads a 256 MB tensor in the
  same round (the host's memory rate drifts: each round measures it again).

If ``memory`` is close to the larger of ``cache`` and ``read``, the attention overlaps its
arithmetic with its reading; if it is close to their sum, it does not. Prints medians over the
rounds (and their range). For an A/B across commits, run it on each checkout in turn.

Usage::

    python tools/cache_attention_rate.py [--kv-cache int8] [--batch 8] [--positions 700] [--threads 2] [--rounds 12]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from speechkit.bench.bandwidth import read_gbps
from speechkit.infer.precision import KV_CACHES
from speechkit.nn.decode_kernel import QUANTIZED_KV_BITS, compiled_kernels, quantize_rows


def make_layers(kv_cache: str, layers: int, batch: int, heads: int, positions: int, head_dim: int,
                seed: int = 0) -> list[tuple[torch.Tensor, ...]]:
    """Per layer: keys and values [B, H, S, Dh] in the cache's dtype (int4: pairs [B, H, S, Dh / 2]),
    and for int8 and int4 their scales [B, H, S]."""
    generator = torch.Generator().manual_seed(seed)
    made = []
    for _ in range(layers):
        keys = torch.randn(batch, heads, positions, head_dim, generator=generator)
        values = torch.randn(batch, heads, positions, head_dim, generator=generator)
        bits = QUANTIZED_KV_BITS.get(KV_CACHES[kv_cache])
        if bits is not None:
            (keys, key_scales), (values, value_scales) = quantize_rows(keys, bits), quantize_rows(values, bits)
            made.append((keys, values, key_scales, value_scales))
        else:
            made.append((keys.to(KV_CACHES[kv_cache]), values.to(KV_CACHES[kv_cache])))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kv-cache", default="int8", choices=sorted(KV_CACHES))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--positions", type=int, default=700)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    kernel = compiled_kernels()
    if kernel is None:
        raise SystemExit("The compiled decoding kernel is not available here (see `speechkit doctor`).")
    torch.set_num_threads(args.threads)
    layers = make_layers(args.kv_cache, args.layers, args.batch, args.heads, args.positions, args.head_dim)
    query = torch.randn(args.batch, args.heads, 1, args.head_dim)
    nbytes = sum(t.numel() * t.element_size() for layer in layers for t in layer)
    probe = torch.ones(64_000_000)  # 256 MB, far beyond the caches

    def attend(layer: tuple[torch.Tensor, ...]) -> None:
        keys, values, *scales = layer
        kernel.decode_attention(query, keys, values, None, *(scales or (None, None)))

    times: dict[str, list[float]] = {"memory": [], "cache": [], "read": []}
    rates: list[float] = []
    attend(layers[0])  # first call: thread pool and pages
    for _ in range(args.rounds):
        rates.append(read_gbps(probe))
        times["read"].append(1000 * nbytes / (rates[-1] * 1e9))
        began = time.perf_counter()
        for layer in layers:
            attend(layer)
        times["memory"].append(1000 * (time.perf_counter() - began))
        attend(layers[0])
        began = time.perf_counter()
        for _ in layers:
            attend(layers[0])
        times["cache"].append(1000 * (time.perf_counter() - began))
    print(f"{args.kv_cache} cache, batch {args.batch}, {args.heads} heads of {args.head_dim}, {args.positions} positions, "
          f"{args.layers} layers ({nbytes / 1e6:.1f} MB), {args.threads} thread(s), {args.rounds} rounds; "
          f"torch.sum read {statistics.median(rates):.1f} GB/s ({min(rates):.1f}-{max(rates):.1f})")
    for name, values in times.items():
        print(f"{name:>7}: median {statistics.median(values):.2f} ms ({min(values):.2f}-{max(values):.2f})")


if __name__ == "__main__":
    main()
