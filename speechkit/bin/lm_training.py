"""Shared logic of stages 4 and 5: train a codec LM (AR or NAR) on same-speaker pairs, save a pack.

:mod:`speechkit.bin.train_ar` and :mod:`speechkit.bin.train_nar` are thin: each describes its kind
with an :class:`LMStage` and calls :func:`main`. One run:

1. reads the config sections ``<kind>:`` (component spec, e.g. ``ar_lm: {name: valle_ar, ...}``)
   and ``<train section>:`` (:class:`LMTrainConfig`: the trainer's options plus data options);
2. builds the model through the registry with context from ``dump/tokens.txt`` and
   ``dump/codec_info.json`` (``num_phones``, ``codebook_size``, ``num_languages``, NAR also
   ``num_quantizers``);
3. trains it with :class:`speechkit.train.Trainer` on pairs of ``train_set`` (see
   :mod:`speechkit.data.lm_dataset`), validating on ``valid_set`` each epoch, under the
   ``max_minutes`` budget, resuming automatically from the last checkpoint in ``exp/<name>/``;
   a model class with ``uses_durations = True`` (the phone-synchronous ``aligned_ar``) also gets
   the phone durations ``dump/<set>/durations`` of the alignment step (``speechkit.bin.align``);
4. runs the kind's diagnostic on the valid set (AR: ``text_use_gap.json``, NAR:
   ``level_accuracy.json``) and saves ``exp/<name>/pack`` (model + context; the phone table is
   copied to ``pack/tokens.txt``, and ``extra`` records it, the codec info, the training outcome
   and the diagnostic).

Idempotent: a done-marker ``exp/<name>/.done.<name>`` fingerprints the config and the inputs; a
finished run with the same fingerprint is skipped. Options that only say how long or how often
(:data:`RESUMABLE_OPTIONS`, e.g. ``max_steps``, ``max_minutes``) may change between runs: raising
``max_steps`` continues from the last checkpoint. Changing anything else (the model, the data, the
learning rate...) while checkpoints of the old run exist is an error that says what to do.
Under ``torchrun`` every rank trains (DDP); rank 0 alone writes the diagnostic and the pack.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from speechkit.align.durations import DURATIONS_FILE
from speechkit.bin.common import load_stage_config, print_config_sections, stage_command, stage_parser
from speechkit.config import as_plain_dict, require_sections, validate_options
from speechkit.data.lm_dataset import EpochIndexedBatchSampler, LMCorpus, PairingConfig, load_lm_corpus
from speechkit.data.sampler import BucketBatchSampler
from speechkit.data.tokens import CODES_SCP
from speechkit.errors import ConfigError, DataError
from speechkit.text.languages import LANGUAGES
from speechkit.text.phone_table import PhoneTable
from speechkit.train import (
    Trainer,
    TrainerConfig,
    TrainResult,
    build_loader,
    cleanup_distributed,
    init_distributed,
    prepare_exp_dir,
)
from speechkit.train.distributed import barrier
from speechkit.train.experiment import PACK_DIR, PHONE_TABLE, check_run_identity, file_state
from speechkit.train.experiment import save_pack_with_tokens, trainer_options, write_run_identity
from speechkit.utils.fs import atomic_write_text
from speechkit.utils.stage import StageMarker, fingerprint

log = logging.getLogger("speechkit.lm_training")

#: Options that may differ between a run and its resumption (they say how long or how often).
RESUMABLE_OPTIONS = frozenset({
    "max_steps", "epochs", "max_minutes", "checkpoint_every", "keep_last", "average_last", "log_every",
    "valid_every", "num_workers", "progress", "device", "diagnostic_max_pairs",
})


@dataclasses.dataclass
class LMTrainConfig(TrainerConfig):
    """Options of a codec-LM training stage: every :class:`TrainerConfig` key plus the data's.

    Attributes:
        train_set, valid_set: data sets (``data/<set>``, ``dump/<set>/codes.scp``).
        max_frames: padded budget per batch of (prompt + target) frames + phones.
        max_batch_size: cap on pairs per batch (0 = none).
        num_buckets: length buckets of the batch sampler.
        cross_lingual_prompt_prob: probability that a target's prompt is an utterance of its
            speaker in the other language.
        max_prompt_seconds: crop prompts to a random window this long (0 = whole utterances);
            leave 0 for the AR, whose prompt transcript must match its audio.
        cache_codes: keep all codes in memory (False: read from the arks on each access).
        diagnostic_max_pairs: valid pairs the end-of-training diagnostic uses (0 = all).
    """

    train_set: str = "train"
    valid_set: str = "dev"
    max_frames: int = 8000
    max_batch_size: int = 0
    num_buckets: int = 10
    cross_lingual_prompt_prob: float = 0.5
    max_prompt_seconds: float = 0.0
    cache_codes: bool = True
    diagnostic_max_pairs: int = 200

    def validate(self) -> None:
        """Trainer checks plus the data options' ranges (:class:`ConfigError`)."""
        super().validate()
        if self.max_frames <= 0 or self.max_batch_size < 0 or self.num_buckets <= 0:
            raise ConfigError("max_frames and num_buckets must be positive and max_batch_size >= 0.")
        if self.max_prompt_seconds < 0 or self.diagnostic_max_pairs < 0:
            raise ConfigError("max_prompt_seconds and diagnostic_max_pairs must be >= 0.")
        PairingConfig(self.cross_lingual_prompt_prob).validate()


