"""Stage 6: train the speech recognition & translation frontend (ASR + ST + MT), evaluate it on dev.

Usage::

    python -m speechkit.bin.train_st --config conf/default.yaml --data data --dump dump --exp exp
    torchrun --nproc_per_node=2 -m speechkit.bin.train_st --config ...   # DDP

Config sections: ``st_frontend:`` (component spec, e.g. ``{name: transformer_st, d_model: 256}``),
``st_train:`` (:class:`STTrainConfig`: every trainer option plus the data and evaluation options)
and ``frontend:`` (the recipe's G2P, used only for translations no utterance of the set speaks).

One run:

1. caches fbank features of ``train_set`` and ``valid_set`` in ``dump/<set>/fbank/`` and the phones
   of their translations in ``dump/<set>/translation_phones`` (:mod:`speechkit.data.st_dataset`);
2. trains the model on the ASR/ST/MT mix with :class:`speechkit.train.Trainer` into ``exp/st/``
   (checkpoints, ``train_log.jsonl``, ``curves.png``, ``config.yaml``, ``resume.sh``), validating
   on ``valid_set`` each epoch, within ``max_minutes``, resuming from the last checkpoint;
3. evaluates on ``valid_set`` -> ``exp/st/eval.json``: phone error rate (PER) of CTC greedy
   recognition per language, of attention decoding of speech (ST) and of text (MT) per direction;
4. saves ``exp/st/pack`` (``st_frontend`` with context ``num_languages`` and ``token_list``; the
   phone table copied to ``pack/tokens.txt``; ``extra`` holds the training outcome and the PERs).

Idempotent and resumable like stages 4-5 (see :mod:`speechkit.bin.lm_training`): a done-marker
``exp/st/.done.st`` fingerprints config and inputs; only the options in :data:`RESUMABLE_OPTIONS`
may change while checkpoints of an unfinished run exist.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from speechkit.bin.common import load_stage_config, print_config_sections, run_main, stage_command
from speechkit.bin.lm_training import RESUMABLE_OPTIONS as LM_RESUMABLE_OPTIONS
from speechkit.bin.lm_training import build_parser
from speechkit.config import as_plain_dict, require_minimums, require_sections, validate_options
from speechkit.data import st_dataset
from speechkit.data.sampler import BucketBatchSampler
from speechkit.errors import ConfigError
from speechkit.text.languages import LANGUAGES, NEUTRAL, token_language
from speechkit.text.phone_table import PhoneTable
from speechkit.train import Trainer, TrainerConfig, TrainResult, build_loader, cleanup_distributed, init_distributed
from speechkit.train import prepare_exp_dir
from speechkit.train.distributed import barrier
from speechkit.train.experiment import PACK_DIR, PHONE_TABLE, check_run_identity, file_state
from speechkit.train.experiment import save_pack_with_tokens, trainer_options, write_run_identity
from speechkit.utils.fs import atomic_write_text
from speechkit.utils.stage import StageMarker, fingerprint

log = logging.getLogger("speechkit.train_st")

KIND, SECTION, NAME = "st_frontend", "st_train", "st"
EVAL_JSON = "eval.json"
#: Options that may change between a run and its resumption (how long, how often, evaluation).
RESUMABLE_OPTIONS = (LM_RESUMABLE_OPTIONS - {"diagnostic_max_pairs"}) | {"eval_max_utts", "eval_beam_size",
                                                                         "max_memory_mb"}


@dataclasses.dataclass
class STTrainConfig(TrainerConfig):
    """Options of stage 6: every :class:`TrainerConfig` key plus data and evaluation options.

    Attributes:
        train_set, valid_set: data sets (``data/<set>``; features go to ``dump/<set>/fbank``).
        tasks: task -> weight (``asr``, ``st``, ``mt``; see :mod:`speechkit.data.st_dataset`).
        translation_langs: source language -> language of its ``translation``.
        max_frames: padded fbank frames per batch (100 frames = 1 s of speech).
        max_batch_size: items per batch at most (0 = no cap).
        num_buckets: length buckets of the batch sampler.
        mt_frames_per_phone: an MT item's length per source phone, in frame equivalents.
        max_seconds: longer utterances are left out of training.
        feature_shard_size: utterances per feature shard (the unit of resumption).
        max_memory_mb: keep a set's features in memory when they fit, else read the arks.
        eval_max_utts: dev utterances of the final evaluation (evenly spaced; 0 = all).
        eval_beam_size: beam of the evaluation's attention decoding (1 = greedy, batched).
    """

    train_set: str = "train"
    valid_set: str = "dev"
    tasks: dict[str, float] = dataclasses.field(default_factory=lambda: {"asr": 1.0, "st": 1.0, "mt": 0.5})
    translation_langs: dict[str, str] = dataclasses.field(default_factory=lambda: {"en": "zh", "zh": "en"})
    max_frames: int = 12000
    max_batch_size: int = 64
    num_buckets: int = 10
    mt_frames_per_phone: int = 4
    max_seconds: float = 20.0
    feature_shard_size: int = 1000
    max_memory_mb: float = 2048.0
    eval_max_utts: int = 200
    eval_beam_size: int = 1

    def validate(self) -> None:
        """Trainer checks plus the data options' ranges (:class:`ConfigError`)."""
        super().validate()
        unknown = sorted(set(self.tasks) - set(st_dataset.TASKS))
        if unknown:
            raise ConfigError(f"{SECTION}.tasks: unknown task(s) {unknown}; tasks are {', '.join(st_dataset.TASKS)}.")
        require_minimums(self, f"{SECTION}.", dict.fromkeys(
            ("max_frames", "num_buckets", "mt_frames_per_phone", "feature_shard_size", "eval_beam_size"), 1))
        if self.max_batch_size < 0 or self.eval_max_utts < 0 or self.max_seconds <= 0:
            raise ConfigError(f"{SECTION}: max_batch_size and eval_max_utts must be >= 0 and max_seconds > 0.")

    def needs_translations(self) -> bool:
        """ST or MT has a positive weight."""
        return any(self.tasks.get(task, 0.0) > 0 for task in ("st", "mt"))


