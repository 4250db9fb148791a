"""Bounded AR comparison: train an AR variant for a fixed time, then measure its text-use gap on dev.

The text-use gap is the teacher-forced loss (nats per target frame) with a wrong target text
minus with the right one; a model that reads its text loses much more with the wrong text.
For ``aligned_ar`` the right text uses the durations of ``dump/<set>/durations`` and the wrong
text gets its best durations from the trained aligner (``exp/align``: MAS of the wrong text
against the target's audio), so it is judged under its most favourable alignment; its loss is
code CE + advance BCE (the joint per-frame NLL of codes and durations), its code CE alone is
reported too.

Usage (one process per variant, e.g. both at once on 1 thread each)::

    python tools/compare_ar.py --recipe egs/vallex_zh_en --variant aligned_ar --minutes 10 \\
        --threads 1 --out /tmp/compare_ar
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import torch

from speechkit.align.durations import add_durations, read_durations
from speechkit.align.realign import TextRealigner
from speechkit.bin.common import run_main
from speechkit.data.lm_dataset import ARPairDataset, PairingConfig, collate_ar, load_lm_corpus
from speechkit.registry import build
from speechkit.text.languages import LANGUAGES
from speechkit.text.phone_table import PhoneTable
from speechkit.train.lm_diagnostics import with_wrong_text


def pair_items(dataset: ARPairDataset, durations: dict[str, list[int]], keys: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """Dataset items for ``keys`` with ``durations`` added (targets without durations are skipped)."""
    items = []
    for key in keys:
        target_utt, _ = dataset.utt_pair(key)
        if target_utt not in durations:
            continue
        item = dataset[key]
        add_durations(item, durations[target_utt], num_prompt_phones=item["prompt_phone_len"])
        item["target_utt"] = target_utt
        items.append(item)
    return items


def make_batches(dataset: ARPairDataset, epoch: int, max_length: int, rng: random.Random) -> list[list[tuple[int, int]]]:
    """Keys of one epoch grouped into batches of similar length, at most ``max_length`` padded positions."""
    order = sorted(range(len(dataset)), key=lambda index: dataset.lengths[index] + rng.random() * 20)
    batches, current, longest = [], [], 0
    for index in order:
        longest_next = max(longest, dataset.lengths[index])
        if current and longest_next * (len(current) + 1) > max_length:
            batches.append(current)
            current, longest_next = [], dataset.lengths[index]
        current.append((epoch, index))
        longest = longest_next
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


def wrong_text_items(items: list[dict[str, Any]], realign: TextRealigner, corpus: Any) -> list[dict[str, Any]]:
    """Each item with another item's target text; durations of that text from the aligner (MAS)
    (see :func:`speechkit.train.lm_diagnostics.with_wrong_text`)."""
    by_utt = {utt: index for index, utt in enumerate(corpus.utts)}
    target_codes = [corpus.codes_of(by_utt[item["target_utt"]]) for item in items]
    return with_wrong_text(items, target_codes=target_codes, realign=realign)


@torch.no_grad()
def mean_losses(model: torch.nn.Module, items: list[dict[str, Any]], batch_size: int = 16) -> dict[str, float]:
    """Frame-weighted means of ``loss`` (and ``code_loss`` when reported) over ``items``."""
    sums: dict[str, float] = {}
    frames = 0.0
    for start in range(0, len(items), batch_size):
        batch = collate_ar(items[start : start + batch_size])
        out = model(batch)
        weight = float((batch["code_lens"] - batch["prompt_lens"] + 1).sum())
        for key in ("loss", "code_loss", "accuracy"):
            if key in out:
                sums[key] = sums.get(key, 0.0) + float(out[key]) * weight
        frames += weight
    return {key: value / frames for key, value in sums.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, required=True, help="recipe dir with data/, dump/, exp/")
    parser.add_argument("--variant", required=True, choices=["valle_ar", "aligned_ar"])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-length", type=int, default=6000, help="padded positions per batch")
    parser.add_argument("--eval-pairs", type=int, default=200)
    parser.add_argument("--eval-every", type=float, default=0.0, help="minutes between gap evaluations (0 = end only)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    recipe = args.recipe
    table = PhoneTable.load(recipe / "dump" / "tokens.txt")
    codec_info = json.loads((recipe / "dump" / "codec_info.json").read_text())
    train = load_lm_corpus(recipe / "data" / "train", recipe / "dump" / "train" / "codes.scp", table)
    dev = load_lm_corpus(recipe / "data" / "dev", recipe / "dump" / "dev" / "codes.scp", table)
    durations = {name: read_durations(recipe / "dump" / name / "durations") for name in ("train", "dev")}
    train_set = ARPairDataset(train, PairingConfig(cross_lingual_prompt_prob=0.5, seed=args.seed))
    dev_set = ARPairDataset(dev, PairingConfig(cross_lingual_prompt_prob=0.5, seed=args.seed))
    spec = {"name": args.variant, "d_model": args.d_model, "num_heads": args.heads, "num_layers": args.layers,
            "ffn_dim": 4 * args.d_model, "dropout": 0.1}
    model = build("ar_lm", spec, num_phones=len(table), codebook_size=int(codec_info["codebook_size"]),
                  num_languages=len(LANGUAGES))
    keys = sorted(set(torch.linspace(0, len(dev_set) - 1, args.eval_pairs).round().long().tolist()))
    right = pair_items(dev_set, durations["dev"], [(0, index) for index in keys])
    realign = TextRealigner.load(recipe / "exp" / "align", dump=recipe / "dump", codec_dir=recipe / "exp" / "codec")
    wrong = wrong_text_items(right, realign, dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 100))
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    curve, step, epoch, start = [], 0, 0, time.monotonic()
    next_eval = args.eval_every * 60 if args.eval_every else math.inf

    def evaluate() -> dict[str, Any]:
        model.eval()
        losses_right, losses_wrong = mean_losses(model, right), mean_losses(model, wrong)
        model.train()
        point = {"minutes": round((time.monotonic() - start) / 60, 2), "step": step,
                 "gap": losses_wrong["loss"] - losses_right["loss"], "loss_right": losses_right["loss"],
                 "loss_wrong": losses_wrong["loss"], "accuracy_right": losses_right["accuracy"]}
        if "code_loss" in losses_right:
            point["code_gap"] = losses_wrong["code_loss"] - losses_right["code_loss"]
        print(json.dumps(point), flush=True)
        return point

    model.train()
    train_losses: list[float] = []
    while time.monotonic() - start < args.minutes * 60:
        for batch_keys in make_batches(train_set, epoch, args.max_length, rng):
            if time.monotonic() - start >= args.minutes * 60:
                break
            items = pair_items(train_set, durations["train"], batch_keys)
            if not items:
                continue
            out = model(collate_ar(items))
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            train_losses.append(float(out["loss"].detach()))
            if time.monotonic() - start >= next_eval:
                curve.append(evaluate())
                next_eval += args.eval_every * 60
        epoch += 1
    final = evaluate()
    result = {"variant": args.variant, "params": sum(p.numel() for p in model.parameters()), "steps": step,
              "minutes": args.minutes, "threads": args.threads, "train_loss_last50": sum(train_losses[-50:]) / max(1, len(train_losses[-50:])),
              "eval_pairs": len(right), "final": final, "curve": curve + [final]}
    (args.out / f"{args.variant}.json").write_text(json.dumps(result, indent=1) + "\n")
    torch.save(model.state_dict(), args.out / f"{args.variant}.pt")


if __name__ == "__main__":
    raise SystemExit(run_main(main))  # bad options or data: one clear message, exit 2
