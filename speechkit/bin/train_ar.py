"""Stage 4: train the autoregressive codec LM (level-1 tokens) on same-speaker pairs.

Usage::

    python -m speechkit.bin.train_ar --config conf/default.yaml --data data --dump dump --exp exp
    torchrun --nproc_per_node=2 -m speechkit.bin.train_ar --config ...   # DDP

Config sections: ``ar_lm:`` (component spec, e.g. ``{name: aligned_ar, d_model: 256}``) and
``ar_train:`` (:class:`speechkit.bin.lm_training.LMTrainConfig`). A phone-synchronous model
(``aligned_ar``) needs ``dump/<set>/durations`` and ``exp/align`` from the alignment step
(``python -m speechkit.bin.align``, run by stage 4 of the recipe first). Outputs in ``exp/ar/``:
checkpoints, ``train_log.jsonl``, ``curves.png``, ``config.yaml``, ``resume.sh``,
``text_use_gap.json`` (teacher-forced dev loss with a wrong text minus with the right one) and
the pack ``exp/ar/pack`` (with ``tokens.txt``). See :mod:`speechkit.bin.lm_training`.
"""
from __future__ import annotations

import sys
from typing import Any, Sequence

import torch
from torch import nn

from speechkit.align.realign import TextRealigner
from speechkit.bin import lm_training
from speechkit.bin.common import run_main
from speechkit.data.lm_dataset import ARPairDataset, LMCorpus, PairingConfig, collate_ar
from speechkit.train.lm_diagnostics import text_use_gap


def build_ar_dataset(corpus: LMCorpus, pairing: PairingConfig, model: nn.Module) -> ARPairDataset:
    """AR pairs whose prompts are cut to whole steps of the model (``frames_per_step``, default 1)."""
    frames_per_step = int(getattr(getattr(model, "config", None), "frames_per_step", 1))
    return ARPairDataset(corpus, pairing, frames_per_step=frames_per_step)


def diagnose_ar(
    model: nn.Module,
    valid_set: Any,
    context: dict[str, int],
    options: lm_training.LMTrainConfig,
    device: torch.device,
    dirs: lm_training.RecipeDirs,
) -> dict[str, Any]:
    """The text-use gap on the valid pairs (see :func:`speechkit.train.lm_diagnostics.text_use_gap`);
    with durations (``aligned_ar``) the wrong texts are aligned by the aligner of ``exp/align``."""
    realign = None
    if valid_set.corpus.durations is not None:
        realign = TextRealigner.load(dirs.exp / "align", dump=dirs.dump, codec_dir=dirs.exp / "codec")
    return text_use_gap(model, valid_set, max_items=options.diagnostic_max_pairs, device=device, realign=realign)


AR_STAGE = lm_training.LMStage(
    kind="ar_lm",
    train_section="ar_train",
    name="ar",
    module="speechkit.bin.train_ar",
    build_dataset=build_ar_dataset,
    collate=collate_ar,
    diagnose=diagnose_ar,
    diagnostic_file="text_use_gap.json",
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run stage 4; returns 0 on success."""
    return lm_training.main(AR_STAGE, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(run_main(main))