@dataclasses.dataclass(frozen=True)
class LMStage:
    """What differs between the AR and the NAR stage.

    Attributes:
        kind: registry kind and config section of the model (``ar_lm``, ``nar_lm``).
        train_section: config section of :class:`LMTrainConfig` (``ar_train``, ``nar_train``).
        name: ``exp/<name>/`` and the marker name (``ar``, ``nar``).
        module: the entry-point module (for ``resume.sh``).
        build_dataset: ``(corpus, pairing, model) -> dataset`` with ``lengths`` per item.
        collate: items -> batch dict.
        diagnose: ``(model, valid dataset, context, options, device, dirs) -> JSON-able dict``.
        diagnostic_file: where the diagnostic goes in ``exp/<name>/``.
        uses_num_quantizers: the model takes ``num_quantizers`` as context.
    """

    kind: str
    train_section: str
    name: str
    module: str
    build_dataset: Callable[[LMCorpus, PairingConfig, nn.Module], Dataset]
    collate: Callable[[Sequence[Any]], dict[str, torch.Tensor]]
    diagnose: Callable[[nn.Module, Dataset, dict[str, int], LMTrainConfig, torch.device, "RecipeDirs"], dict[str, Any]]
    diagnostic_file: str
    uses_num_quantizers: bool = False


@dataclasses.dataclass(frozen=True)
class RecipeDirs:
    """The recipe roots a stage reads: ``data/<set>``, ``dump/`` and ``exp/`` (e.g. ``exp/align``)."""

    data: Path
    dump: Path
    exp: Path


def uses_durations(kind: str, spec: dict[str, Any]) -> bool:
    """Whether the model class named by ``spec`` trains on phone durations (``uses_durations``)."""
    from speechkit import registry

    if "name" not in spec:
        return False  # building the model reports the missing name
    return bool(getattr(registry.registry(kind).get(str(spec["name"])), "uses_durations", False))


def durations_paths(dump: Path, options: LMTrainConfig) -> dict[str, Path]:
    """``dump/<set>/durations`` of the train and valid sets, checked to exist.

    Raises:
        DataError: a file is missing (names the alignment step that writes it).
    """
    paths = {name: dump / name / DURATIONS_FILE for name in (options.train_set, options.valid_set)}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise DataError(
            f"the AR model trains on phone durations but {', '.join(missing)} does not exist: run the alignment "
            f"step (python -m speechkit.bin.align --config C --data data --dump {dump} --exp exp), which stage 4 "
            "of run.sh runs before train_ar."
        )
    return paths


def load_pair_datasets(
    stage: LMStage,
    model: nn.Module,
    options: LMTrainConfig,
    data: Path,
    dump: Path,
    phone_table: PhoneTable,
    pairing: PairingConfig,
    durations: dict[str, Path],
    names: Sequence[str],
) -> list[Dataset]:
    """The same-speaker pair datasets of the sets ``names`` (``data/<name>`` + ``dump/<name>``),
    as ``stage`` builds them for ``model`` (``durations``: per set, for phone-synchronous models)."""
    corpora = [load_lm_corpus(data / name, dump / name / CODES_SCP, phone_table, cache=options.cache_codes,
                              durations_path=durations.get(name)) for name in names]
    return [stage.build_dataset(corpus, pairing, model) for corpus in corpora]


def read_codec_info(dump: Path) -> dict[str, Any]:
    """``dump/codec_info.json`` (stage 3), checked for the keys the LMs need."""
    path = dump / "codec_info.json"
    if not path.is_file():
        raise DataError(f"{path} does not exist; run stage 3 (speechkit.bin.dump_codes) first.")
    info = json.loads(path.read_text(encoding="utf-8"))
    missing = [key for key in ("frame_rate", "num_quantizers", "codebook_size") if key not in info]
    if missing:
        raise DataError(f"{path} lacks {', '.join(missing)}; re-run stage 3.")
    return info


