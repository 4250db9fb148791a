"""Recipe stage 7: assemble the VALL-E X pipeline pack and synthesise the evaluation tasks.

Usage (from a recipe dir)::

    python -m speechkit.bin.infer --config conf/default.yaml --data data --dump dump --exp exp \
        [--tasks zs_en xl_zh2en ...]

1. ``exp/vallex_pack`` is assembled from ``exp/codec``, ``exp/ar/pack``, ``exp/nar/pack`` and
   ``exp/st/pack`` (without the ST pack, with a warning: the S2ST-from-speech tasks are skipped)
   plus the ``frontend:`` section and ``dump/tokens.txt``.
2. Each task of ``infer.tasks`` (see :mod:`speechkit.infer.tasks`) runs over the test speakers in
   batches, writing ``exp/infer/<task>/wav/<id>.wav`` and ``exp/infer/<task>/items.jsonl`` (one
   JSON object per item: the :class:`~speechkit.infer.tasks.TaskItem` fields plus ``wav``
   (the output, or the real wav for ``ground_truth``; ``null`` when synthesis failed),
   ``seconds``, ``stop_reason``, ``error`` and, for S2ST, the recognised/translated phones).
   The ``nar_oracle_*`` tasks read the test set's phones (``data/<set>/phones``) and aligned
   durations (``dump/<set>/durations``, from the alignment step of stage 4).

Idempotent and resumable: a finished task has a done-marker whose fingerprint covers the config,
the pack's sources and the item list; an interrupted task keeps the items it finished in
``progress.jsonl`` and resumes after them.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from speechkit.bin.common import load_stage_config, run_main, stage_parser
from speechkit.config import as_plain_dict, require_sections, validate_options
from speechkit.errors import AudioError, ConfigError, DataError, TextError
from speechkit.infer.pipeline import SynthesisOptions, SynthesisRequest, VallexPipeline
from speechkit.infer.pipeline_pack import assemble_pipeline_pack, directory_fingerprint
from speechkit.infer.tasks import TASKS, TaskItem, build_items, task_spec
from speechkit.utils.fs import atomic_write_text
from speechkit.utils.stage import StageMarker, fingerprint

log = logging.getLogger("speechkit.infer")
PACK_NAME = "vallex_pack"
PROGRESS_FILE = "progress.jsonl"
ITEMS_FILE = "items.jsonl"


@dataclasses.dataclass
class InferConfig:
    """The ``infer:`` section of a recipe config.

    Attributes:
        tasks: task names (see :data:`speechkit.infer.tasks.TASKS`), run in this order.
        test_set: data set whose speakers are evaluated (unseen in training).
        max_items: items per task and target language (speakers taken in turn; ``ground_truth`` and
            ``resynth`` get this many in each language); 0 = all.
        num_other_speakers: other speakers' real utterances per item (similarity margin).
        batch_size, seed, temperature, top_k, top_p: synthesis (None: the AR model's config).
        max_prompt_seconds, sentence_pause_ms, precision: see :class:`~speechkit.infer.SynthesisOptions`
            (``precision``: ``fp32``, ``bf16`` or ``int8`` inference of the LMs; ``kv_cache``:
            ``fp32``, ``bf16``, ``int8`` or ``int4`` AR cache; ``compile``: the NAR through ``torch.compile``; ``attention``: ``auto``,
            ``fp32`` or ``bf16`` arithmetic of the NAR's attention;
            ``ar_decoding``: options of the AR model's decoding set
            over its trained config, e.g. ``{advance_survival: 0.5}``).
        candidates, candidate_temperature, candidate_top_k, candidate_languages: best-of-N
            outputs ranked by the ST frontend's CTC (see :class:`~speechkit.infer.SynthesisOptions`).
    """

    tasks: list = dataclasses.field(default_factory=lambda: list(TASKS))
    test_set: str = "test"
    max_items: int = 40
    num_other_speakers: int = 3
    batch_size: int = 8
    seed: int = 0
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    max_prompt_seconds: float = 10.0
    sentence_pause_ms: float = 200.0
    precision: str = "fp32"
    kv_cache: str = "fp32"
    compile: bool = False
    attention: str = "auto"
    ar_decoding: dict = dataclasses.field(default_factory=dict)
    candidates: int = 1
    candidate_temperature: float = 0.5
    candidate_top_k: int | None = None
    candidate_languages: list | None = None

    def validate(self) -> None:
        """Raise :class:`ConfigError` for settings that cannot mean anything, before any work."""
        if self.max_items < 0 or self.num_other_speakers < 0:
            raise ConfigError(f"infer.max_items (0 = all) and infer.num_other_speakers must be >= 0, got "
                              f"{self.max_items} and {self.num_other_speakers}.")
        for name in self.tasks:
            task_spec(name)
        self.synthesis_options()  # its own checks (sampling, batch size, candidates...)

    def synthesis_options(self) -> SynthesisOptions:
        """The pipeline options these settings give."""
        return SynthesisOptions(
            max_prompt_seconds=self.max_prompt_seconds, sentence_pause_ms=self.sentence_pause_ms,
            batch_size=self.batch_size, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
            seed=self.seed, precision=self.precision, kv_cache=self.kv_cache, compile=self.compile,
            attention=self.attention, ar_decoding=as_plain_dict(self.ar_decoding) if self.ar_decoding else {},
            candidates=self.candidates, candidate_temperature=self.candidate_temperature,
            candidate_top_k=self.candidate_top_k,
            candidate_languages=list(self.candidate_languages) if self.candidate_languages is not None else None,
        )


def ensure_pipeline_pack(frontend_spec: dict[str, Any], dump: Path, exp: Path) -> tuple[Path, str]:
    """Assemble ``exp/vallex_pack`` unless its sources are unchanged -> (pack dir, source key)."""
    st_pack: Path | None = exp / "st" / "pack"
    if not (st_pack / "pack.yaml").is_file():
        log.warning("%s not found (stage 6 not run): the pack has no ST frontend and the S2ST-from-speech "
                    "tasks are skipped", st_pack)
        st_pack = None
    sources = [exp / "codec", exp / "ar" / "pack", exp / "nar" / "pack", st_pack, dump / "tokens.txt"]
    key = fingerprint(frontend_spec, [None if s is None else (str(s), directory_fingerprint(s)) for s in sources])
    pack_dir = exp / PACK_NAME
    marker = StageMarker(exp, PACK_NAME, key)
    if marker.is_done() and (pack_dir / "pack.yaml").is_file():
        log.info("pipeline pack %s is up to date", pack_dir)
        return pack_dir, key
    marker.clear()
    assemble_pipeline_pack(pack_dir, exp / "codec", exp / "ar" / "pack", exp / "nar" / "pack", st_pack,
                           frontend_spec, dump / "tokens.txt")
    marker.mark_done(st_frontend=st_pack is not None)
    return pack_dir, key


@dataclasses.dataclass
class OracleTargets:
    """What the ``nar_oracle`` tasks take from the data instead of the AR model: each test
    utterance's phone tokens and their aligned durations in codec frames."""

    phones: dict[str, list[str]]
    durations: dict[str, list[int]]

    @classmethod
    def load(cls, data_dir: Path, dump_dir: Path) -> "OracleTargets":
        """From ``data_dir/phones`` (stage 2) and ``dump_dir/durations`` (stage 4's alignment).

        Raises:
            DataError: either file is missing (names the stage that writes it).
        """
        from speechkit.align.durations import DURATIONS_FILE, read_durations
        from speechkit.data.datadir import read_table

        if not (data_dir / "phones").is_file():
            raise DataError(f"{data_dir}/phones does not exist: run stage 2 (./run.sh --stage 2 --stop-stage 2).")
        phones = {utt: line.split() for utt, line in read_table(data_dir / "phones", allow_empty_value=True).items()}
        return cls(phones, read_durations(dump_dir / DURATIONS_FILE))


class TaskRunner:
    """Runs one task's items through the pipeline, resumably (see the module docstring)."""

    def __init__(self, pipeline: VallexPipeline, config: InferConfig, out_dir: Path,
                 oracle: OracleTargets | None = None) -> None:
        self.pipeline, self.config, self.out_dir, self.oracle = pipeline, config, out_dir, oracle

    def run(self, name: str, items: list[TaskItem], key: str) -> list[dict[str, Any]]:
        """Make every item's output -> records in ``items`` order (also written to items.jsonl)."""
        done = self._resume(key)
        pending = [item for item in items if item.id not in done]
        if done:
            log.info("%s: resuming after %d finished items", name, len(done))
        positions = {item.id: index for index, item in enumerate(items)}
        with (self.out_dir / PROGRESS_FILE).open("a", encoding="utf-8") as progress, \
                tqdm(total=len(items), initial=len(items) - len(pending), desc=name, unit="utt") as bar:
            size = 10**9 if task_spec(name).kind == "ground_truth" else self.config.batch_size
            for start in range(0, len(pending), size):
                chunk = pending[start : start + size]
                for record in self._run_chunk(name, chunk, self.config.seed + positions[chunk[0].id]):
                    done[record["id"]] = record
                    progress.write(json.dumps(record, ensure_ascii=False) + "\n")
                progress.flush()
                bar.update(len(chunk))
        records = [done[item.id] for item in items]
        atomic_write_text(self.out_dir / ITEMS_FILE, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        (self.out_dir / PROGRESS_FILE).unlink(missing_ok=True)
        return records

    def _resume(self, key: str) -> dict[str, dict[str, Any]]:
        """Records finished by an interrupted run with the same ``key`` (else start afresh)."""
        path = self.out_dir / PROGRESS_FILE
        header = json.dumps({"key": key}) + "\n"
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        done: dict[str, dict[str, Any]] = {}
        if lines and _json_or_empty(lines[0]).get("key") == key:
            for line in lines[1:]:
                record = _json_or_empty(line)
                if "id" not in record:
                    break  # a line cut by a kill: what follows it is not trusted
                done[record["id"]] = record
        atomic_write_text(path, header + "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in done.values()))
        return done

    def _run_chunk(self, name: str, items: list[TaskItem], seed: int) -> list[dict[str, Any]]:
        kind = task_spec(name).kind
        if kind == "ground_truth":
            return [self._record(item, wav=item.reference_wav) for item in items]
        if kind == "resynth":
            return [self._resynthesize(item) for item in items]
        if kind == "nar_oracle":
            return self._complete_oracle(items)
        requests: list[SynthesisRequest | None] = []
        extras: list[dict[str, Any]] = []
        for item in items:
            try:
                request, extra = self._request(kind, item)
            except (AudioError, TextError) as error:
                log.warning("%s %s: %s", name, item.id, error)
                request, extra = None, {"error": str(error)}
            requests.append(request)
            extras.append(extra)
        valid = [request for request in requests if request is not None]
        results = iter(self.pipeline.generate(valid, seed=seed, batch_size=self.config.batch_size))
        records = []
        for item, request, extra in zip(items, requests, extras):
            if request is None:
                records.append(self._record(item, **extra))
                continue
            result = next(results)
            if result.candidate_scores is not None:
                extra = {**extra, "candidate": result.candidate,
                         "candidate_scores": [round(score, 4) for score in result.candidate_scores]}
            records.append(self._save(item, result.wav, stop_reason=result.stop_reason, **extra))
        return records

    def _request(self, kind: str, item: TaskItem) -> tuple[SynthesisRequest, dict[str, Any]]:
        from speechkit.audio.io import load_audio

        pipeline = self.pipeline
        wav, rate = load_audio(item.prompt_wav)
        if kind in ("zero_shot", "cross_lingual"):
            prompt = pipeline.make_voice_prompt(wav, rate, item.prompt_text, item.source_lang)
            accent = item.lid if item.lid != item.lang else None
            return pipeline.text_request(item.text, prompt, item.lang, accent), {}
        oracle = kind == "s2st_oracle"
        request, info = pipeline.speech_request(
            wav, rate, item.lang, source_lang=item.source_lang if oracle else None,
            source_text=item.source_text if oracle else None, target_text=item.text if oracle else None,
        )
        return request, {"source_phones": " ".join(info["source_phones"]),
                         "target_phones": " ".join(info["target_phones"]),
                         "recognized_source_lang": info["source_lang"]}

    def _resynthesize(self, item: TaskItem) -> dict[str, Any]:
        from speechkit.audio.io import load_audio

        wav, rate = load_audio(item.reference_wav)
        codes = self.pipeline.encode_audio(wav, rate, item.reference_wav)
        speech = self.pipeline.codec.decode(codes).detach().cpu().float().numpy().reshape(-1)
        return self._save(item, speech, stop_reason="resynth")

    def _complete_oracle(self, items: list[TaskItem]) -> list[dict[str, Any]]:
        """The NAR and vocoder on each reference utterance's level-1 codes and aligned phones."""
        from speechkit.align.mas import durations_to_frame_phones
        from speechkit.audio.io import load_audio

        if self.oracle is None:
            raise DataError("nar_oracle tasks need the test set's phones and durations (OracleTargets).")
        pipeline, ready, records = self.pipeline, [], {}
        for item in items:
            phones, durations = self.oracle.phones.get(item.reference_utt), self.oracle.durations.get(item.reference_utt)
            if phones is None or durations is None or len(phones) != len(durations):
                records[item.id] = self._record(item, error="no phones/durations of the reference: re-run stages 2 and 4")
                continue
            wav, rate = load_audio(item.prompt_wav)
            prompt = pipeline.make_voice_prompt(wav, rate, item.prompt_text, item.source_lang)
            reference, reference_rate = load_audio(item.reference_wav)
            level1 = pipeline.encode_audio(reference, reference_rate, item.reference_wav)[0]
            frame_phones = durations_to_frame_phones(durations)
            if frame_phones.numel() != level1.numel():
                records[item.id] = self._record(
                    item, error=f"durations cover {frame_phones.numel()} frames, the codes {level1.numel()}: "
                                "re-run the alignment step of stage 4")
                continue
            ready.append((item, SynthesisRequest(prompt, phones, item.lang, item.lid), level1, frame_phones))
        if ready:
            results = pipeline.complete_level1([r[1] for r in ready], [r[2] for r in ready], [r[3] for r in ready])
            for (item, *_), result in zip(ready, results):
                records[item.id] = self._save(item, result.wav, stop_reason=result.stop_reason)
        return [records[item.id] for item in items]

    def _save(self, item: TaskItem, wav: Any, **extra: Any) -> dict[str, Any]:
        from speechkit.audio.io import save_audio

        if len(wav) == 0:
            return self._record(item, error="no audio: the AR model ended at once", **extra)
        path = self.out_dir / "wav" / f"{item.id}.wav"
        save_audio(path, wav, self.pipeline.sample_rate)
        return self._record(item, wav=str(path), seconds=round(len(wav) / self.pipeline.sample_rate, 3), **extra)

    @staticmethod
    def _record(item: TaskItem, wav: str | None = None, **extra: Any) -> dict[str, Any]:
        return {**item.as_record(), "wav": wav, "seconds": extra.pop("seconds", None),
                "stop_reason": extra.pop("stop_reason", None), "error": extra.pop("error", None), **extra}


def _json_or_empty(line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def run_stage(config: dict[str, Any], infer: InferConfig, data: Path, dump: Path, exp: Path,
              tasks: Sequence[str] | None = None) -> dict[str, Path]:
    """Assemble the pack and run ``tasks`` (default ``infer.tasks``) -> task name -> items.jsonl."""
    from speechkit.data.datadir import DataDir

    names = list(tasks or infer.tasks)
    for name in names:
        task_spec(name)
    pack_dir, pack_key = ensure_pipeline_pack(as_plain_dict(config["frontend"]), dump, exp)
    test = DataDir.load(data / infer.test_set)
    oracle: OracleTargets | None = None
    if any(task_spec(name).kind == "nar_oracle" for name in names):
        oracle = OracleTargets.load(data / infer.test_set, dump / infer.test_set)
    pipeline: VallexPipeline | None = None
    outputs: dict[str, Path] = {}
    settings = {k: v for k, v in dataclasses.asdict(infer).items() if k != "tasks"}
    for name in names:
        out_dir = exp / "infer" / name
        items = build_items(name, test, infer.max_items, infer.num_other_speakers)
        if not items:
            log.warning("%s: the test set has no items for this task; skipped", name)
            continue
        key = fingerprint(name, settings, pack_key, [(i.id, i.prompt_utt, i.text) for i in items])
        if task_spec(name).kind == "nar_oracle" and oracle is not None:  # realigned durations: redo
            key = fingerprint(key, [(oracle.phones.get(i.reference_utt), oracle.durations.get(i.reference_utt))
                                    for i in items])
        marker = StageMarker(out_dir, "items", key)
        if marker.is_done():
            log.info("%s: done already (%s)", name, out_dir / ITEMS_FILE)
            outputs[name] = out_dir / ITEMS_FILE
            continue
        pipeline = pipeline or load_task_pipeline(pack_dir, infer)
        if task_spec(name).needs_st and pipeline.st_frontend is None:
            log.warning("%s: skipped, the pipeline pack has no ST frontend (run stage 6)", name)
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        records = TaskRunner(pipeline, infer, out_dir, oracle).run(name, items, key)
        failed = sum(record["wav"] is None for record in records)
        marker.mark_done(items=len(records), failed=failed)
        log.info("%s: %d items (%d failed) -> %s", name, len(records), failed, out_dir / ITEMS_FILE)
        outputs[name] = out_dir / ITEMS_FILE
    return outputs


def load_task_pipeline(pack_dir: Path, infer: InferConfig) -> VallexPipeline:
    """The pipeline pack with ``infer``'s options; without an ST frontend to rank candidates,
    each output is the main decoding (``candidates`` 1, with a warning)."""
    pipeline = VallexPipeline.load(pack_dir, infer.synthesis_options())
    if pipeline.st_frontend is None and pipeline.options.candidates > 1:
        log.warning("candidates: %d needs the ST frontend to rank outputs, and the pack has none (run stage 6); "
                    "keeping one output per item", pipeline.options.candidates)
        pipeline.options.candidates = 1
    return pipeline


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m speechkit.bin.infer``."""
    parser = stage_parser("Stage 7: assemble the VALL-E X pack and synthesise the evaluation tasks.")
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--dump", type=Path, default=Path("dump"))
    parser.add_argument("--exp", type=Path, default=Path("exp"))
    parser.add_argument("--tasks", nargs="+", help="run only these tasks (default: infer.tasks)")
    args = parser.parse_args(argv)
    config = load_stage_config(args)
    if args.print_config:
        from omegaconf import OmegaConf

        print(OmegaConf.to_yaml(config, resolve=True))
        return 0
    require_sections(config, ["frontend", "infer"], args.config)
    infer = validate_options(InferConfig, config.infer, where="infer")
    infer.validate()
    outputs = run_stage(config, infer, args.data, args.dump, args.exp, args.tasks)
    for name, path in outputs.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