# -- preparation --------------------------------------------------------------------------------
def input_state(data: Path, dump: Path, options: STTrainConfig) -> list[Any]:
    """Fingerprint material of the files the stage reads (tables and the phone table)."""
    tables = ["wav.scp", "phones", "utt2lang"] + (["translation", "text"] if options.needs_translations() else [])
    files = [dump / PHONE_TABLE] + [data / name / table for name in (options.train_set, options.valid_set)
                                    for table in tables]
    return [file_state(path) for path in files]


def prepare_set(set_name: str, data: Path, dump: Path, model: nn.Module, table: PhoneTable,
                options: STTrainConfig, frontend_spec: dict[str, Any] | None) -> st_dataset.STCorpus:
    """Features (cached), translation phones (cached) and the corpus of one set."""
    from speechkit.registry import build

    key = st_dataset.feature_key(model.featurize)
    feats_scp = st_dataset.dump_features(data / set_name, dump / set_name, model.featurize, key,
                                         shard_size=options.feature_shard_size)
    translations = None
    if options.needs_translations():
        if frontend_spec is None:
            raise ConfigError("ST/MT training needs the recipe's 'frontend:' section (to phonemize translations).")
        translations = st_dataset.translation_phones(
            data / set_name, dump / set_name, options.translation_langs,
            lambda: build("frontend", frontend_spec), fingerprint(frontend_spec))
    max_frames = round(options.max_seconds * st_dataset.feature_frame_rate(model.featurize))
    return st_dataset.load_st_corpus(data / set_name, feats_scp, table, translations, options.translation_langs,
                                     max_memory_mb=options.max_memory_mb, max_frames=max_frames)


# -- evaluation ---------------------------------------------------------------------------------
def _language_phones(table: PhoneTable, ids: Sequence[int]) -> str:
    """Space-joined language phones of ``ids`` (specials, pauses and boundaries left out)."""
    tokens = table.decode([index for index in ids if 0 <= index < len(table)])
    return " ".join(token for token in tokens if token_language(token) != NEUTRAL)


def phone_error_rates(pairs: dict[str, list[tuple[str, str]]]) -> dict[str, dict[str, float]]:
    """``group -> [(reference, hypothesis)]`` -> ``group -> {"per", "n"}`` (jiwer over phone tokens;
    empty references are left out)."""
    import jiwer

    results = {}
    for group, items in sorted(pairs.items()):
        kept = [(ref, hyp) for ref, hyp in items if ref]
        if kept:
            per = jiwer.wer([ref for ref, _ in kept], [hyp for _, hyp in kept])
            results[group] = {"per": round(float(per), 4), "n": len(kept)}
    return results


def _decoder_langs(corpus: st_dataset.STCorpus, rows: Sequence[int], device: torch.device) -> torch.Tensor:
    """LongTensor[len(rows)]: language IDs of the rows' translations."""
    return torch.tensor([LANGUAGES[corpus.target_langs[row]] for row in rows], device=device)  # type: ignore[index]


