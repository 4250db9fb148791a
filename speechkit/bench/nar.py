"""NAR benchmark: seconds for all levels 2..L of one output, and agreement with fp32.

Usage::

    speechkit bench nar [--sizes paper,default] [--batch 1] [--precision fp32,bf16,int8] [--compile] \\
        [--attention auto|fp32|bf16[,...]] [--threads 2] [--device cpu|cuda] \\
        [--output-seconds 10 | --positions 435] [--out bench_nar.json]

For every size x precision x batch it runs the random-weight NAR of
:mod:`speechkit.bench.scenario` (``valle_nar``: one pass per level 2..L; ``continuous_nar``:
one pass, then re-quantisation) on the target phones, the whole 3 s prompt and the level-1
codes of the output. The sequence has ``positions`` = target phones + prompt frames + output
frames (``--positions`` picks the output length that gives that many). Reported: seconds, the
NAR real-time factor, peak memory, and ``code_agreement``, the share of codes of levels 2..L
equal to those of the fp32 model. ``--compile`` adds, for fp32 and bf16, rows of the same model
with its Transformer through ``torch.compile`` (``apply_precision(..., compile=True)``): the first
call of each batch size compiles (``compile_s``, not counted in ``nar_s``), the second is timed.
``--attention`` picks the arithmetic of the NAR's attention (``attention`` column; several values
time each precision with each, e.g. ``--attention fp32,bf16`` against torch's float32 attention).
On CUDA every model and batch size first runs once untimed (:func:`~speechkit.bench.timing.warm_up_runs`).
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Sequence

import torch
from torch import nn

from speechkit.bench.report import bench_parser, csv_list, finish, parse_common
from speechkit.bench.scenario import PHONES_PER_SECOND, BenchSize, Scenario, build_nar, get_size, make_scenario
from speechkit.bench.timing import PeakMemory, timed, torch_threads, warm_up_runs
from speechkit.errors import ConfigError
from speechkit.infer.precision import ATTENTIONS, apply_precision
from speechkit.nn.attention import MultiHeadAttention
from speechkit.nn.bf16_attention import bf16_attention_supported

PROMPT_SECONDS = 3.0


def output_seconds_for(size: BenchSize, positions: int) -> float:
    """Output length whose NAR sequence (target phones + 3 s prompt + output frames) has ``positions``."""
    seconds = (positions - PROMPT_SECONDS * size.frame_rate) / (PHONES_PER_SECOND + size.frame_rate)
    if seconds <= 0:
        raise ConfigError(f"--positions {positions} leaves no room for output after a {PROMPT_SECONDS:g} s prompt "
                          f"({PROMPT_SECONDS * size.frame_rate:g} frames); give more positions.")
    return seconds


def nar_positions(scenario: Scenario) -> int:
    """Length of the NAR's input sequence for the longest row."""
    return int(scenario.num_target_phones.max()) + int(scenario.prompt_lens.max()) + int(scenario.output_frames.max())


def time_nar(model: nn.Module, scenario: Scenario, device: torch.device) -> tuple[torch.Tensor, float, float | None]:
    """One ``generate_batch`` -> (codes LongTensor[B, L, T], seconds, peak MB)."""
    args = scenario.to(device).nar_args()
    with PeakMemory(device) as memory, torch.inference_mode():
        codes, seconds = timed(device, lambda: model.generate_batch(*args))
    return codes.cpu(), seconds, memory.peak_mb


def attention_arithmetic(model: nn.Module, device: torch.device) -> str:
    """The arithmetic the model's attention over whole sequences runs in on ``device``: "bf16" where
    it is set to and the kernel runs (CPU, AVX512-BF16, see ``bf16_attention_supported``), else "fp32" ("-"
    without attention layers; "fp32/bf16" if they differ)."""
    layers = [layer for layer in model.modules() if isinstance(layer, MultiHeadAttention)]
    def runs_bf16(layer: MultiHeadAttention) -> bool:
        return layer.sequence_precision == "bf16" and device.type == "cpu" and bf16_attention_supported(layer.head_dim)

    found = {"bf16" if runs_bf16(layer) else "fp32" for layer in layers}
    return "/".join(sorted(found, reverse=True)) or "-"