def model_context(stage: LMStage, phone_table: PhoneTable, codec_info: dict[str, Any]) -> dict[str, int]:
    """The constructor values the LM needs from its neighbours (recorded in the pack)."""
    context = {"num_phones": len(phone_table), "codebook_size": int(codec_info["codebook_size"]),
               "num_languages": len(LANGUAGES)}
    if stage.uses_num_quantizers:
        context["num_quantizers"] = int(codec_info["num_quantizers"])
    return context


def input_state(data: Path, dump: Path, options: LMTrainConfig, durations: Sequence[Path] = ()) -> list[Any]:
    """Fingerprint material of everything the stage reads (tables, scps, arks, token list, and the
    ``durations`` files when the model uses them)."""
    files = [dump / PHONE_TABLE, dump / "codec_info.json", *durations]
    for set_name in (options.train_set, options.valid_set):
        files += [data / set_name / name for name in ("phones", "utt2spk", "utt2lang")]
        scp = dump / set_name / CODES_SCP
        files.append(scp)
        if scp.is_file():
            arks = {line.split(" ", 1)[1].rsplit(":", 1)[0] for line in scp.read_text(encoding="utf-8").splitlines() if " " in line}
            files += [Path(ark) for ark in sorted(arks)]
    return [file_state(path) for path in files]


def _loaders(stage: LMStage, train_set: Dataset, valid_set: Dataset, options: LMTrainConfig) -> tuple[Any, Any]:
    max_batch = options.max_batch_size or None
    train_sampler = BucketBatchSampler(train_set.lengths, options.max_frames, max_batch_size=max_batch,  # type: ignore[attr-defined]
                                       num_buckets=options.num_buckets, seed=options.seed)
    valid_sampler = BucketBatchSampler(valid_set.lengths, options.max_frames, max_batch_size=max_batch,  # type: ignore[attr-defined]
                                       num_buckets=options.num_buckets, shuffle=False)
    return (build_loader(train_set, EpochIndexedBatchSampler(train_sampler), stage.collate, options.num_workers),
            build_loader(valid_set, EpochIndexedBatchSampler(valid_sampler), stage.collate, options.num_workers))


def run_stage(
    stage: LMStage,
    config: Any,
    data: Path,
    dump: Path,
    exp: Path,
    command: Sequence[str] | None = None,
) -> Path:
    """Train ``stage``'s model (or skip a finished run, or resume an interrupted one).

    Args:
        stage: the AR or NAR description.
        config: the resolved recipe config (needs sections ``stage.kind`` and ``stage.train_section``).
        data, dump, exp: recipe roots (``data/<set>``, ``dump/``, ``exp/``).
        command: argv that re-runs this stage (for ``resume.sh``; default: this process's).

    Returns:
        The pack directory ``exp/<name>/pack``.
    """
    from speechkit import registry

    require_sections(config, [stage.kind, stage.train_section])
    spec = as_plain_dict(config[stage.kind])
    options = validate_options(LMTrainConfig, config[stage.train_section], where=f"config section '{stage.train_section}'")
    options.validate()
    phone_table = PhoneTable.load(dump / PHONE_TABLE)
    codec_info = read_codec_info(dump)
    context = model_context(stage, phone_table, codec_info)
    exp_dir, pack_dir = exp / stage.name, exp / stage.name / PACK_DIR
    durations = durations_paths(dump, options) if uses_durations(stage.kind, spec) else {}
    inputs = input_state(data, dump, options, list(durations.values()))
    settings = dataclasses.asdict(options)
    marker = StageMarker(exp_dir, stage.name, fingerprint(spec, context, settings, inputs))
    if marker.is_done() and pack_dir.is_dir():
        log.info("%s: already trained with this config and data (%s); nothing to do", stage.name, pack_dir)
        return pack_dir
    identity = fingerprint(spec, context, {k: v for k, v in settings.items() if k not in RESUMABLE_OPTIONS}, inputs)
    check_run_identity(exp_dir, identity, RESUMABLE_OPTIONS)
    dist = init_distributed(options.device)
    try:
        torch.manual_seed(options.seed)  # same initial weights on every rank and every fresh run
        model = registry.build(stage.kind, spec, **context)
        if callable(getattr(model, "attach_codec", None)):
            from speechkit.codec_io import load_codec  # DataError naming stage 3 when it has not run

            model.attach_codec(load_codec(exp / "codec"))  # e.g. continuous_nar copies the codewords
        pairing = PairingConfig(options.cross_lingual_prompt_prob,
                                round(options.max_prompt_seconds * float(codec_info["frame_rate"])), options.seed)
        train_set, valid_set = load_pair_datasets(stage, model, options, data, dump, phone_table, pairing, durations,
                                                  [options.train_set, options.valid_set])
        train_loader, valid_loader = _loaders(stage, train_set, valid_set, options)
        parameters = sum(p.numel() for p in model.parameters())
        log.info("%s: %s with %.2f M parameters; %d training pairs (%d batches/epoch/rank), %d valid pairs",
                 stage.name, spec.get("name"), parameters / 1e6, len(train_set), len(train_loader), len(valid_set))
        if dist.is_main:
            prepare_exp_dir(exp_dir, {stage.kind: spec, stage.train_section: settings}, command)
            write_run_identity(exp_dir, identity)
        result = Trainer(model, train_loader, exp_dir, trainer_options(options), valid_loader=valid_loader).fit()
        if dist.is_main:
            _finish(stage, model, valid_set, context, options, codec_info, result, phone_table,
                    RecipeDirs(data, dump, exp), parameters)
            marker.mark_done(step=result.step, stop_reason=result.stop_reason, train_seconds=round(result.elapsed_s, 1))
        barrier()
    finally:
        cleanup_distributed()
    return pack_dir