@torch.no_grad()
def evaluate_st(model: nn.Module, corpus: st_dataset.STCorpus, table: PhoneTable, *, max_utts: int = 200,
                beam_size: int = 1, max_frames: int = 12000) -> dict[str, Any]:
    """PER of CTC recognition (per language), speech translation and text translation (per
    direction; each distinct source text once) on ``corpus`` (``max_utts`` evenly spaced
    utterances; 0 = all), plus a few examples."""
    device = next(model.parameters()).device
    chosen = list(range(len(corpus)))
    if max_utts and len(chosen) > max_utts:
        chosen = sorted(set(np.linspace(0, len(corpus) - 1, max_utts).round().astype(int).tolist()))
    sampler = BucketBatchSampler([corpus.num_frames[i] for i in chosen], max_frames, shuffle=False,
                                 num_replicas=1, rank=0)
    groups: dict[str, dict[str, list[tuple[str, str]]]] = {"asr": {}, "st": {}, "mt": {}}
    examples: list[dict[str, str]] = []
    seen_texts: set[str] = set()
    text_rows: list[int] = []
    for batch in sampler:
        rows = [chosen[i] for i in batch]
        features, feature_lens = st_dataset.pad_features([corpus.features_of(row) for row in rows])
        features, feature_lens = features.to(device), feature_lens.to(device)
        recognized = model.recognize_ids(features, feature_lens)
        keep = [k for k, row in enumerate(rows) if corpus.target[row] is not None]
        translated = dict(zip(keep, model.translate_ids(
            features[keep], feature_lens[keep], _decoder_langs(corpus, [rows[k] for k in keep], device),
            beam_size=beam_size) if keep else []))
        for k, row in enumerate(rows):
            source = _language_phones(table, corpus.source[row].tolist())
            asr = _language_phones(table, recognized[k])
            groups["asr"].setdefault(corpus.langs[row], []).append((source, asr))
            if k not in translated:
                continue
            reference = _language_phones(table, corpus.target[row].tolist())  # type: ignore[union-attr]
            direction = f"{corpus.langs[row]}->{corpus.target_langs[row]}"
            groups["st"].setdefault(direction, []).append((reference, _language_phones(table, translated[k])))
            if len(examples) < 4:
                examples.append({"utt": corpus.utts[row], "source": source, "asr": asr, "translation": reference,
                                 "st": groups["st"][direction][-1][1]})
            if source not in seen_texts:
                seen_texts.add(source)
                text_rows.append(row)
    for start in range(0, len(text_rows), 64):  # MT: the distinct source texts, 64 at a time
        rows = text_rows[start:start + 64]
        phones, phone_lens = st_dataset.pad_phones([corpus.source[row] for row in rows])
        outputs = model.translate_text_ids(phones.to(device), phone_lens.to(device), _decoder_langs(corpus, rows, device),
                                           beam_size=beam_size)
        for row, ids in zip(rows, outputs):
            reference = _language_phones(table, corpus.target[row].tolist())  # type: ignore[union-attr]
            groups["mt"].setdefault(f"{corpus.langs[row]}->{corpus.target_langs[row]}", []).append(
                (reference, _language_phones(table, ids)))
    return {"utterances": len(chosen), "beam_size": beam_size,
            **{task: phone_error_rates(pairs) for task, pairs in groups.items()}, "examples": examples}


