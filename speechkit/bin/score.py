"""Recipe stage 8: score every inference task and write the results table.

Usage (from a recipe dir)::

    python -m speechkit.bin.score --config conf/default.yaml --data data --exp exp

For each ``<exp>/infer/<task>/items.jsonl`` (stage 7; one JSON object per synthesized utterance:
``id, task, speaker, lang, text, source_text, prompt_utt, prompt_wav, reference_wav,
other_speaker_wavs, pair``, optionally ``same_speaker_wav`` (the speaker's other sentence for
similarity; default ``reference_wav``) and ``wav``, else ``<task dir>/<id>.wav``) the scorers configured for
the item's language in the config's ``score:`` section are applied (an entry may carry
``tasks: [glob, ...]`` to run on matching tasks only, e.g. ASR-BLEU on ``s2st_*``). Outputs per
task, in ``<exp>/score/<task>/``: ``scores.jsonl`` (per item: scores and ASR transcripts) and
``metrics.json`` (n, and per metric the value with a 95% bootstrap interval; error rates pooled;
also per language when a task mixes languages). Finally ``RESULTS.md`` is rendered from the
metrics files (:mod:`speechkit.results.render`).

Resumable: a finished task is skipped (done-marker fingerprinting its items file and scorer
configuration, every option with its default filled in, so a default changed by an update scores
again); within a task, items are scored in chunks appended to ``scores.jsonl.partial``, so a
killed run re-scores at most one chunk. Relative wav paths resolve against the working directory,
then against the task dir. ``--data`` is accepted for a uniform stage command line; scoring reads
only ``--exp``.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from speechkit.bin.common import load_stage_config, run_main, stage_parser
from speechkit.config import as_plain_dict, config_to_yaml, require_sections, validate_options
from speechkit.errors import ConfigError, DataError
from speechkit.interfaces.scorer import ScoreItem, Scorer
from speechkit.registry import build, registry
from speechkit.results.metrics import METRICS_FILE, SCORES_FILE, read_scores, summarize_scores
from speechkit.results.stats import BootstrapConfig
from speechkit.utils.fs import atomic_write_text
from speechkit.utils.stage import StageMarker, fingerprint

log = logging.getLogger("speechkit.score")
ITEMS_FILE = "items.jsonl"
REQUIRED_FIELDS = ("id", "lang", "text")
#: Scorer option naming the ST model pack; filled with ``<exp>/st/pack`` when a config leaves it out.
PACK_OPTION = "pack"


@dataclasses.dataclass
class ScoreStageConfig:
    """The ``score:`` section.

    Attributes:
        scorers: per target language, a list of scorer specs (``{name: ..., **options}``; an optional
            ``tasks: [glob, ...]`` limits an entry to matching tasks).
        tasks: task names to score; empty = every task with an items file under ``<exp>/infer``.
        chunk_size: items scored between two appends to the partial scores file.
        bootstrap: confidence intervals (:class:`BootstrapConfig`).
        results: path of the rendered results table (relative to the working directory).
        targets: target checks of the results table; empty = the issue's targets
            (:data:`speechkit.results.render.DEFAULT_TARGETS`).
    """

    scorers: dict = dataclasses.field(default_factory=dict)
    tasks: list = dataclasses.field(default_factory=list)
    chunk_size: int = 8
    bootstrap: BootstrapConfig = dataclasses.field(default_factory=BootstrapConfig)
    results: str = "RESULTS.md"
    targets: list = dataclasses.field(default_factory=list)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def read_items(path: Path) -> list[dict[str, Any]]:
    """Items of an ``items.jsonl`` file, checked for the fields scoring needs and unique ids."""
    items, seen = [], set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as error:
            raise DataError(f"{path}:{number} is not JSON ({error}); re-run inference (stage 7).") from error
        missing = [key for key in REQUIRED_FIELDS if key not in item]
        if missing:
            raise DataError(f"{path}:{number} lacks field(s) {missing}; stage 7 writes {list(REQUIRED_FIELDS)}.")
        if item["id"] in seen:
            raise DataError(f"{path}:{number}: item id {item['id']!r} appears twice.")
        seen.add(item["id"])
        items.append(item)
    if not items:
        raise DataError(f"{path} holds no items; re-run inference (stage 7).")
    return items


def is_failed(item: dict[str, Any]) -> bool:
    """Whether stage 7 failed to make this item's audio (``"wav": null``, with an ``error``)."""
    return "wav" in item and not item["wav"]