def _finish(
    stage: LMStage,
    model: nn.Module,
    valid_set: Dataset,
    context: dict[str, int],
    options: LMTrainConfig,
    codec_info: dict[str, Any],
    result: TrainResult,
    phone_table: PhoneTable,
    dirs: RecipeDirs,
    parameters: int,
) -> None:
    """Rank 0 after training: the diagnostic file, then the pack (with the phone table in it)."""
    exp_dir = dirs.exp / stage.name
    device = next(model.parameters()).device
    diagnostic = stage.diagnose(model, valid_set, context, options, device, dirs)
    diagnostic = {"step": result.step, "set": options.valid_set, **diagnostic}
    atomic_write_text(exp_dir / stage.diagnostic_file, json.dumps(diagnostic, indent=1) + "\n")
    log.info("%s: %s -> %s", stage.name, _headline(diagnostic), exp_dir / stage.diagnostic_file)
    extra = {
        "phone_table": PHONE_TABLE,
        "codec_info": codec_info,
        "parameters": parameters,
        "training": {"step": result.step, "epoch": result.epoch, "stop_reason": result.stop_reason,
                     "train_seconds": round(result.elapsed_s, 1), "valid": result.valid},
        "diagnostic": {"file": stage.diagnostic_file,
                       **{k: v for k, v in diagnostic.items() if not isinstance(v, dict)}},
    }
    pack_dir = save_pack_with_tokens(exp_dir / PACK_DIR, {stage.kind: model}, {stage.kind: context}, extra, phone_table)
    log.info("%s: pack saved in %s (step %d, %s, %.1f min)", stage.name, pack_dir, result.step,
             result.stop_reason, result.elapsed_s / 60)


def _headline(diagnostic: dict[str, Any]) -> str:
    if "gap" in diagnostic:
        return (f"text-use gap {diagnostic['gap']:.3f} nats (loss {diagnostic['loss_right']:.3f} right text, "
                f"{diagnostic['loss_wrong']:.3f} wrong text)")
    if "levels" in diagnostic:
        return "accuracy per level " + " ".join(f"{lvl}:{m['accuracy']:.3f}" for lvl, m in diagnostic["levels"].items())
    return json.dumps(diagnostic)


def build_parser(description: str) -> argparse.ArgumentParser:
    """Options of a codec-LM stage: ``--config``, ``--override``, ``--data``, ``--dump``, ``--exp``."""
    parser = stage_parser(description)
    parser.add_argument("--data", type=Path, default=Path("data"), help="root of the Kaldi data dirs")
    parser.add_argument("--dump", type=Path, default=Path("dump"), help="root of the token dumps (tokens.txt, codes)")
    parser.add_argument("--exp", type=Path, default=Path("exp"), help="experiment root")
    parser.add_argument("--run-name", help="train into exp/<RUN_NAME> instead of the stage's own dir (a variant "
                        "beside the recipe's model, e.g. for the training curve of stage 8)")
    return parser


def main(stage: LMStage, description: str, argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run ``stage``; returns 0 on success."""
    args = build_parser(description).parse_args(argv)
    config = load_stage_config(args)
    if args.print_config:
        print_config_sections(config, [stage.kind, stage.train_section], args.config)
        return 0
    if args.run_name:
        if "/" in args.run_name or args.run_name in {"", ".", ".."}:
            raise ConfigError(f"--run-name {args.run_name!r} must be a plain directory name under {args.exp}.")
        stage = dataclasses.replace(stage, name=args.run_name)
    run_stage(stage, config, args.data, args.dump, args.exp, stage_command(stage.module, argv))
    return 0
