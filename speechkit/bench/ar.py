"""AR decoding benchmark: ms per step, tokens/s, real-time factor and the bandwidth floor.

Usage::

    speechkit bench ar [--sizes paper,default] [--batch 1,8] [--precision fp32,bf16,int8] \\
        [--kv-cache fp32,bf16] [--threads 2] [--device cpu|cuda] [--output-seconds 10] [--out bench_ar.json]

For every size x precision x KV-cache precision x batch it builds the random-weight AR LM of
:mod:`speechkit.bench.scenario`, applies the precision (:func:`speechkit.infer.apply_precision`)
and runs ``generate_batch`` on a 3 s prompt for 10 s of output (the real decoding loop: KV cache,
sampling, per-sequence stopping, guards). It reports the prompt encoding (prefill) time, ms per
decoding step and, on CPU, the part of it spent outside the decoder stacks' steps (``loop_ms_per_step``:
embeddings, heads, sampling, guards, Python), generated tokens/s, the AR real-time factor, peak memory and, for batch 1, the
floor: bytes read per step (linear weights + the KV cache at the average length) divided by the
memory bandwidth measured just before the run, and the ratio of the measured step to it. Every
precision is also checked against the plain fp32 model (:class:`GreedyReference`): the share of
greedy tokens it reproduces given the same history, and its largest logit difference, through
the parallel pass and through the KV-cached decoding steps. Batch sizes above 1 also report
``batch_speedup`` (fastest run over fastest batch-1 run) and, with ``--repeats``,
``batch_speedup_paired`` (the median over turns of the ratio of two runs made seconds apart).
On CUDA every model and batch size first runs once untimed (``warm_up_runs``, see
:func:`~speechkit.bench.timing.warm_up_runs`), and a step's time is read from CUDA events.
"""
from __future__ import annotations

import dataclasses
import inspect
import statistics
import sys
import time
from typing import Any, Callable, Sequence

import torch
from torch import nn

from speechkit.bench.bandwidth import kv_cache_bytes, kv_element_bytes, linear_weight_bytes, measure_bandwidth
from speechkit.bench.report import bench_parser, finish, parse_common
from speechkit.bench.scenario import NEVER, BenchSize, Scenario, build_ar, get_size, make_scenario
from speechkit.bench.timing import Clock, PeakMemory, synchronize, torch_threads, warm_up_runs
from speechkit.errors import ConfigError
from speechkit.infer.precision import apply_precision
from speechkit.nn.fused_decode import FusedDecoder
from speechkit.nn.graph_decode import GraphDecoder
from speechkit.nn.lean_decode import LeanDecoder
from speechkit.nn.transformer import TransformerStack

AGREEMENT_FRAMES = 100