def _resolve(path: str, task_dir: Path, what: str, item_id: str) -> Path:
    candidate = Path(path)
    for resolved in (candidate, task_dir / candidate) if not candidate.is_absolute() else (candidate,):
        if resolved.is_file():
            return resolved
    raise DataError(f"{task_dir / ITEMS_FILE}: item {item_id!r}: {what} {path} does not exist.")


def to_score_item(item: dict[str, Any], task_dir: Path) -> ScoreItem:
    """An ``items.jsonl`` record -> :class:`ScoreItem` (wav paths resolved and checked)."""
    item_id = str(item["id"])
    wav = _resolve(item.get("wav") or f"{item_id}.wav", task_dir, "wav", item_id)
    prompt = [_resolve(item["prompt_wav"], task_dir, "prompt_wav", item_id)] if item.get("prompt_wav") else []
    same_key = "same_speaker_wav" if item.get("same_speaker_wav") else "reference_wav"
    same = [_resolve(item[same_key], task_dir, same_key, item_id)] if item.get(same_key) else []
    others = [_resolve(p, task_dir, "other_speaker_wavs entry", item_id) for p in item.get("other_speaker_wavs") or []]
    return ScoreItem(item_id, wav, str(item["lang"]), str(item.get("text") or ""), prompt, same, others)


class ScorerSet:
    """Builds each configured scorer once and hands out those that apply to a task and language.

    Args:
        specs: ``score.scorers`` (language -> list of specs with optional ``tasks`` globs).
        context: constructor context for every scorer (e.g. the text frontend spec).
        default_pack: ST pack filled into scorers that have a ``pack`` option the spec leaves out.
    """

    def __init__(self, specs: dict[str, list], context: dict[str, Any], default_pack: Path) -> None:
        if not specs:
            raise ConfigError("score.scorers is empty: configure scorers per language, e.g. {en: [{name: whisper_wer}]}.")
        self.entries: dict[str, list[tuple[dict[str, Any], list[str]]]] = {}
        for lang, entries in specs.items():
            self.entries[lang] = []
            for entry in entries or []:
                spec = as_plain_dict(entry)
                patterns = list(spec.pop("tasks", None) or ["*"])
                if "name" not in spec:
                    raise ConfigError(f"score.scorers.{lang}: entry {entry} has no `name`.")
                name = str(spec.pop("name"))
                config_class = registry("scorer").config_class(name)
                if PACK_OPTION in {f.name for f in dataclasses.fields(config_class)} and PACK_OPTION not in spec:
                    spec[PACK_OPTION] = str(default_pack)
                # every option, defaults included: a default that changes with the code re-scores
                config = validate_options(config_class, spec, where=f"score.scorers.{lang} {name!r}")
                self.entries[lang].append(({"name": name, **dataclasses.asdict(config)}, patterns))
        self.context = context
        self._built: dict[str, Scorer] = {}
        self._recognizers: dict[str, Any] = {}

    def specs_for(self, task: str, lang: str) -> list[dict[str, Any]]:
        """Specs of the scorers applied to items of ``lang`` in ``task`` (whisper_wer first: others reuse its transcripts)."""
        if lang not in self.entries:
            raise ConfigError(f"Task {task} has items in language {lang!r} but score.scorers has no {lang!r} list.")
        specs = [spec for spec, patterns in self.entries[lang] if any(fnmatch.fnmatch(task, p) for p in patterns)]
        return sorted(specs, key=lambda spec: spec["name"] != "whisper_wer")

    def get(self, spec: dict[str, Any], lang: str) -> Scorer:
        """The built scorer for ``spec`` (shared across tasks; an ST recogniser is shared per pack)."""
        key = fingerprint(spec)
        if key not in self._built:
            context = dict(self.context)
            if PACK_OPTION in spec:
                from speechkit.plugins.scorer.phone_recognition import PhoneRecognizer

                pack = str(spec[PACK_OPTION])
                context["phone_recognizer"] = self._recognizers.setdefault(pack, PhoneRecognizer(pack))
            whisper = next((s for s in self._built.values() if s.registered_name == "whisper_wer"), None)
            if whisper is not None:
                context["whisper"] = whisper
            self._built[key] = build("scorer", spec, **context)
        return self._built[key]


