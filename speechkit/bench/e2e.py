"""End-to-end synthesis benchmark: AR, NAR and vocoder in sequence, with each stage's share.

Usage::

    speechkit bench e2e [--sizes paper,default] [--batch 1,8] [--precision fp32,int8] [--kv-cache fp32] \\
        [--threads 2] [--device cpu|cuda] [--output-seconds 10] [--out bench_e2e.json]

For every size x precision x batch: the AR generates the level-1 codes of each sequence
(:func:`speechkit.bench.ar.time_generation`), the NAR fills the other levels from them (a
feature-predicting NAR returns the features), and the vocoder turns each sequence's features
into audio, one sequence at a time as the pipeline does (the ``paper`` size's vocoder takes
random mel frames: its stand-in does not read EnCodec codes; the vocoder runs on the CPU, as
``mel_rvq``'s does in the pipeline, whatever ``--device``). Reported: seconds of each stage,
their real-time factors and the end-to-end one (all stages / seconds of audio made). On CUDA
the AR and NAR of each row first run once untimed (:func:`~speechkit.bench.timing.warm_up_runs`).
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Sequence

import torch

from speechkit.bench.ar import time_generation
from speechkit.bench.report import bench_parser, finish, parse_common
from speechkit.bench.scenario import BenchSize, Scenario, build_ar, build_nar, build_vocoder_net, get_size, make_scenario
from speechkit.bench.timing import PeakMemory, timed, torch_threads, warm_up_runs
from speechkit.data.collate import pad_sequences
from speechkit.infer.precision import apply_precision


def _features(nar: Any, size: BenchSize, args: tuple[torch.Tensor, ...], lengths: list[int]) -> tuple[list[torch.Tensor], float]:
    """Run the NAR -> (vocoder input FloatTensor[T_b, mels] per sequence, NAR seconds)."""
    device = args[0].device
    with torch.inference_mode():
        if getattr(nar, "predicts_features", False):
            predicted, seconds = timed(device, lambda: nar.generate_features_batch(*args))
            return [predicted[row, :length].float().cpu() for row, length in enumerate(lengths)], seconds
        _, seconds = timed(device, lambda: nar.generate_batch(*args))
    mels = size.mel_layout["num_mels"]
    return [torch.randn(length, mels) for length in lengths], seconds


def _ar_then_nar(ar: Any, nar: Any, size: BenchSize, scenario: Scenario, on_device: Scenario
                 ) -> tuple[dict[str, Any], list[int], list[torch.Tensor], float]:
    """The AR (:func:`~speechkit.bench.ar.time_generation`) and the NAR on its output lengths ->
    (the AR's timing, frames per sequence, vocoder inputs, NAR seconds). ``scenario`` on the CPU,
    ``on_device`` the same on the models' device."""
    device = on_device.phones.device
    generation = time_generation(ar, on_device, device)
    lengths = generation["frames"]
    level1, code_lens = pad_sequences([scenario.level1[row, :length] for row, length in enumerate(lengths)])
    features, nar_s = _features(nar, size, on_device.nar_args(level1.to(device), code_lens.to(device)), lengths)
    return generation, lengths, features, nar_s


def bench_e2e_size(size: BenchSize, *, batches: Sequence[int], precisions: Sequence[str], device: torch.device,
                   output_seconds: float, pack: bool = True, kv_cache: str = "fp32",
                   log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """All batch x precision rows of one size (see the module docstring; ``pack``, ``kv_cache``:
    see :func:`~speechkit.infer.precision.apply_precision`)."""
    rows: list[dict[str, Any]] = []
    vocoder = build_vocoder_net(size)
    for precision in precisions:
        for batch in batches:
            scenario = make_scenario(size, batch, output_seconds=output_seconds)
            ar = apply_precision(build_ar(size, scenario).to(device), precision, pack=pack, kv_cache=kv_cache)
            nar = apply_precision(build_nar(size).to(device), precision, pack=pack)
            on_device = scenario.to(device)
            for _ in range(warm_up_runs(device)):  # untimed: the models' first calls on this device
                _ar_then_nar(ar, nar, size, scenario, on_device)
            with PeakMemory(device) as memory:
                generation, lengths, features, nar_s = _ar_then_nar(ar, nar, size, scenario, on_device)
                vocoder_s = sum(timed(torch.device("cpu"), lambda f=f: vocoder.synthesize(f))[1] for f in features)
            ar_s = generation["prefill_s"] + generation["decode_s"]
            audio_s = sum(lengths) / size.frame_rate
            rows.append({
                "size": size.name, "precision": precision, "kv_cache": kv_cache, "batch": batch, "audio_s": audio_s,
                "ar_s": ar_s, "nar_s": nar_s, "vocoder_s": vocoder_s, "total_s": ar_s + nar_s + vocoder_s,
                "ar_rtf": ar_s / audio_s, "nar_rtf": nar_s / audio_s, "vocoder_rtf": vocoder_s / audio_s,
                "rtf": (ar_s + nar_s + vocoder_s) / audio_s, "peak_memory_mb": memory.peak_mb,
            })
            log(f"e2e {size.name} {precision} batch {batch}: RTF {rows[-1]['rtf']:.3f}")
            del ar, nar
    return rows


COLUMNS = [("size", "{}"), ("precision", "{}"), ("kv_cache", "{}"), ("batch", "{}"), ("audio_s", "{:.1f}"), ("ar_s", "{:.2f}"),
           ("nar_s", "{:.2f}"), ("vocoder_s", "{:.2f}"), ("ar_rtf", "{:.3f}"), ("nar_rtf", "{:.3f}"),
           ("vocoder_rtf", "{:.3f}"), ("rtf", "{:.3f}"), ("peak_memory_mb", "{:.0f}")]


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``, run the benchmark, print the table, write the JSON; returns the result."""
    args = parse_common(bench_parser("e2e", __doc__, precision="fp32,int8"), argv)
    device = torch.device(args.device)
    rows: list[dict[str, Any]] = []
    with torch_threads(args.threads):
        for name in args.sizes:
            for kv_cache in args.kv_cache:
                rows += bench_e2e_size(get_size(name), batches=args.batch, precisions=args.precision, device=device,
                                       output_seconds=args.output_seconds, pack=not args.no_pack, kv_cache=kv_cache,
                                       log=lambda line: print(line, file=sys.stderr))
    return finish("e2e", args, {"rows": rows}, COLUMNS)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (``speechkit bench e2e``)."""
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
