"""AR sampling sweep: WER and speaker margin of the trained pipeline under several sampling settings.

Synthesises the first ``--max-items`` test items of each task with the pipeline pack of stage 7
(``exp/vallex_pack``) once per setting and scores them with the recipe's scorers (those named in
``curve.scorers``), so the ``infer:`` sampling defaults can be chosen by measurement.

Usage (from anywhere; paths are the recipe's)::

    python tools/sweep_sampling.py --recipe egs/vallex_zh_en \\
        --setting temperature=1.0 --setting temperature=0.7,top_k=20 --setting top_k=1 \\
        [--tasks zs_en xl_zh2en xl_en2zh] [--max-items 8] [--out exp/sweep]

Prints one row per setting and writes ``<out>/sweep.json``. Outputs of each setting stay in
``<out>/<setting>/`` (a finished setting is not redone).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from speechkit.bin.curve import CheckpointEvaluator, CurveConfig
from speechkit.config import load_config, validate_options
from speechkit.infer.pipeline_pack import directory_fingerprint

SAMPLING_KEYS = {"temperature": float, "top_k": int, "top_p": float, "seed": int}


def parse_setting(text: str) -> dict[str, Any]:
    """``"temperature=0.7,top_k=20"`` -> ``{"temperature": 0.7, "top_k": 20}``."""
    setting: dict[str, Any] = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key not in SAMPLING_KEYS or not value:
            raise SystemExit(f"--setting {text!r}: use KEY=VALUE pairs with KEY in {sorted(SAMPLING_KEYS)}.")
        setting[key] = SAMPLING_KEYS[key](value)
    return setting


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", type=Path, required=True, help="recipe dir (e.g. egs/vallex_zh_en)")
    parser.add_argument("--config", default="conf/default.yaml", help="recipe config, relative to --recipe")
    parser.add_argument("--setting", action="append", required=True, help="e.g. temperature=0.7,top_k=20")
    parser.add_argument("--tasks", nargs="+", default=["zs_en", "xl_zh2en", "xl_en2zh"])
    parser.add_argument("--max-items", type=int, default=8)
    parser.add_argument("--out", default="exp/sweep", help="output dir, relative to --recipe")
    args = parser.parse_args()
    os.chdir(args.recipe)
    config = load_config(args.config)
    curve = dataclasses.replace(validate_options(CurveConfig, config.curve, "curve"), tasks=list(args.tasks),
                                max_items=args.max_items)
    evaluator = CheckpointEvaluator(config, curve, Path("data"), Path("dump"), Path("exp"))
    pack_key = directory_fingerprint(Path("exp") / "vallex_pack")
    rows = []
    for text in args.setting:
        setting = parse_setting(text)
        infer = dataclasses.replace(evaluator.infer, **setting)
        label = "_".join(f"{key}{value}" for key, value in setting.items()) or "config"
        figures = evaluator.synthesize_and_score(Path(args.out) / label, pack_key, infer)
        rows.append({"setting": setting, **figures})
        print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out) / "sweep.json"
    out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    columns = sorted({key for row in rows for key in row if key != "setting"})
    print("| setting | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for row in rows:
        print(f"| {row['setting']} | " + " | ".join(f"{row.get(c, float('nan')):.3f}" for c in columns) + " |")
    print(f"written: {args.recipe / out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
