"""Stage 5: train the non-autoregressive codec LM (levels 2..L) on same-speaker pairs.

Usage::

    python -m speechkit.bin.train_nar --config conf/default.yaml --data data --dump dump --exp exp
    torchrun --nproc_per_node=2 -m speechkit.bin.train_nar --config ...   # DDP

Config sections: ``nar_lm:`` (component spec, e.g. ``{name: valle_nar, d_model: 256}``) and
``nar_train:`` (:class:`speechkit.bin.lm_training.LMTrainConfig`; ``max_prompt_seconds`` crops the
acoustic prompt). Outputs in ``exp/nar/``: checkpoints, logs, ``level_accuracy.json`` (dev loss
and accuracy of every level) and the pack ``exp/nar/pack`` (with ``tokens.txt``). See
:mod:`speechkit.bin.lm_training`.
"""
from __future__ import annotations

import sys
from typing import Any, Sequence

import torch
from torch import nn

from speechkit.bin import lm_training
from speechkit.bin.common import run_main
from speechkit.data.lm_dataset import LMCorpus, NARPairDataset, PairingConfig, collate_nar
from speechkit.train.lm_diagnostics import nar_level_metrics


def build_nar_dataset(corpus: LMCorpus, pairing: PairingConfig, model: nn.Module) -> NARPairDataset:
    """NAR pairs (the model does not change how they are made)."""
    return NARPairDataset(corpus, pairing)


def diagnose_nar(
    model: nn.Module,
    valid_set: Any,
    context: dict[str, int],
    options: lm_training.LMTrainConfig,
    device: torch.device,
    dirs: lm_training.RecipeDirs,
) -> dict[str, Any]:
    """Per-level dev loss and accuracy (see :func:`speechkit.train.lm_diagnostics.nar_level_metrics`)."""
    return nar_level_metrics(model, valid_set, context["num_quantizers"], max_items=options.diagnostic_max_pairs,
                             device=device)


NAR_STAGE = lm_training.LMStage(
    kind="nar_lm",
    train_section="nar_train",
    name="nar",
    module="speechkit.bin.train_nar",
    build_dataset=build_nar_dataset,
    collate=collate_nar,
    diagnose=diagnose_nar,
    diagnostic_file="level_accuracy.json",
    uses_num_quantizers=True,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run stage 5; returns 0 on success."""
    return lm_training.main(NAR_STAGE, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(run_main(main))
