"""Recipe stage 8 (first step): the AR training curve, per variant.

Usage (from a recipe dir)::

    python -m speechkit.bin.curve --config conf/default.yaml --data data --dump dump --exp exp

For every checkpoint an AR run kept (``exp/<variant dir>/checkpoints/step-*.pt``; ``curve.variants``
maps a label to that dir, default ``{<ar_lm name>: ar}``) it measures, with the rest of the
pipeline of ``exp/vallex_pack`` (stage 7) unchanged:

* the text-use gap on dev pairs (teacher-forced loss with a wrong text minus with the right one,
  :func:`speechkit.train.lm_diagnostics.text_use_gap`), overall and per target language;
* a few items of each task of ``curve.tasks`` synthesised with that checkpoint and scored with
  the scorers of the ``score:`` section named in ``curve.scorers`` (WER/PER and speaker margin).

Each point goes to ``exp/curve/<variant>/step-<N>/point.json`` (a finished point is not redone;
its wavs and scores stay beside it) and all points to ``exp/curve/curve_ar.jsonl``, which the
results table renders (:func:`speechkit.results.render.curve_sections`).
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import torch

from speechkit.bin.common import load_stage_config, print_config_sections, run_main, stage_parser
from speechkit.config import as_plain_dict, load_config, require_sections, validate_options
from speechkit.data.datadir import DataDir
from speechkit.data.lm_dataset import PairingConfig
from speechkit.errors import ConfigError, DataError
from speechkit.infer.pipeline import VallexPipeline
from speechkit.infer.tasks import build_items, task_spec
from speechkit.text.phone_table import PhoneTable
from speechkit.train import list_checkpoints, load_checkpoint
from speechkit.train.experiment import PHONE_TABLE
from speechkit.utils.fs import atomic_write_text
from speechkit.utils.stage import fingerprint

log = logging.getLogger("speechkit.curve")
CURVE_FILE = "curve_ar.jsonl"
POINT_FILE = "point.json"


@dataclasses.dataclass
class CurveConfig:
    """The ``curve:`` section.

    Attributes:
        variants: label -> AR run directory under ``exp`` (empty: ``{<ar_lm.name>: ar}``).
        tasks: inference tasks synthesised at each checkpoint.
        max_items: items per task and target language (speakers taken in turn).
        max_checkpoints: the last this-many checkpoints of each variant (0 = all kept).
        gap_pairs: dev pairs of the text-use gap.
        scorers: names of the ``score.scorers`` entries applied (others, e.g. DNSMOS, are skipped).
    """

    variants: dict = dataclasses.field(default_factory=dict)
    tasks: list = dataclasses.field(default_factory=lambda: ["zs_en", "xl_zh2en", "xl_en2zh"])
    max_items: int = 8
    max_checkpoints: int = 0
    gap_pairs: int = 100
    scorers: list = dataclasses.field(default_factory=lambda: ["whisper_wer", "ctc_cer", "speaker_margin"])


class CheckpointEvaluator:
    """Measures points of the curve with one pipeline whose AR model is swapped per checkpoint."""

    def __init__(self, config: Any, curve: CurveConfig, data: Path, dump: Path, exp: Path) -> None:
        from speechkit.bin.infer import InferConfig
        from speechkit.bin.score import ScoreStageConfig, ScorerSet

        self.config, self.curve, self.data, self.dump, self.exp = config, curve, data, dump, exp
        self.infer = validate_options(InferConfig, config.infer, "infer")
        self.infer.validate()
        self.score = validate_options(ScoreStageConfig, config.score, "score")
        pack = exp / "vallex_pack"
        if not (pack / "pack.yaml").is_file():
            raise DataError(f"{pack} does not exist: run stage 7 (./run.sh --stage 7 --stop-stage 7) first.")
        self.pipeline = VallexPipeline.load(pack, self.infer.synthesis_options())
        specs = {lang: [entry for entry in entries or [] if as_plain_dict(entry).get("name") in curve.scorers]
                 for lang, entries in self.score.scorers.items()}
        context = {"frontend": as_plain_dict(config.frontend)} if "frontend" in config else {}
        self.scorers = ScorerSet(specs, context, exp / "st" / "pack")
        test = DataDir.load(data / self.infer.test_set)
        self.items = {task: build_items(task, test, curve.max_items, self.infer.num_other_speakers)
                      for task in curve.tasks}
        self.oracle = None  # the nar_oracle tasks (e.g. in tools/sweep_sampling.py) read phones and durations
        if any(task_spec(task).kind == "nar_oracle" for task in curve.tasks):
            from speechkit.bin.infer import OracleTargets

            self.oracle = OracleTargets.load(data / self.infer.test_set, dump / self.infer.test_set)

    def evaluate(self, variant: str, run_dir: Path, step: int, checkpoint: Path, out_dir: Path) -> dict[str, Any]:
        """One point: gap, then synthesis and scores of every task -> the point's record."""
        model, options, state = self._load_model(run_dir, checkpoint)
        record: dict[str, Any] = {"variant": variant, "step": step,
                                  "train_minutes": round(float(state.get("elapsed_s", 0.0)) / 60, 1)}
        record.update(self._gap(model, options))
        from speechkit.infer.pipeline import apply_ar_decoding

        original = self.pipeline.ar_lm
        self.pipeline.ar_lm = apply_ar_decoding(model, dict(self.pipeline.options.ar_decoding))
        try:
            record.update(self.synthesize_and_score(out_dir, str(checkpoint)))
        finally:
            self.pipeline.ar_lm = original
        return record

    def synthesize_and_score(self, out_dir: Path, key: str, infer: Any | None = None) -> dict[str, float]:
        """Synthesise the items of every task with the current pipeline into ``out_dir/infer/<task>``
        and score them into ``out_dir/score/<task>`` -> ``{"wer_<task>" | "per_<task>" | "sim_margin_<task>": value}``.

        ``key`` identifies the model (a finished task with the same key is not redone); ``infer``:
        another ``InferConfig`` for the synthesis (e.g. other sampling settings).
        """
        from speechkit.bin.infer import TaskRunner
        from speechkit.bin.score import score_task

        infer = infer or self.infer
        options = self.pipeline.options
        self.pipeline.options = infer.synthesis_options()
        figures: dict[str, float] = {}
        try:
            for task, items in self.items.items():
                task_dir = out_dir / "infer" / task
                task_dir.mkdir(parents=True, exist_ok=True)
                TaskRunner(self.pipeline, infer, task_dir, self.oracle).run(
                    task, items, fingerprint(key, task, dataclasses.asdict(infer)))
                metrics = score_task(task_dir, out_dir / "score" / task, self.scorers, self.score)["metrics"]
                for name in ("wer", "per", "sim_margin"):
                    if name in metrics:
                        figures[f"{name}_{task}"] = round(float(metrics[name]["value"]), 4)
        finally:
            self.pipeline.options = options
        return figures

    def _load_model(self, run_dir: Path, checkpoint: Path) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
        from speechkit import registry
        from speechkit.bin.lm_training import LMTrainConfig, model_context, read_codec_info
        from speechkit.bin.train_ar import AR_STAGE

        run_config = load_config(run_dir / "config.yaml")
        require_sections(run_config, ["ar_lm", "ar_train"])
        spec = as_plain_dict(run_config.ar_lm)
        options = validate_options(LMTrainConfig, run_config.ar_train, f"{run_dir}/config.yaml ar_train")
        context = model_context(AR_STAGE, PhoneTable.load(self.dump / PHONE_TABLE), read_codec_info(self.dump))
        model = registry.build("ar_lm", spec, **context)
        state = load_checkpoint(checkpoint)
        weights = {key.removeprefix("module."): value for key, value in state["model"].items()}
        model.load_state_dict(weights)
        return model.to(self.pipeline.device).eval(), options, state

    def _gap(self, model: torch.nn.Module, options: Any) -> dict[str, Any]:
        from speechkit.bin.lm_training import (RecipeDirs, durations_paths, load_pair_datasets, read_codec_info,
                                               uses_durations)
        from speechkit.bin.train_ar import AR_STAGE

        spec = {"name": model.registered_name}  # type: ignore[attr-defined]
        frame_rate = float(read_codec_info(self.dump)["frame_rate"])
        durations = durations_paths(self.dump, options) if uses_durations("ar_lm", spec) else {}
        durations = {name: path for name, path in durations.items() if name == options.valid_set}
        pairing = PairingConfig(options.cross_lingual_prompt_prob, round(options.max_prompt_seconds * frame_rate),
                                options.seed)
        [valid_set] = load_pair_datasets(AR_STAGE, model, options, self.data, self.dump,
                                         PhoneTable.load(self.dump / PHONE_TABLE), pairing, durations,
                                         [options.valid_set])
        limited = dataclasses.replace(options, diagnostic_max_pairs=self.curve.gap_pairs)
        report = AR_STAGE.diagnose(model, valid_set, {}, limited, self.pipeline.device,
                                   RecipeDirs(self.data, self.dump, self.exp))
        gaps: dict[str, Any] = {"gap": round(float(report["gap"]), 4)}
        for lang in ("en", "zh"):
            groups = [g for key, g in report.get("groups", {}).items() if key.startswith(f"{lang}/")]
            frames = sum(g["num_frames"] for g in groups)
            if frames:
                gaps[f"gap_{lang}"] = round(sum(g["gap"] * g["num_frames"] for g in groups) / frames, 4)
        return gaps


