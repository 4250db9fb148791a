"""Argument parsing, config loading and logging shared by the stage entry points."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

from omegaconf import DictConfig

from speechkit.config import as_plain_dict, config_to_yaml, load_config, require_sections
from speechkit.errors import SpeechkitError

log = logging.getLogger("speechkit")


def stage_parser(description: str) -> argparse.ArgumentParser:
    """A parser with the options every stage takes: ``--config``, ``--override`` (repeatable)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", type=Path, required=True, help="recipe YAML (e.g. conf/default.yaml)")
    parser.add_argument(
        "--override", action="append", default=[], metavar="KEY=VALUE",
        help="dotted config override, e.g. codec.num_quantizers=4 (repeatable)",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return parser


def load_stage_config(args: argparse.Namespace) -> DictConfig:
    """Load ``args.config`` with ``args.override`` applied."""
    return load_config(args.config, args.override)


def print_config_sections(config: DictConfig, sections: Sequence[str], config_path: str | Path = "config") -> None:
    """``--print-config`` of a stage: print the resolved ``sections`` of ``config`` as YAML.

    Raises:
        ConfigError: a section is missing (the message names ``config_path``).
    """
    require_sections(config, list(sections), config_path)
    print(config_to_yaml({name: as_plain_dict(config[name]) for name in sections}), end="")


def stage_command(module: str, argv: Sequence[str] | None = None) -> list[str]:
    """The argv that re-runs stage ``module`` with ``argv`` (default: this process's arguments)."""
    return [sys.executable, "-m", module, *(argv if argv is not None else sys.argv[1:])]


def setup_logging(verbose: bool = False) -> None:
    """Log lines with a timestamp to stderr (the recipe tees them to log files)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s [%(name)s] %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def run_main(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a stage ``main``: user errors print one clear message and exit 2 (no traceback)."""
    setup_logging()
    try:
        return int(main(argv) or 0)
    except SpeechkitError as error:
        log.error("%s", error)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted; finished work is kept, re-run the same command to resume")
        return 130
