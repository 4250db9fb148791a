"""Phone durations for every utterance by Monotonic Alignment Search (first step of stage 4).

Usage::

    python -m speechkit.bin.align --config conf/default.yaml --data data --dump dump --exp exp

Trains the phone aligner (:mod:`speechkit.align`) on the training set's phones
(``data/<set>/phones``) and dumped codes (``dump/<set>/codes.scp``; the codec in ``exp/codec``
turns them into features without decoding audio), then writes ``dump/<set>/durations`` for
every set. Outputs in ``exp/align/``: ``aligner.pt`` + ``aligner.json`` (model), ``config.yaml``
(the resolved ``align:`` section), ``report.json`` (training figures, mean duration per phone
class, the pause/energy check) and ``align_<utt>.png`` plots of a few dev utterances.
Done-markers (``exp/align/.done.model``, ``.done.durations.<set>``) make a rerun a no-op.
Options: config section ``align:`` (:class:`AlignStageConfig`).
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import torch

from speechkit.align.durations import DURATIONS_FILE, read_durations, write_durations
from speechkit.align.model import AlignerConfig, PhoneAligner
from speechkit.align.report import duration_statistics, pause_energy_check, plot_alignment
from speechkit.align.train import (
    align_items,
    collate,
    feature_function,
    load_aligner,
    load_items,
    save_aligner,
    train_aligner,
)
from speechkit.bin.common import load_stage_config, run_main, stage_parser
from speechkit.config import as_plain_dict, config_to_yaml, require_minimums, save_config, validate_options
from speechkit.data.datadir import read_table
from speechkit.errors import ConfigError, DataError
from speechkit.text.languages import LANGUAGES
from speechkit.text.phone_table import PhoneTable
from speechkit.utils.fs import atomic_write_text
from speechkit.utils.stage import StageMarker, fingerprint

log = logging.getLogger("speechkit.align")


@dataclasses.dataclass
class AlignStageConfig:
    """Options of the alignment step (config section ``align:``; every key optional).

    Attributes:
        model: aligner size (:class:`speechkit.align.model.AlignerConfig`).
        steps, max_minutes: training stops at whichever comes first (0 minutes = no cap).
        lr, batch_size: AdamW learning rate and utterances per batch.
        uniform_steps: first steps trained on the evenly spread path before MAS takes over.
        train_set, max_train_utts: set the aligner is trained on, and a cap (0 = all utterances).
        sets: sets that get ``dump/<set>/durations``.
        num_plots: dev utterances plotted into ``exp/align/``; plot_set: the set they come from.
        num_ceps: features are this many cepstral coefficients of the codec's dequantised log-mel,
            normalised per utterance (0 = the log-mel itself); codecs without ``dequantize`` use a
            fixed random embedding of their codes instead.
        threads: torch threads (0 = leave torch's default).
        seed: seeds the model, the batch order and the subset.
    """

    model: AlignerConfig = dataclasses.field(default_factory=AlignerConfig)
    steps: int = 2000
    max_minutes: float = 5.0
    lr: float = 2e-3
    batch_size: int = 32
    uniform_steps: int = 100
    train_set: str = "train"
    max_train_utts: int = 0
    sets: list[str] = dataclasses.field(default_factory=lambda: ["train", "dev", "test"])
    num_plots: int = 2
    plot_set: str = "dev"
    num_ceps: int = 20
    threads: int = 0
    seed: int = 0


def stage_options(config: Any) -> AlignStageConfig:
    """The validated ``align:`` section of the recipe config (defaults when absent)."""
    section = as_plain_dict(config.align) if "align" in config else {}
    options = validate_options(AlignStageConfig, section, where="config section 'align'")
    require_minimums(options, "align.", {"steps": 1, "batch_size": 1, "uniform_steps": 0, "max_train_utts": 0,
                                         "num_plots": 0, "num_ceps": 1, "threads": 0, "max_minutes": 0})
    if not options.lr > 0:
        raise ConfigError(f"align.lr must be > 0, got {options.lr}.")
    return options


def _file_stamp(path: Path) -> list[Any]:
    """Cheap identity of an input file (name, size, mtime) for the fingerprint."""
    stat = path.stat()
    return [str(path), stat.st_size, int(stat.st_mtime)]


def _load_codec_features(dump: Path, exp: Path, seed: int, num_ceps: int) -> tuple[Any, str, float, Any]:
    """The feature function (see :func:`speechkit.align.train.feature_function`), its name, the
    frame rate, and a frame-energy function (codes -> FloatTensor[T], mean log-mel; None when
    the codec has no ``dequantize``)."""
    from speechkit.codec_io import load_codec

    info_path = dump / "codec_info.json"
    if not info_path.is_file():
        raise DataError(f"{info_path} does not exist; run stage 3 (dump_codes) first.")
    info = json.loads(info_path.read_text())
    codec = load_codec(exp / "codec") if (exp / "codec").is_dir() else None
    features, name = feature_function(
        codec, num_quantizers=int(info["num_quantizers"]), codebook_size=int(info["codebook_size"]), seed=seed,
        num_ceps=num_ceps,
    )
    energy = None
    if codec is not None and callable(getattr(codec, "dequantize", None)):
        energy = lambda codes: codec.dequantize(codes).float().mean(dim=1)  # noqa: E731
    return features, name, float(info["frame_rate"]), energy


def run_stage(options: AlignStageConfig, data: Path, dump: Path, exp: Path) -> None:
    """Train the aligner (unless done) and write ``dump/<set>/durations`` for every set (unless done)."""
    if options.threads:
        torch.set_num_threads(options.threads)
    out_dir = exp / "align"
    table = PhoneTable.load(dump / "tokens.txt")
    inputs = {name: [_file_stamp(dump / name / "codes.scp"), _file_stamp(data / name / "phones")] for name in options.sets}
    train_inputs = [_file_stamp(dump / options.train_set / "codes.scp"), _file_stamp(data / options.train_set / "phones")]
    model_key = fingerprint(dataclasses.asdict(options), train_inputs, _file_stamp(dump / "tokens.txt"))
    features, feature_name, frame_rate, energy = _load_codec_features(dump, exp, options.seed, options.num_ceps)
    model_marker = StageMarker(out_dir, "model", model_key)
    changed = False
    if model_marker.is_done():
        log.info("%s: aligner up to date, skipping training", out_dir)
        model, _ = load_aligner(out_dir)
    else:
        items = load_items(data / options.train_set, dump / options.train_set / "codes.scp", table,
                           max_utts=options.max_train_utts, seed=options.seed)
        feature_dim = int(features(items[0].codes).shape[1])
        torch.manual_seed(options.seed)
        model = PhoneAligner(options.model, num_phones=len(table), num_languages=len(LANGUAGES), feature_dim=feature_dim)
        log.info("align: training on %d utterances (%s features, dim %d), %d parameters",
                 len(items), feature_name, feature_dim, sum(p.numel() for p in model.parameters()))
        report = train_aligner(model, items, features, steps=options.steps, max_minutes=options.max_minutes,
                               lr=options.lr, batch_size=options.batch_size, uniform_steps=options.uniform_steps,
                               seed=options.seed)
        training = {**dataclasses.asdict(report), "features": feature_name, "utterances": len(items)}
        save_aligner(model, out_dir, {"training": training})
        save_config({"align": dataclasses.asdict(options)}, out_dir / "config.yaml")
        model_marker.mark_done(**training)
        changed = True
    for name in options.sets:
        marker = StageMarker(out_dir, f"durations.{name}", fingerprint(model_key, inputs[name]))
        if marker.is_done() and (dump / name / DURATIONS_FILE).is_file():
            log.info("%s: durations up to date, skipping", dump / name)
            continue
        items = load_items(data / name, dump / name / "codes.scp", table)
        durations = align_items(model, items, features, batch_size=options.batch_size)
        write_durations(dump / name / DURATIONS_FILE, durations)
        marker.mark_done(utterances=len(durations))
        changed = True
        log.info("%s: durations of %d utterances written", dump / name, len(durations))
    if changed or not (out_dir / "report.json").is_file():
        write_report(model, options, data, dump, out_dir, features, energy, frame_rate, table)


def write_report(
    model: PhoneAligner, options: AlignStageConfig, data: Path, dump: Path, out_dir: Path, features: Any,
    energy: Any, frame_rate: float, table: PhoneTable,
) -> None:
    """``report.json`` (training figures, durations per phone class, pause energy) and the plots."""
    name = options.plot_set if options.plot_set in options.sets else options.sets[0]
    durations = read_durations(dump / name / DURATIONS_FILE)
    tokens = {utt: line.split() for utt, line in read_table(data / name / "phones").items()}
    items = [item for item in load_items(data / name, dump / name / "codes.scp", table) if item.utt in durations]
    frame_energy = {item.utt: energy(item.codes) for item in items} if energy is not None else {}
    info = json.loads((out_dir / "aligner.json").read_text())
    report = {
        "set": name,
        "training": info.get("training", {}),
        "frame_rate": frame_rate,
        "durations": duration_statistics(durations, tokens, frame_rate),
        "pause_energy": pause_energy_check(durations, tokens, frame_energy),
    }
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=1) + "\n")
    for item in items[: options.num_plots]:
        batch = collate([item], features)
        _, scores = model.align(batch)
        plot_alignment(scores[0], durations[item.utt], tokens[item.utt], out_dir / f"align_{item.utt}.png")
    log.info("align: report in %s", out_dir / "report.json")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run the alignment step."""
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data"), help="data dir with one subdir per set")
    parser.add_argument("--dump", type=Path, default=Path("dump"), help="dump dir (codes, tokens.txt)")
    parser.add_argument("--exp", type=Path, default=Path("exp"), help="experiment dir (exp/codec in, exp/align out)")
    args = parser.parse_args(argv)
    options = stage_options(load_stage_config(args))
    if args.print_config:
        print(config_to_yaml({"align": dataclasses.asdict(options)}), end="")
        return 0
    run_stage(options, args.data, args.dump, args.exp)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