def bench_nar_size(size: BenchSize, *, batches: Sequence[int], precisions: Sequence[str], device: torch.device,
                   output_seconds: float, agreement: bool = True, pack: bool = True, compile: bool = False,
                   attentions: Sequence[str] = ("auto",), log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """All batch x precision (x compiled, with ``compile``) x attention rows of one size (see the
    module docstring; ``pack``, ``compile``, ``attentions``' values: see
    :func:`~speechkit.infer.precision.apply_precision`; a value that gives a precision the same
    arithmetic as an earlier one is not run twice)."""
    rows: list[dict[str, Any]] = []
    scenarios = {batch: make_scenario(size, batch, output_seconds=output_seconds) for batch in batches}
    reference_codes: dict[int, torch.Tensor] = {}
    if agreement:
        reference = build_nar(size).to(device)
        reference_codes = {batch: time_nar(reference, scenarios[batch], device)[0] for batch in batches[:1]}
        del reference
    variants = [(precision, compiled) for precision in precisions
                for compiled in ((False, True) if compile and precision != "int8" else (False,))]
    done: set[tuple[str, bool, str]] = set()
    for (precision, compiled), attention in ((variant, attention) for variant in variants for attention in attentions):
        model = apply_precision(build_nar(size).to(device), precision, pack=pack, compile=compiled, attention=attention)
        arithmetic = attention_arithmetic(model, device)
        if (precision, compiled, arithmetic) in done:
            continue
        done.add((precision, compiled, arithmetic))
        for batch in batches:
            scenario = scenarios[batch]
            compile_s = time_nar(model, scenario, device)[1] if compiled else None  # the first call compiles
            for _ in range(warm_up_runs(device)):
                time_nar(model, scenario, device)
            codes, seconds, peak = time_nar(model, scenario, device)
            audio_s = float(scenario.output_frames.sum()) / size.frame_rate
            row: dict[str, Any] = {
                "size": size.name, "model": size.nar["name"], "precision": precision,
                "compiled": "yes" if compiled else "no", "attention": arithmetic, "batch": batch,
                "positions": nar_positions(scenario),
                "levels": size.num_quantizers - 1, "nar_s": seconds, "compile_s": compile_s,
                "rtf": seconds / audio_s, "peak_memory_mb": peak,
            }
            if batch in reference_codes:
                row["code_agreement"] = float((codes[:, 1:] == reference_codes[batch][:, 1:]).float().mean())
            rows.append(row)
            log(f"nar {size.name} {precision}{' compiled' if compiled else ''} attention {arithmetic} batch {batch}: "
                f"{seconds:.2f} s over {row['positions']} positions")
        del model
    return rows


COLUMNS = [("size", "{}"), ("model", "{}"), ("precision", "{}"), ("compiled", "{}"), ("attention", "{}"),
           ("batch", "{}"), ("positions", "{}"), ("levels", "{}"), ("nar_s", "{:.2f}"), ("compile_s", "{:.1f}"),
           ("rtf", "{:.3f}"), ("code_agreement", "{:.3f}"), ("peak_memory_mb", "{:.0f}")]


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``, run the benchmark, print the table, write the JSON; returns the result."""
    parser = bench_parser("nar", __doc__, batch="1")
    parser.add_argument("--positions", type=int, default=0,
                        help="NAR sequence length to time (sets the output length; 0 = use --output-seconds)")
    parser.add_argument("--compile", action="store_true",
                        help="also time fp32/bf16 with the NAR through torch.compile (its first call compiles)")
    parser.add_argument("--attention", type=csv_list(str, ATTENTIONS), default="auto",
                        help="arithmetic of the NAR's attention (auto: bf16 for bf16/int8 on CPU, else fp32; "
                             "fp32: torch's; bf16: bfloat16 products); several are timed in turn")
    args = parse_common(parser, argv)
    if args.positions < 0:
        raise ConfigError(f"--positions {args.positions}: give a sequence length > 0, or 0 to use --output-seconds.")
    device = torch.device(args.device)
    rows: list[dict[str, Any]] = []
    with torch_threads(args.threads):
        for name in args.sizes:
            size = get_size(name)
            seconds = output_seconds_for(size, args.positions) if args.positions > 0 else args.output_seconds
            rows += bench_nar_size(size, batches=args.batch, precisions=args.precision, device=device,
                                   output_seconds=seconds, agreement=not args.no_agreement, pack=not args.no_pack,
                                   compile=args.compile, attentions=args.attention,
                                   log=lambda line: print(line, file=sys.stderr))
    return finish("nar", args, {"rows": rows}, COLUMNS)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (``speechkit bench nar``)."""
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
