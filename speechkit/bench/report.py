"""Shared options, table and JSON output of the inference benchmarks (``speechkit bench ar|nar|e2e``)."""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from speechkit.errors import ConfigError
from speechkit.infer.precision import KV_CACHES, PRECISIONS
from speechkit.utils.device import checked_device

CPU_ONLY_PRECISIONS = ("int8",)


def csv_list(kind: type, choices: Sequence[str] | None = None) -> Any:
    """An argparse ``type``: "a,b,c" -> [kind(a), kind(b), kind(c)], each one of ``choices`` if given."""
    def parse(text: str) -> list[Any]:
        values = [kind(item) for item in text.split(",") if item.strip()]
        bad = [value for value in values if choices is not None and value not in choices]
        if not values or bad:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(choices or ['numbers'])}")
        return values
    return parse


def bench_parser(what: str, doc: str | None, *, batch: str = "1,8", precision: str = "fp32,bf16,int8") -> argparse.ArgumentParser:
    """The options every inference benchmark takes (defaults per benchmark for batch/precision)."""
    from speechkit.bench.scenario import SIZES

    parser = argparse.ArgumentParser(prog=f"speechkit bench {what}", description=(doc or "").split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", type=csv_list(str, list(SIZES)), default="paper,default", help="model sizes")
    parser.add_argument("--batch", type=csv_list(int), default=batch, help="batch sizes")
    parser.add_argument("--precision", type=csv_list(str, PRECISIONS), default=argparse.SUPPRESS,
                        help=f"inference precisions (default {precision}; int8 runs on the CPU only, so a CUDA "
                             "device leaves it out)")
    parser.set_defaults(precision_default=precision)
    parser.add_argument("--kv-cache", type=csv_list(str, list(KV_CACHES)), default="fp32",
                        help=f"KV-cache precisions of AR decoding ({', '.join(KV_CACHES)})")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (0 = torch's default)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--output-seconds", type=float, default=10.0, help="audio generated per sequence")
    parser.add_argument("--no-agreement", action="store_true", help="skip the greedy fp32-agreement check")
    parser.add_argument("--no-pack", action="store_true",
                        help="keep plain nn.Linear layers for fp32/bf16 (no oneDNN pre-packing): the baseline")
    parser.add_argument("--out", type=Path, default=Path(f"bench_{what}.json"), help="JSON output")
    return parser


def parse_common(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse and check the shared options (argparse parses string defaults with ``type`` too)."""
    args = parser.parse_args(argv)
    if any(b < 1 for b in args.batch) or args.output_seconds <= 0:
        raise ConfigError("--batch sizes must be >= 1 and --output-seconds > 0.")
    if args.threads < 0:
        raise ConfigError(f"--threads {args.threads}: give a number of threads >= 1, or 0 for torch's default.")
    cpus = usable_cpus()
    if args.threads > cpus:
        print(f"warning: --threads {args.threads} is more than the {cpus} CPUs this process may use: the threads "
              f"take turns, so the figures measure that; give --threads {cpus} or fewer.", file=sys.stderr)
    device = checked_device(args.device, "--device")
    default = csv_list(str, PRECISIONS)(vars(args).pop("precision_default"))
    if "precision" not in vars(args):
        args.precision = [p for p in default if device.type == "cpu" or p not in CPU_ONLY_PRECISIONS]
    elif device.type != "cpu" and set(args.precision) & set(CPU_ONLY_PRECISIONS):
        raise ConfigError(f"--precision {','.join(CPU_ONLY_PRECISIONS)} (dynamic quantisation) runs on the CPU only; "
                          f"on {args.device} give --precision fp32,bf16.")
    return args


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the OS says, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def environment(args: argparse.Namespace) -> dict[str, Any]:
    """Where the figures come from: machine, torch, threads and device."""
    device = torch.device(args.device)
    return {
        "machine": platform.machine(), "processor": _cpu_name(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__, "threads": torch.get_num_threads() if args.threads <= 0 else args.threads,
        "device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Rows as an aligned text table; a missing value prints as ``-``."""
    header = [name for name, _ in columns]
    body = [[("-" if row.get(name) is None else fmt.format(row[name])) for name, fmt in columns] for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(header, *body)]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in [header, *body]]
    return "\n".join(lines)


def finish(what: str, args: argparse.Namespace, result: dict[str, Any], columns: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Add the environment and options, print the table, write the JSON to ``args.out``."""
    from speechkit.utils.fs import atomic_write_text

    result = {"benchmark": what, "environment": environment(args),
              "options": {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()},
              **result}
    bandwidth = result.get("bandwidth")
    if bandwidth:
        print(f"memory bandwidth: copy {bandwidth['copy_gbps']:.1f} GB/s, read {bandwidth['read_gbps']:.1f} GB/s")
    print(format_table(result["rows"], columns))
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(f"(written to {args.out})")
    return result