def variants_of(config: Any, curve: CurveConfig, exp: Path) -> dict[str, Path]:
    """Label -> AR run dir of every variant (the default: the recipe's AR, ``exp/ar``).

    Raises:
        DataError: a configured variant dir has no checkpoints.
    """
    named = dict(curve.variants) or {str(as_plain_dict(config.ar_lm).get("name", "ar")): "ar"}
    runs = {label: exp / str(subdir) for label, subdir in named.items()}
    for label, run_dir in runs.items():
        if not list_checkpoints(run_dir):
            raise DataError(f"curve variant {label!r}: {run_dir} has no checkpoints; train it (stage 4) first "
                            "or remove it from curve.variants.")
    return runs


def run_stage(config: Any, data: Path, dump: Path, exp: Path) -> Path:
    """Measure every missing point, then write ``exp/curve/curve_ar.jsonl``; returns its path."""
    require_sections(config, ["curve", "infer", "score", "ar_lm"])
    curve = validate_options(CurveConfig, config.curve, "curve")
    for task in curve.tasks:
        if task_spec(task).kind not in ("zero_shot", "cross_lingual"):
            raise ConfigError(f"curve.tasks: {task!r} is not a TTS task (zs_*/xl_*); the curve measures the AR model.")
    out_root = exp / "curve"
    evaluator: CheckpointEvaluator | None = None
    records = []
    for variant, run_dir in variants_of(config, curve, exp).items():
        checkpoints = list_checkpoints(run_dir)
        if curve.max_checkpoints > 0:
            checkpoints = checkpoints[-curve.max_checkpoints :]
        for step, checkpoint in checkpoints:
            point_dir = out_root / variant / f"step-{step:08d}"
            point_file = point_dir / POINT_FILE
            stat = checkpoint.stat()  # a retrained run rewrites its checkpoints: the point is measured again
            key = fingerprint(str(checkpoint.resolve()), stat.st_size, stat.st_mtime_ns, dataclasses.asdict(curve),
                              as_plain_dict(config.infer))  # sampling settings change the synthesis
            if point_file.is_file():
                saved = json.loads(point_file.read_text(encoding="utf-8"))
                if saved.get("key") == key:
                    records.append(saved["record"])
                    continue
            evaluator = evaluator or CheckpointEvaluator(config, curve, data, dump, exp)
            log.info("curve: %s step %d", variant, step)
            record = evaluator.evaluate(variant, run_dir, step, checkpoint, point_dir)
            atomic_write_text(point_file, json.dumps({"key": key, "record": record}, indent=1) + "\n")
            records.append(record)
    path = out_root / CURVE_FILE
    atomic_write_text(path, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
    log.info("curve: %d points -> %s", len(records), path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Run the curve step of stage 8; returns 0 on success."""
    parser = stage_parser("Stage 8 (curve): text-use gap, WER and speaker margin of every AR checkpoint.")
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--dump", type=Path, default=Path("dump"))
    parser.add_argument("--exp", type=Path, default=Path("exp"))
    args = parser.parse_args(argv)
    config = load_stage_config(args)
    if args.print_config:
        print_config_sections(config, ["curve"], args.config)
        return 0
    print(run_stage(config, args.data, args.dump, args.exp))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