# -- the stage ----------------------------------------------------------------------------------
def run_stage(config: Any, data: Path, dump: Path, exp: Path, command: Sequence[str] | None = None) -> Path:
    """Train the ST frontend (or skip a finished run, or resume an interrupted one); returns the pack dir."""
    from speechkit.registry import build

    require_sections(config, [KIND, SECTION])
    spec = as_plain_dict(config[KIND])
    options = validate_options(STTrainConfig, config[SECTION], where=f"config section '{SECTION}'")
    options.validate()
    frontend_spec = as_plain_dict(config.frontend) if "frontend" in config else None
    table = PhoneTable.load(dump / PHONE_TABLE)
    context = {"num_languages": len(LANGUAGES), "token_list": list(table.tokens)}
    torch.manual_seed(options.seed)  # same initial weights on every rank and every fresh run
    model = build(KIND, spec, **context)
    if not callable(getattr(model, "featurize", None)):
        raise ConfigError(f"{KIND} {spec.get('name')!r} has no featurize(wav, sample_rate); stage 6 needs it.")
    exp_dir, pack_dir = exp / NAME, exp / NAME / PACK_DIR
    settings = dataclasses.asdict(options)
    inputs = [input_state(data, dump, options), st_dataset.feature_key(model.featurize),
              frontend_spec if options.needs_translations() else None]
    marker = StageMarker(exp_dir, NAME, fingerprint(spec, len(table), settings, inputs))
    if marker.is_done() and pack_dir.is_dir():
        log.info("st: already trained with this config and data (%s); nothing to do", pack_dir)
        return pack_dir
    identity = fingerprint(spec, len(table), {k: v for k, v in settings.items() if k not in RESUMABLE_OPTIONS}, inputs)
    check_run_identity(exp_dir, identity, RESUMABLE_OPTIONS)
    dist = init_distributed(options.device)
    try:
        corpora = {}
        for turn in ("main", "others"):  # rank 0 writes the caches; the other ranks then read them
            if dist.is_main == (turn == "main"):
                corpora = {name: prepare_set(name, data, dump, model, table, options, frontend_spec)
                           for name in (options.train_set, options.valid_set)}
            barrier()
        train_set, valid_set = (
            st_dataset.STDataset(corpora[name], options.tasks, seed=options.seed,
                                 mt_frames_per_phone=options.mt_frames_per_phone)
            for name in (options.train_set, options.valid_set))
        max_batch = options.max_batch_size or None
        train_loader = build_loader(train_set, BucketBatchSampler(
            train_set.lengths, options.max_frames, max_batch_size=max_batch, num_buckets=options.num_buckets,
            seed=options.seed), st_dataset.collate_st, options.num_workers)
        valid_loader = build_loader(valid_set, BucketBatchSampler(
            valid_set.lengths, options.max_frames, max_batch_size=max_batch, num_buckets=options.num_buckets,
            shuffle=False), st_dataset.collate_st, options.num_workers)
        parameters = sum(p.numel() for p in model.parameters())
        log.info("st: %s with %.2f M parameters; train items %s (%d batches/epoch/rank), valid items %s",
                 spec.get("name"), parameters / 1e6, train_set.task_counts(), len(train_loader),
                 valid_set.task_counts())
        if dist.is_main:
            prepare_exp_dir(exp_dir, {KIND: spec, SECTION: settings}, command)
            write_run_identity(exp_dir, identity)
        result = Trainer(model, train_loader, exp_dir, trainer_options(options), valid_loader=valid_loader).fit()
        if dist.is_main:
            _finish(model, corpora[options.valid_set], table, context, options, result, exp_dir, parameters)
            marker.mark_done(step=result.step, stop_reason=result.stop_reason, train_seconds=round(result.elapsed_s, 1))
        barrier()
    finally:
        cleanup_distributed()
    return pack_dir


def _finish(model: nn.Module, valid: st_dataset.STCorpus, table: PhoneTable, context: dict[str, Any],
            options: STTrainConfig, result: TrainResult, exp_dir: Path, parameters: int) -> None:
    """Rank 0 after training: ``eval.json``, then the pack (with the phone table in it)."""
    report = {"step": result.step, "set": options.valid_set,
              **evaluate_st(model, valid, table, max_utts=options.eval_max_utts, beam_size=options.eval_beam_size,
                            max_frames=options.max_frames)}
    atomic_write_text(exp_dir / EVAL_JSON, json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    headline = {task: {group: value["per"] for group, value in report[task].items()} for task in ("asr", "st", "mt")}
    log.info("st: dev PER %s -> %s", json.dumps(headline), exp_dir / EVAL_JSON)
    extra = {
        "phone_table": PHONE_TABLE,
        "parameters": parameters,
        "training": {"step": result.step, "epoch": result.epoch, "stop_reason": result.stop_reason,
                     "train_seconds": round(result.elapsed_s, 1), "valid": result.valid},
        "eval": {"file": EVAL_JSON, **headline},
    }
    pack_dir = save_pack_with_tokens(exp_dir / PACK_DIR, {KIND: model}, {KIND: context}, extra, table)
    log.info("st: pack saved in %s (step %d, %s, %.1f min)", pack_dir, result.step, result.stop_reason,
             result.elapsed_s / 60)


def main(argv: Sequence[str] | None = None) -> int:
    """Run stage 6; returns 0 on success."""
    args = build_parser(__doc__.splitlines()[0]).parse_args(argv)
    config = load_stage_config(args)
    if args.print_config:
        print_config_sections(config, [KIND, SECTION], args.config)
        return 0
    run_stage(config, args.data, args.dump, args.exp, stage_command("speechkit.bin.train_st", argv))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