def _merge(record: dict[str, Any], name: str, scores: dict[str, float], hypothesis: str | None) -> None:
    clash = set(scores) & set(record["scores"])
    if clash:
        raise ConfigError(f"Scorer {name!r} reports {sorted(clash)}, already reported by another scorer of the same item.")
    record["scores"].update({key: float(value) for key, value in scores.items()})
    if hypothesis is not None:
        record["hypotheses"][name] = hypothesis


def _read_partial(path: Path, key: str) -> dict[str, dict[str, Any]]:
    """Records already scored by an interrupted run with the same fingerprint."""
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        if not lines or json.loads(lines[0]).get("key") != key:
            return {}
        return {record["id"]: record for record in map(json.loads, filter(str.strip, lines[1:]))}
    except ValueError:  # a line cut by the kill: drop the partial file, re-score
        return {}


def score_task(task_dir: Path, out_dir: Path, scorers: ScorerSet, config: ScoreStageConfig) -> dict[str, Any]:
    """Score one task's items; write ``scores.jsonl`` and ``metrics.json`` in ``out_dir``; return the metrics."""
    task = task_dir.name
    items_path = task_dir / ITEMS_FILE
    items = read_items(items_path)
    langs = sorted({str(item["lang"]) for item in items})
    plan = {lang: scorers.specs_for(task, lang) for lang in langs}
    key = fingerprint(_digest(items_path), plan, dataclasses.asdict(config.bootstrap))
    marker = StageMarker(out_dir, "score", key)
    if marker.is_done() and (out_dir / METRICS_FILE).is_file():
        log.info("%s: scores up to date, skipping", task)
        return json.loads((out_dir / METRICS_FILE).read_text(encoding="utf-8"))
    marker.clear()
    out_dir.mkdir(parents=True, exist_ok=True)
    partial_path = out_dir / f"{SCORES_FILE}.partial"
    done = _read_partial(partial_path, key)
    if not done:
        atomic_write_text(partial_path, json.dumps({"key": key}) + "\n")
    todo = [item for item in items if item["id"] not in done]
    chunks = [todo[i:i + config.chunk_size] for i in range(0, len(todo), max(config.chunk_size, 1))]
    with partial_path.open("a", encoding="utf-8") as partial:
        for chunk in tqdm(chunks, desc=f"score {task}", unit="chunk", leave=False):
            for item in chunk:
                if is_failed(item):
                    record = {"id": item["id"], "lang": str(item["lang"]), "speaker": item.get("speaker", ""),
                              "scores": {}, "hypotheses": {}, "failed": str(item.get("error") or "no wav")}
                    partial.write(json.dumps(record, ensure_ascii=False) + "\n")
                    done[record["id"]] = record
            for lang in langs:
                batch = [item for item in chunk if str(item["lang"]) == lang and not is_failed(item)]
                if not batch:
                    continue
                records = [{"id": it["id"], "lang": lang, "speaker": it.get("speaker", ""), "scores": {}, "hypotheses": {}}
                           for it in batch]
                score_items = [to_score_item(it, task_dir) for it in batch]
                for spec in plan[lang]:
                    scorer = scorers.get(spec, lang)
                    results = scorer.score(score_items)
                    hypotheses = getattr(scorer, "hypotheses", {})
                    for record, result in zip(records, results):
                        _merge(record, spec["name"], result, hypotheses.get(record["id"]))
                for record in records:
                    partial.write(json.dumps(record, ensure_ascii=False) + "\n")
                    done[record["id"]] = record
            partial.flush()
    records = [done[item["id"]] for item in items]
    atomic_write_text(out_dir / SCORES_FILE, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    scored = [r for r in records if "failed" not in r]
    if not scored:
        raise DataError(f"{items_path}: every item failed in stage 7 (no wav), nothing to score.")
    metrics = summarize_scores(scored, config.bootstrap)
    metrics.update(task=task, items=str(items_path), scorers=plan, failed=len(records) - len(scored))
    if len(langs) > 1:
        metrics["by_language"] = {
            lang: {**summarize_scores([r for r in scored if r["lang"] == lang], config.bootstrap),
                   "failed": sum(1 for r in records if r["lang"] == lang and "failed" in r)}
            for lang in langs if any(r["lang"] == lang for r in scored)
        }
    atomic_write_text(out_dir / METRICS_FILE, json.dumps(metrics, indent=1, ensure_ascii=False) + "\n")
    partial_path.unlink(missing_ok=True)
    marker.mark_done(items=len(records))
    log.info("%s: %d items scored", task, len(records))
    return metrics


def find_tasks(exp: Path, wanted: Sequence[str]) -> list[Path]:
    """Task dirs under ``<exp>/infer`` holding an items file (all, or those named in ``wanted``)."""
    infer = exp / "infer"
    found = {path.parent.name: path.parent for path in sorted(infer.glob(f"*/{ITEMS_FILE}"))}
    if not found:
        raise DataError(f"No {infer}/<task>/{ITEMS_FILE} found; run inference (stage 7) first.")
    missing = [task for task in wanted if task not in found]
    if missing:
        raise DataError(f"score.tasks names {missing}, which have no items under {infer}; found {sorted(found)}.")
    return [found[task] for task in (wanted or sorted(found))]


def run_stage(config: Any, config_path: Path, exp: Path, command: str) -> Path:
    """Score every task under ``<exp>/infer``, then render the results table; returns its path."""
    from speechkit.results.render import render_results

    stage_config = validate_options(ScoreStageConfig, config.score, "score")
    context: dict[str, Any] = {}
    if "frontend" in config:
        context["frontend"] = as_plain_dict(config.frontend)
    scorers = ScorerSet(stage_config.scorers, context, exp / "st" / "pack")
    for task_dir in find_tasks(exp, stage_config.tasks):
        score_task(task_dir, exp / "score" / task_dir.name, scorers, stage_config)
    results = Path(stage_config.results)
    render_results(exp, results, config_path=config_path, command=command, targets=stage_config.targets or None)
    log.info("results table: %s", results.resolve())
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run the stage."""
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data"), help="data dir (accepted for a uniform command line)")
    parser.add_argument("--dump", type=Path, default=Path("dump"), help="dump dir (accepted for a uniform command line)")
    parser.add_argument("--exp", type=Path, default=Path("exp"), help="experiment dir holding infer/<task>/")
    parser.add_argument("--command", default="", help="the command to record in RESULTS.md (default: this one)")
    args = parser.parse_args(argv)
    config = load_stage_config(args)
    require_sections(config, ["score"], args.config)
    if args.print_config:
        print(config_to_yaml({"score": as_plain_dict(config.score)}), end="")
        return 0
    command = args.command or "python -m speechkit.bin.score " + shlex.join(
        [str(a) for a in (argv if argv is not None else sys.argv[1:])]
    )
    run_stage(config, args.config, args.exp, command)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