def _instrument(model: nn.Module, clock: Clock) -> dict[str, Any]:
    """Make ``model.prefill`` mark ``prefilled`` on ``clock``, count ``decode_step`` calls and,
    on CPU, add up the seconds spent in the decoder stacks' steps (``stack_s``: the fused or lean
    step; the rest of a step is the loop around it: embeddings, heads, sampling, guards). Instance
    attributes shadow the methods, for this benchmark's model only (:func:`_restore` removes them)."""
    counts: dict[str, Any] = {"steps": 0, "stack_s": 0.0 if clock.device.type == "cpu" else None}
    prefill, decode_step = model.prefill, model.decode_step

    def timed_prefill(*args: Any, **kwargs: Any) -> Any:
        result = prefill(*args, **kwargs)
        clock.mark("prefilled")
        return result

    def counted_step(*args: Any, **kwargs: Any) -> Any:
        counts["steps"] += 1
        return decode_step(*args, **kwargs)

    def timed_stack_step(stack_step: Callable[..., Any]) -> Callable[..., Any]:
        def step(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            result = stack_step(*args, **kwargs)
            counts["stack_s"] += time.perf_counter() - start
            return result
        return step

    model.prefill, model.decode_step = timed_prefill, counted_step  # type: ignore[method-assign]
    if counts["stack_s"] is not None:  # on CUDA a step is queued, not run: no per-step clock
        for stack in _stacks(model):
            stack.decode_step = timed_stack_step(stack.decode_step)  # type: ignore[method-assign]
    return counts


def _stacks(model: nn.Module) -> list[TransformerStack]:
    return [module for module in model.modules() if isinstance(module, TransformerStack)]


def _restore(model: nn.Module) -> None:
    """Undo :func:`_instrument`: back to the classes' methods."""
    del model.prefill, model.decode_step
    for stack in _stacks(model):
        stack.__dict__.pop("decode_step", None)


def time_generation(model: nn.Module, scenario: Scenario, device: torch.device, *, seed: int = 0) -> dict[str, Any]:
    """Run one sampled ``generate_batch`` -> prefill/decode seconds, steps, frames per row, peak MB."""
    clock = Clock(device)
    counts = _instrument(model, clock)
    generator = torch.Generator(device=device).manual_seed(seed)
    synchronize(device)
    try:
        with PeakMemory(device) as memory, torch.inference_mode():
            clock.mark("start")
            generation = model.generate_batch(*scenario.ar_args(), num_target_phones=scenario.num_target_phones,
                                              generator=generator)
            clock.mark("end")
    finally:
        _restore(model)
    frames = [int(codes.numel()) for codes in generation.codes]
    return {
        "prefill_s": clock.seconds("start", "prefilled"),
        "decode_s": clock.seconds("prefilled", "end"),
        "steps": counts["steps"],
        "stack_s": counts["stack_s"],
        "frames": frames,
        "peak_memory_mb": memory.peak_mb,
    }


@dataclasses.dataclass
class GreedyReference:
    """The fp32 model's greedy output on one prompt, as a teacher-forcing batch, and its logits
    FloatTensor[T, K+1] on the output frames (rows ``first:last`` of the model's logits)."""

    batch: dict[str, torch.Tensor]
    logits: torch.Tensor
    first: int
    last: int
    prompt: tuple[torch.Tensor, ...] = ()

    @classmethod
    def decode(cls, reference: nn.Module, scenario: Scenario, frames: int) -> "GreedyReference":
        """Greedy decoding of the first prompt for ``frames`` frames (repetition guards off)."""
        one = [tensor[:1] for tensor in scenario.ar_args()]
        phones, phone_lens, phone_langs, prompt, prompt_lens, langs = one
        saved = reference.config
        reference.config = dataclasses.replace(saved, repeat_run_limit=0, loop_min_repeats=0, max_frames=frames)
        try:
            with torch.inference_mode():
                greedy = reference.generate_batch(*one, num_target_phones=scenario.num_target_phones[:1],
                                                  temperature=0.0).codes[0]
        finally:
            reference.config = saved
        codes = torch.cat([prompt[0, : int(prompt_lens[0])], greedy]).unsqueeze(0)
        batch = {"phones": phones, "phone_lens": phone_lens, "phone_langs": phone_langs, "codes": codes,
                 "code_lens": torch.tensor([codes.shape[1]], device=codes.device), "code_langs": langs,
                 "prompt_lens": prompt_lens}
        first, last = int(prompt_lens[0]), codes.shape[1]
        return cls(batch, cls.score(reference, batch, first, last), first, last, tuple(one))

    @staticmethod
    def score(model: nn.Module, batch: dict[str, torch.Tensor], first: int, last: int) -> torch.Tensor:
        with torch.inference_mode():
            return model(batch)["logits"][0, first:last].float()

    def score_cached(self, model: nn.Module) -> torch.Tensor | None:
        """The same logits through ``model``'s KV-cached decoding (prefill, then one decode step
        per greedy frame), so the cache's precision counts too; None for models whose steps take
        more than the last tokens (``aligned_ar``) or read several frames per step."""
        if len(inspect.signature(model.decode_step).parameters) != 2 or getattr(model.config, "frames_per_step", 1) != 1:
            return None
        frames = self.batch["codes"][0, self.first : self.last]
        with torch.inference_mode():
            state, logits = model.prefill(*self.prompt, max_steps=len(frames))
            rows = [logits[:, 0]]
            for frame in frames[:-1]:
                rows.append(model.decode_step(state, frame.view(1, 1))[:, 0])
        return torch.cat(rows).float()

    def _compare(self, got: torch.Tensor) -> tuple[float, float]:
        expected = self.logits
        possible = expected > NEVER / 2
        scale = expected[possible].std().clamp(min=1e-9)
        return (float((expected.argmax(-1) == got.argmax(-1)).float().mean()),
                float((expected - got)[possible].abs().max() / scale))

    def agreement(self, candidate: nn.Module) -> dict[str, float]:
        """``greedy_token_agreement``: share of output frames where ``candidate``, fed the
        reference's greedy history (teacher forcing, one parallel pass), picks the same token,
        i.e. makes greedy decoding's choice. (A random-weight model's logits are nearly flat, so
        free-running outputs would part at the first near-tie and measure the ties, not the
        precision.) ``max_logit_error``: largest logit difference in units of the logits' standard
        deviation (classes the benchmark disables, e.g. the end token, left out).
        ``cached_token_agreement``/``cached_max_logit_error``: the same through the candidate's
        KV-cached decoding steps (:meth:`score_cached`: weights and cache precision together)."""
        agreement, error = self._compare(self.score(candidate, self.batch, self.first, self.last))
        result = {"greedy_token_agreement": agreement, "max_logit_error": error}
        cached = self.score_cached(candidate)
        if cached is not None:
            result["cached_token_agreement"], result["cached_max_logit_error"] = self._compare(cached)
        return result


def bench_ar_size(size: BenchSize, *, batches: Sequence[int], precisions: Sequence[str], device: torch.device,
                  output_seconds: float, bandwidth_gbps: Callable[[], float], agreement: bool = True,
                  pack: bool = True, kv_caches: Sequence[str] = ("fp32",), repeats: int = 1,
                  log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """All precision x KV cache x batch rows of one size (see the module docstring; ``pack``,
    ``kv_caches``: see :func:`~speechkit.infer.precision.apply_precision`). With ``repeats`` > 1
    each row is the run with the shortest decoding (``decode_s_runs`` lists all of them):
    on a shared machine other work only ever adds time. The batch sizes of a model take turns
    (batch 1, batch 8, batch 1, ...), so that a drift of the host's speed over minutes touches
    every batch size alike instead of skewing their ratio. ``bandwidth_gbps`` measures the memory
    bandwidth: it is called before every batch-1 run, and the floor of a row uses the bandwidth
    measured just before the run it reports (that of a shared host drifts by tens of per cent
    over minutes)."""
    rows: list[dict[str, Any]] = []
    probe = make_scenario(size, 1, output_seconds=output_seconds)
    reference = None
    if agreement:
        frames = min(AGREEMENT_FRAMES, int(probe.output_frames[0]))
        reference = GreedyReference.decode(build_ar(size, probe).to(device), probe.to(device), frames)
    for precision in precisions:
        for kv_cache in kv_caches:
            model = apply_precision(build_ar(size, probe).to(device), precision, pack=pack, kv_cache=kv_cache)
            weight_bytes = linear_weight_bytes(model)
            step = decoding_step_name(model, device)
            quality = reference.agreement(model) if reference is not None else {}
            scenarios = {batch: make_scenario(size, batch, output_seconds=output_seconds) for batch in batches}
            runs: dict[int, list[dict[str, Any]]] = {batch: [] for batch in batches}
            warm_up = warm_up_runs(device)
            for batch in batches:
                for _ in range(warm_up):
                    time_generation(model, scenarios[batch].to(device), device)
            for _ in range(max(1, repeats)):  # the batch sizes take turns, so host drift touches all alike
                for batch in batches:
                    bandwidth = bandwidth_gbps() if batch == 1 else None
                    timing = time_generation(model, scenarios[batch].to(device), device)
                    runs[batch].append({**timing, "bandwidth_gbps": bandwidth})
            for batch in batches:
                timing = min(runs[batch], key=lambda run: run["decode_s"])
                timing["decode_s_runs"] = [run["decode_s"] for run in runs[batch]]
                row = {**_row(size, precision, batch, scenarios[batch], timing, weight_bytes, timing["bandwidth_gbps"],
                              quality, kv_cache), "step": step, "warm_up_runs": warm_up}
                if batch != 1 and 1 in runs:
                    row["batch_speedup_paired"] = paired_speedup(runs[1], runs[batch])
                rows.append(row)
                log(_progress(rows[-1]))
            del model
    return rows


def paired_speedup(single: Sequence[dict[str, Any]], batched: Sequence[dict[str, Any]]) -> float:
    """The median over turns of (tokens/s of the batched run) / (tokens/s of the batch-1 run of the
    same turn): runs ``time_generation`` results in turn order. Each turn's two runs are seconds
    apart, so a drift or burst of the host's memory bandwidth, which moves batch 1 (memory-bound)
    more than batch 8, cancels out of it; ``batch_speedup`` divides the fastest runs, which may
    come from different moments."""
    return statistics.median((sum(b["frames"]) / b["decode_s"]) / (sum(s["frames"]) / s["decode_s"])
                             for s, b in zip(single, batched))


def decoding_step_name(model: nn.Module, device: torch.device) -> str:
    """How ``model``'s decoder stacks take a decoding step here: ``fused`` (one compiled call,
    :mod:`speechkit.nn.fused_decode`), ``graph`` (a recorded CUDA graph, :mod:`speechkit.nn.graph_decode`),
    ``lean`` (layer by layer with few Python calls) or ``module``."""
    stacks = [module for module in model.modules() if isinstance(module, TransformerStack)]
    if device.type == "cpu" and FusedDecoder.enabled() and stacks and all(FusedDecoder.prepared(s) for s in stacks):
        return "fused"
    if not LeanDecoder.enabled():
        return "module"
    graphs = device.type == "cuda" and GraphDecoder.enabled() and stacks and all(LeanDecoder.supports(s) for s in stacks)
    return "graph" if graphs else "lean"


def _row(size: BenchSize, precision: str, batch: int, scenario: Scenario, timing: dict[str, Any], weight_bytes: int,
         bandwidth_gbps: float | None, quality: dict[str, float], kv_cache: str = "fp32") -> dict[str, Any]:
    """One result row: timings, throughput, RTF and (batch 1) the bandwidth floor."""
    config = size.ar
    frames = timing["frames"]
    step_ms = 1000 * timing["decode_s"] / max(1, timing["steps"])
    audio_s = sum(frames) / size.frame_rate
    prompt = int(scenario.prompt_lens[0]) + int(scenario.phone_lens.max()) + 1  # phones + BOS + prompt frames
    average_positions = prompt + max(frames) / 2
    read_bytes = weight_bytes + kv_cache_bytes(num_layers=config["num_layers"], d_model=config["d_model"],
                                               positions=average_positions, batch_size=batch,
                                               element_size=kv_element_bytes(kv_cache, config["d_model"] // config["num_heads"]))
    row: dict[str, Any] = {
        "size": size.name, "model": config["name"], "precision": precision, "kv_cache": kv_cache, "batch": batch,
        "prefill_s": timing["prefill_s"], "decode_s": timing["decode_s"], "steps": timing["steps"],
        "frames": sum(frames), "ms_per_step": step_ms, "decode_s_runs": timing["decode_s_runs"],
        "loop_ms_per_step": (None if timing.get("stack_s") is None
                             else 1000 * (timing["decode_s"] - timing["stack_s"]) / max(1, timing["steps"])),
        "tokens_per_s": sum(frames) / timing["decode_s"] if timing["decode_s"] > 0 else None,
        "rtf": (timing["prefill_s"] + timing["decode_s"]) / audio_s,
        "peak_memory_mb": timing["peak_memory_mb"],
        "weight_mb": weight_bytes / 1e6, "kv_cache_mb_per_step": (read_bytes - weight_bytes) / 1e6,
    }
    if bandwidth_gbps:
        floor_ms = 1000 * read_bytes / (bandwidth_gbps * 1e9)
        row.update(bandwidth_gbps=bandwidth_gbps, floor_ms=floor_ms, floor_ratio=step_ms / floor_ms)
    return {**row, **quality}


def _progress(row: dict[str, Any]) -> str:
    return (f"ar {row['size']} {row['precision']} kv {row['kv_cache']} batch {row['batch']}: {row['ms_per_step']:.2f} ms/step, "
            f"{row['tokens_per_s']:.1f} tokens/s, RTF {row['rtf']:.3f}")


def add_speedups(rows: list[dict[str, Any]]) -> None:
    """``batch_speedup``: tokens/s of each row over the batch-1 row of its size, precision and KV cache."""
    single = {(r["size"], r["precision"], r.get("kv_cache")): r["tokens_per_s"] for r in rows if r["batch"] == 1}
    for row in rows:
        base = single.get((row["size"], row["precision"], row.get("kv_cache")))
        if base:
            row["batch_speedup"] = row["tokens_per_s"] / base


COLUMNS = [("size", "{}"), ("precision", "{}"), ("kv_cache", "{}"), ("step", "{}"), ("batch", "{}"), ("ms_per_step", "{:.2f}"), ("loop_ms_per_step", "{:.2f}"), ("tokens_per_s", "{:.1f}"),
           ("batch_speedup", "{:.2f}x"), ("batch_speedup_paired", "{:.2f}x"), ("rtf", "{:.3f}"), ("prefill_s", "{:.2f}"), ("bandwidth_gbps", "{:.1f}"), ("floor_ms", "{:.2f}"),
           ("floor_ratio", "{:.2f}x"), ("greedy_token_agreement", "{:.2f}"), ("max_logit_error", "{:.3f}"),
           ("cached_token_agreement", "{:.2f}"), ("cached_max_logit_error", "{:.3f}"), ("peak_memory_mb", "{:.0f}")]


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``, run the benchmark, print the table, write the JSON; returns the result."""
    parser = bench_parser("ar", __doc__)
    parser.add_argument("--bandwidth-mb", type=int, default=256, help="tensor size of the bandwidth measurement")
    parser.add_argument("--repeats", type=int, default=1,
                        help="decode each row this many times and report the fastest (default 1)")
    args = parse_common(parser, argv)
    if args.repeats < 1:
        raise ConfigError(f"--repeats {args.repeats}: give the number of runs per row, >= 1.")
    device = torch.device(args.device)
    with torch_threads(args.threads):
        bandwidth = measure_bandwidth(device, megabytes=args.bandwidth_mb)
        rows: list[dict[str, Any]] = []
        for name in args.sizes:
            rows += bench_ar_size(get_size(name), batches=args.batch, precisions=args.precision, device=device,
                                  output_seconds=args.output_seconds,
                                  bandwidth_gbps=lambda: measure_bandwidth(device, megabytes=args.bandwidth_mb)["floor_gbps"],
                                  agreement=not args.no_agreement, pack=not args.no_pack, kv_caches=args.kv_cache,
                                  repeats=args.repeats,
                                  log=lambda line: print(line, file=sys.stderr))
    add_speedups(rows)
    return finish("ar", args, {"bandwidth": bandwidth, "rows": rows}, COLUMNS)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (``speechkit bench ar``)."""
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
