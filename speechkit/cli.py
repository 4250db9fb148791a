"""The ``speechkit`` command: ``list``, ``show``, ``doctor``, ``bench``, ``xtts`` and ``s2st``.

Listing reads names only (built-in table + entry points), so it is fast and works even when an
optional dependency of some component is missing.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from speechkit.errors import SpeechkitError


def _cmd_list(args: argparse.Namespace) -> int:
    from speechkit.registry import KINDS, registry

    kinds = [args.kind] if args.kind else list(KINDS)
    for kind in kinds:
        entries = registry(kind).entries()
        print(f"{kind}:")
        if not entries:
            print("  (none registered yet)")
        for name in sorted(entries):
            entry = entries[name]
            print(f"  {name:<20} {entry.origin:<12} {entry.target}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from speechkit.config import config_to_yaml
    from speechkit.registry import registry

    cls = registry(args.kind).get(args.name)
    doc = (cls.__doc__ or "").strip().splitlines()
    print(f"# {args.kind} {args.name}: {doc[0] if doc else cls.__qualname__}")
    print(f"# defined in {cls.__module__}.{cls.__qualname__}")
    print(f"name: {args.name}")
    body = config_to_yaml(cls.Config).strip()
    if body and body != "{}":
        print(body)
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from speechkit.doctor import run_checks

    results = run_checks()
    width = max(len(r.name) for r in results)
    for result in results:
        mark = "ok " if result.ok else ("-- " if result.optional else "XX ")
        print(f"{mark} {result.name:<{width}}  {result.detail}")
    missing_required = [r for r in results if not r.ok and not r.optional]
    if missing_required:
        print(f"\n{len(missing_required)} required item(s) missing: run tools/install.sh")
        return 1
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import importlib

    module = importlib.import_module(f"speechkit.bench.{args.what}")
    return int(module.main(args.rest) or 0)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``speechkit`` command."""
    parser = argparse.ArgumentParser(prog="speechkit", description="speechkit components and tools")
    sub = parser.add_subparsers(dest="command", required=True)

    p_list = sub.add_parser("list", help="list registered components (built-in and plugins)")
    p_list.add_argument("kind", nargs="?", help="codec, frontend, ar_lm, nar_lm, st_frontend, vocoder, scorer")
    p_list.set_defaults(func=_cmd_list)

    p_show = sub.add_parser("show", help="print a component's default config as YAML")
    p_show.add_argument("kind")
    p_show.add_argument("name")
    p_show.set_defaults(func=_cmd_show)

    p_doctor = sub.add_parser("doctor", help="check what is installed and what is missing")
    p_doctor.set_defaults(func=_cmd_doctor)

    p_bench = sub.add_parser("bench", help="benchmarks printing figures (e.g. `speechkit bench ar --help`)")
    p_bench.add_argument("what", choices=["codec", "ar", "nar", "e2e"],
                         help="codec: a trained codec's speed and quality; ar / nar / e2e: inference speed")
    p_bench.add_argument("rest", nargs=argparse.REMAINDER)
    p_bench.set_defaults(func=_cmd_bench)

    from speechkit.cli_synth import add_synthesis_commands

    add_synthesis_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``speechkit`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpeechkitError as error:
        print(f"speechkit: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
