"""Recipe stage 2: text -> language-tagged phones, and the phone table.

Usage (from a recipe dir)::

    python -m speechkit.bin.phonemize --config conf/default.yaml --data data --dump dump \
        [--sets train dev test]

Builds the frontend from the config's ``frontend:`` section, reads ``<data>/<set>/{text,utt2lang}``
and writes ``<data>/<set>/phones`` (``<utt> zh:n zh:i2 zh:h zh:ao3 <sil>``; each token's language
is its prefix, so no separate language file is written: see :mod:`speechkit.text.languages`).
The token list ``<dump>/tokens.txt`` holds the phones seen in the first set (the training set)
plus the full inventory of the frontend. Every utterance that fails is reported with its id and
the stage fails; nothing is dropped silently. A finished set is skipped on re-runs (done-marker
with a fingerprint of the config and the input files); outputs are written atomically.
"""
from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from speechkit.bin.common import load_stage_config, run_main, stage_parser
from speechkit.config import as_plain_dict, config_to_yaml, require_sections
from speechkit.data.datadir import DataDir, read_table, write_table
from speechkit.errors import ConfigError, DataError, TextError
from speechkit.interfaces.frontend import Frontend
from speechkit.registry import build
from speechkit.text.phone_table import PhoneTable
from speechkit.utils.stage import StageMarker, fingerprint

log = logging.getLogger("speechkit.phonemize")
#: How many failing utterances the error message lists in full.
MAX_REPORTED_ERRORS = 20


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def phonemize_set(frontend: Frontend, data_dir: Path) -> dict[str, str]:
    """Phones of every utterance of ``data_dir`` as ``utt -> "tok tok ..."``.

    Raises:
        TextError: one or more utterances failed; the message lists their ids and reasons.
    """
    datadir = DataDir.load(data_dir, validate=False)
    missing = sorted(set(datadir.text) - set(datadir.utt2lang))
    if missing:
        raise DataError(f"{data_dir}/utt2lang lacks {len(missing)} utterances of text, e.g. {missing[:3]}.")
    phones: dict[str, str] = {}
    errors: list[str] = []
    for utt in tqdm(sorted(datadir.text), desc=f"phonemize {data_dir.name}", unit="utt", leave=False):
        try:
            sequence = frontend.phonemize(datadir.text[utt], datadir.utt2lang[utt])
        except TextError as error:
            errors.append(f"{utt}: {error}")
            continue
        phones[utt] = " ".join(phone.token for phone in sequence)
    if errors:
        listed = "\n  ".join(errors[:MAX_REPORTED_ERRORS])
        more = f"\n  ... and {len(errors) - MAX_REPORTED_ERRORS} more" if len(errors) > MAX_REPORTED_ERRORS else ""
        raise TextError(
            f"{len(errors)} of {len(datadir.text)} utterances in {data_dir} could not be phonemized "
            f"(fix or remove them in {data_dir}/text):\n  {listed}{more}"
        )
    return phones


def build_phone_table(frontend: Frontend, train_phones: dict[str, str]) -> PhoneTable:
    """Phones seen in training plus the frontend's full inventory (if it declares one)."""
    seen = {token for line in train_phones.values() for token in line.split()}
    inventory = getattr(frontend, "inventory", list)()
    return PhoneTable([*seen, *inventory])


def run_stage(frontend_spec: dict, data: Path, dump: Path, sets: Sequence[str]) -> PhoneTable:
    """Phonemize ``sets`` under ``data`` (skipping finished ones) and write ``dump/tokens.txt``."""
    if not sets:
        raise ConfigError("Stage 2 needs at least one set (--sets train dev test).")
    frontend: Frontend | None = None
    table_sources: dict[str, str] | None = None
    for name in sets:
        set_dir = data / name
        if not (set_dir / "text").is_file():
            raise DataError(f"{set_dir}/text does not exist; run stage 1 (local/data.sh) first.")
        key = fingerprint(frontend_spec, _file_digest(set_dir / "text"), _file_digest(set_dir / "utt2lang"))
        marker = StageMarker(set_dir, "phones", key)
        if marker.is_done() and (set_dir / "phones").is_file():
            log.info("%s: phones up to date, skipping", set_dir)
            phones = read_table(set_dir / "phones")
        else:
            if frontend is None:
                frontend = build("frontend", frontend_spec)
            marker.clear()
            started = time.monotonic()
            phones = phonemize_set(frontend, set_dir)
            write_table(set_dir / "phones", phones)
            seconds = time.monotonic() - started
            marker.mark_done(utterances=len(phones), utts_per_second=round(len(phones) / max(seconds, 1e-9), 1))
            log.info("%s: %d utterances phonemized in %.1f s", set_dir, len(phones), seconds)
        if table_sources is None:
            table_sources = phones
    table_key = fingerprint(frontend_spec, _file_digest(data / sets[0] / "phones"))
    table_marker = StageMarker(dump, "tokens", table_key)
    if table_marker.is_done() and (dump / "tokens.txt").is_file():
        return PhoneTable.load(dump / "tokens.txt")
    frontend = frontend or build("frontend", frontend_spec)
    table = build_phone_table(frontend, table_sources or {})
    for name in sets[1:]:
        unknown = table.unknown(tok for line in read_table(data / name / "phones").values() for tok in line.split())
        if unknown:
            log.warning("%s has phones outside the table (they map to <unk>): %s", name, unknown[:10])
    table.save(dump / "tokens.txt")
    table_marker.mark_done(tokens=len(table))
    log.info("%s: %d tokens", dump / "tokens.txt", len(table))
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, build the frontend and run the stage."""
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data"), help="data dir with one subdir per set")
    parser.add_argument("--dump", type=Path, default=Path("dump"), help="where tokens.txt goes")
    parser.add_argument("--sets", nargs="+", default=["train", "dev", "test"],
                        help="sets to phonemize; the first one's phones go into the token list")
    args = parser.parse_args(argv)
    config = load_stage_config(args)
    require_sections(config, ["frontend"], args.config)
    spec = as_plain_dict(config.frontend)
    if args.print_config:
        print(config_to_yaml({"frontend": spec}), end="")
        return 0
    run_stage(spec, args.data, args.dump, args.sets)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
