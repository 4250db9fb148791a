"""AR sampling sweep: WER and speaker margin of the trained pipeline under several sampling settings.

Synthesises the first ``--max-items`` test items of each task with the pipeline pack of stage 7
(``exp/vallex_pack``) once per setting and scores them with the recipe's scorers (those named in
``curve.scorers``), so the ``infer:`` sampling defaults can be chosen by measurement.

A setting holds sampling options (``temperature``, ``top_k``, ``top_p``, ``seed``), best-of-N
reranking (``candidates``, ``candidate_temperature``, ``candidate_top_k``, ``candidate_languages``
as ``en+zh``), the LMs'
inference ``precision`` (``fp32``/``bf16``/``int8``), ``kv_cache`` (``fp32``/``bf16``/``int8``/``int4``),
``compile`` (``true``: the NAR through torch.compile) and ``attention`` (``auto``/``fp32``/``bf16``, the NAR's;
the pipeline is reloaded for these four) and options
of the AR model's decoding (``ar.<field>`` of its Config, e.g. ``ar.advance_threshold=0.4`` for
``aligned_ar``). ``--nar-pack`` swaps the pipeline's NAR for another trained one (e.g. a variant
trained with ``train_nar --run-name``), to compare NARs on the same AR outputs' settings.

Usage (from anywhere; paths are the recipe's)::

    python tools/sweep_sampling.py --recipe egs/vallex_zh_en \\
        --setting temperature=1.0 --setting temperature=0.7,top_k=20 --setting top_k=1 \\
        --setting temperature=0.5,ar.advance_threshold=0.4 \\
        [--nar-pack exp/nar_noise/pack] [--tasks zs_en xl_zh2en xl_en2zh] [--max-items 8] [--out exp/sweep]

Prints one row per setting and writes ``<out>/[nar-RUN_][NAME_]sweep.json`` (RESULTS.md renders
it). Outputs of each setting stay in ``<out>/<setting>/`` (a finished setting is not redone).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from speechkit.bin.common import run_main
from speechkit.bin.curve import CheckpointEvaluator, CurveConfig
from speechkit.config import load_config, validate_options
from speechkit.errors import ConfigError
from speechkit.infer.pipeline import VallexPipeline, apply_ar_decoding
from speechkit.infer.pipeline_pack import directory_fingerprint

def _boolean(value: str) -> bool:
    return value.lower() in ("1", "true", "yes")


SAMPLING_KEYS = {"temperature": float, "top_k": int, "top_p": float, "seed": int, "precision": str, "kv_cache": str,
                 "candidates": int, "candidate_temperature": float, "candidate_top_k": int,
                 "candidate_languages": lambda value: value.split("+"),
                 "compile": _boolean, "attention": str}


def parse_setting(text: str, ar_config: Any = None) -> dict[str, Any]:
    """``"temperature=0.7,top_k=20,ar.advance_threshold=0.4"`` -> ``{"temperature": 0.7, "top_k": 20,
    "ar.advance_threshold": 0.4}`` (``ar.`` fields typed after ``ar_config``'s current values)."""
    setting: dict[str, Any] = {}
    ar_fields = {field.name for field in dataclasses.fields(ar_config)} if ar_config is not None else set()
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        field = key.removeprefix("ar.")
        if key.startswith("ar.") and field in ar_fields and value:
            current = getattr(ar_config, field)
            setting[key] = _boolean(value) if isinstance(current, bool) else type(current)(value)
        elif key in SAMPLING_KEYS and value:
            setting[key] = SAMPLING_KEYS[key](value)
        else:
            raise ConfigError(f"--setting {text!r}: use KEY=VALUE pairs with KEY in {sorted(SAMPLING_KEYS)} "
                             f"or ar.FIELD with FIELD in {sorted(ar_fields)}.")
    return setting


def load_nar(pack_dir: Path, evaluator: CheckpointEvaluator) -> Any:
    """The NAR of a trained NAR pack, on the pipeline's device, prepared in its precision."""
    from speechkit.infer.precision import apply_precision
    from speechkit.pack import load_pack

    nar_lm = load_pack(pack_dir, kinds=["nar_lm"], device=evaluator.pipeline.device)["nar_lm"]
    options = evaluator.pipeline.options
    return apply_precision(nar_lm.eval(), options.precision, compile=options.compile, attention=options.attention)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", type=Path, required=True, help="recipe dir (e.g. egs/vallex_zh_en)")
    parser.add_argument("--config", default="conf/default.yaml", help="recipe config, relative to --recipe")
    parser.add_argument("--setting", action="append", required=True, help="e.g. temperature=0.7,top_k=20")
    parser.add_argument("--tasks", nargs="+", default=["zs_en", "xl_zh2en", "xl_en2zh"])
    parser.add_argument("--max-items", type=int, default=8)
    parser.add_argument("--out", default="exp/sweep", help="output dir, relative to --recipe")
    parser.add_argument("--nar-pack", type=Path, help="another trained NAR's pack (relative to --recipe), "
                        "e.g. exp/nar_noise/pack; default: the pipeline's own")
    parser.add_argument("--name", default="", help="table name: writes <out>/[nar-RUN_]<NAME>_sweep.json "
                        "(default <out>/[nar-RUN_]sweep.json), which RESULTS.md renders")
    args = parser.parse_args(argv)
    os.chdir(args.recipe)
    config = load_config(args.config)
    curve = dataclasses.replace(validate_options(CurveConfig, config.curve, "curve"), tasks=list(args.tasks),
                                max_items=args.max_items)
    evaluator = CheckpointEvaluator(config, curve, Path("data"), Path("dump"), Path("exp"))
    pack_key = directory_fingerprint(Path("exp") / "vallex_pack")
    prefix = ""
    if args.nar_pack:
        pack_key += directory_fingerprint(args.nar_pack)
        prefix = f"nar-{args.nar_pack.parent.name}_"
    precision = None
    rows = []
    for text in args.setting:
        setting = parse_setting(text, evaluator.pipeline.ar_lm.config)
        sampling = {key: value for key, value in setting.items() if not key.startswith("ar.")}
        infer = dataclasses.replace(evaluator.infer, **sampling)
        if (infer.precision, infer.kv_cache, infer.compile, infer.attention) != precision:  # LMs are prepared in place: reload
            evaluator.pipeline = VallexPipeline.load(Path("exp") / "vallex_pack", infer.synthesis_options())
            if args.nar_pack:
                evaluator.pipeline.nar_lm = load_nar(args.nar_pack, evaluator)
            precision = (infer.precision, infer.kv_cache, infer.compile, infer.attention)
        ar_lm = evaluator.pipeline.ar_lm
        ar_config = ar_lm.config
        apply_ar_decoding(ar_lm, {key[3:]: value for key, value in setting.items() if key.startswith("ar.")})
        label = prefix + ("_".join(f"{key}{'+'.join(value) if isinstance(value, list) else value}"
                                   for key, value in setting.items()) or "config")
        try:
            figures = evaluator.synthesize_and_score(Path(args.out) / label, pack_key + repr(ar_lm.config), infer)
        finally:
            ar_lm.config = ar_config
        rows.append({"setting": {**setting, **({"nar_pack": str(args.nar_pack)} if args.nar_pack else {})}, **figures})
        print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out) / f"{prefix}{args.name + '_' if args.name else ''}sweep.json"
    out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    columns = sorted({key for row in rows for key in row if key != "setting"})
    print("| setting | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for row in rows:
        print(f"| {row['setting']} | " + " | ".join(f"{row.get(c, float('nan')):.3f}" for c in columns) + " |")
    print(f"written: {args.recipe / out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))  # a bad setting or recipe: one clear message, exit 2
