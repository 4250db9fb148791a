"""The batch-N decoding ratio step for step, over minutes, by the host's memory rate at the time.

On a shared host the memory's read rate drifts between slow and fast spells within seconds, and a
batch-1 step (bound by reading the weights) follows it while a batch-8 step (partly bound by its
multiply-adds) does not. This tool shows that effect. For ``--seconds`` it runs rounds of:
1. the rate ``torch.sum`` reads a 256 MB tensor;
2. 5 decoding steps of the AR decoder stack at batch 1 and at batch ``--batch``, in alternating
   order, at ``--positions`` cached positions (the average of a 3 s prompt and 10 s of output at
   paper size).

It then prints the ratio ``share x batch x t1 / tN`` (tokens/s of batch N over batch 1, with
``--share`` of the steps' rows still decoding, 0.95 in ``speechkit bench ar``'s scenario):
quantiles, the share of rounds at or above ``--target``, and the same per band of read rate.

The stack takes its steps as decoding does (``TransformerStack.decode_step``: the fused step on
CPU), with random weights, after :func:`speechkit.infer.apply_precision`.

Usage::

    python tools/batch_ratio_by_spell.py [--size paper] [--precision fp32] [--kv-cache int8] [--seconds 300]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from speechkit.bench.bandwidth import read_gbps
from speechkit.bench.scenario import build_ar, get_size, make_scenario
from speechkit.infer.precision import KV_CACHES, PRECISIONS, apply_precision

BANDS = ((0, 30), (30, 40), (40, 50), (50, 1000))  # GB/s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="paper")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    parser.add_argument("--kv-cache", default="int8", choices=sorted(KV_CACHES))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--positions", type=int, default=700)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--share", type=float, default=0.95, help="share of the rows still decoding")
    parser.add_argument("--target", type=float, default=5.6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = get_size(args.size)
    model = apply_precision(build_ar(size, make_scenario(size, 1)), args.precision, kv_cache=args.kv_cache)
    stack = model.decoder
    batches = (1, args.batch)
    caches = {b: stack.new_cache(b, args.positions + 1, dtype=KV_CACHES[args.kv_cache], device=torch.device("cpu"))
              for b in batches}
    inputs = {b: torch.randn(b, 1, stack.d_model) for b in batches}
    for batch, cache in caches.items():  # keys and values of a plausible scale (a zeroed cache attends uniformly)
        shape = (batch, stack.num_heads, args.positions + 1, stack.d_model // stack.num_heads)
        for layer in range(len(stack.layers)):  # stored as the cache stores them (rounded for int8 / int4)
            cache.store(layer, torch.randn(shape), torch.randn(shape), 0)
    probe = torch.ones(64_000_000)
    rounds: list[tuple[float, float, float]] = []  # (GB/s, batch-1 ms, batch-N ms)
    end = time.monotonic() + args.seconds
    with torch.inference_mode():
        while time.monotonic() < end or not rounds:
            rate = read_gbps(probe)
            step_ms: dict[int, float] = {}
            for batch in batches if len(rounds) % 2 else batches[::-1]:
                times = []
                for _ in range(5):
                    began = time.perf_counter()
                    stack.decode_step(inputs[batch], caches[batch], args.positions)
                    times.append(time.perf_counter() - began)
                step_ms[batch] = 1000 * statistics.median(times)
            rounds.append((rate, step_ms[1], step_ms[args.batch]))

    def ratio(row: tuple[float, float, float]) -> float:
        return args.share * args.batch * row[1] / row[2]

    ratios = sorted(ratio(row) for row in rounds)

    def quantile(p: float) -> float:
        return ratios[min(len(ratios) - 1, int(p * len(ratios)))]

    print(f"{args.size} {args.precision}, KV cache {args.kv_cache}, {args.positions} positions, {args.threads} thread(s): "
          f"{len(rounds)} rounds in {args.seconds:.0f} s")
    print(f"ratio {args.share} x {args.batch} x t1 / t{args.batch}: p10 {quantile(0.1):.2f}, median {quantile(0.5):.2f}, "
          f"p90 {quantile(0.9):.2f}; rounds at or above {args.target}x: {sum(r >= args.target for r in ratios) / len(ratios):.0%}")
    for low, high in BANDS:
        band = [row for row in rounds if low <= row[0] < high]
        if band:
            print(f"sum read {low}-{high} GB/s: {len(band)} rounds, batch 1 {statistics.median(r[1] for r in band):.3f} ms, "
                  f"batch {args.batch} {statistics.median(r[2] for r in band):.3f} ms, ratio median "
                  f"{statistics.median(ratio(r) for r in band):.2f}, at or above {args.target}x "
                  f"{sum(ratio(r) >= args.target for r in band) / len(band):.0%}")


if __name__ == "__main__":
    main()
