"""Recipe stage 1: build the embedded bilingual multi-speaker corpus with espeak-ng.

Usage (from a recipe dir)::

    python -m speechkit.bin.make_corpus --config conf/default.yaml --out data [--nj 4]
        [--override corpus.num_train_speakers=16]

Reads the ``corpus:`` section of the config (options: :class:`~speechkit.data.espeak_corpus.CorpusConfig`)
and writes ``<out>/{train,dev,test}/`` plus ``<out>/local/``. Re-running a finished build does
nothing; re-running an interrupted one finishes it.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Sequence

from speechkit.bin.common import load_stage_config, run_main, stage_parser
from speechkit.config import config_to_yaml, require_sections, validate_options
from speechkit.data.espeak_corpus import CorpusConfig, build_corpus

log = logging.getLogger("speechkit.make_corpus")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, validate the ``corpus`` section and build the corpus."""
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data"), help="output data dir (default: data)")
    parser.add_argument("--nj", type=int, default=None, help="parallel synthesis workers (overrides corpus.nj)")
    args = parser.parse_args(argv)
    config = load_stage_config(args)
    require_sections(config, ["corpus"], args.config)
    corpus_config = validate_options(CorpusConfig, config.corpus, where=f"section 'corpus' of {args.config}")
    if args.nj is not None:
        corpus_config = dataclasses.replace(corpus_config, nj=args.nj)
    if args.print_config:
        print(config_to_yaml({"corpus": dataclasses.asdict(corpus_config)}), end="")
        return 0
    stats = build_corpus(corpus_config, args.out)
    for split, languages in stats["sets"].items():
        log.info(
            "%-5s %6.2f h  %5d utterances (en %d, zh %d)  %d speakers",
            split, languages["all"]["hours"], languages["all"]["utterances"],
            languages["en"]["utterances"], languages["zh"]["utterances"], languages["all"]["speakers"],
        )
    log.info("statistics: %s", Path(args.out) / "local" / "corpus_stats.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
