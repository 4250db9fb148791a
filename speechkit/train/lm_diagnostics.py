"""End-of-training diagnostics of the codec LMs on a held-out set.

* :func:`text_use_gap` (AR): teacher-forced loss on the target frames with a *wrong* target text
  minus the loss with the right one. A model that reads its text loses much more with the wrong
  text; a model that only continues the prompt's voice (the failure the issue-3 spike measured:
  0.04-0.14 nats) barely notices. Reported overall and per (target language, same/cross-lingual
  prompt). For a phone-synchronous AR (items with ``durations``) the wrong text gets its best
  durations from the trained aligner (:class:`speechkit.align.realign.TextRealigner`: MAS of the
  wrong text against the target's audio), so it is judged under its most favourable alignment.
* :func:`nar_level_metrics` (NAR): teacher-forced loss and top-1 accuracy of every level 2..L.

Both run in eval mode without gradients on items drawn with epoch 0 (deterministic).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from speechkit.align.durations import add_durations
from speechkit.data.lm_dataset import ARPairDataset, NARPairDataset, collate_ar, collate_nar
from speechkit.errors import DataError


def _evenly_spaced(count: int, limit: int) -> list[int]:
    """Up to ``limit`` indices spread over ``range(count)`` (every speaker and sentence kind)."""
    if limit <= 0 or limit >= count:
        return list(range(count))
    return sorted(set(np.linspace(0, count - 1, limit).round().astype(int).tolist()))


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


#: ``(phones LongTensor[P], phone_langs LongTensor[P], codes LongTensor[L, T]) -> [d1, ..., dP]``
Realigner = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], list[int]]


def with_wrong_text(
    items: Sequence[dict[str, Any]],
    *,
    target_codes: Sequence[torch.Tensor] | None = None,
    realign: Realigner | None = None,
) -> list[dict[str, Any]]:
    """Each AR item with its target phones replaced by another item's (a different sentence),
    its prompt transcript and audio unchanged.

    Items that carry ``durations`` (a phone-synchronous AR) need new ones for the wrong text:
    ``realign`` aligns it to the item's target audio, ``target_codes[i]`` (LongTensor[L, T], all
    codec levels of item ``i``'s target); the wrong text is then picked among texts with at most
    ``T`` phones (MAS gives every phone a frame).

    Raises:
        DataError: no other item has a different (short enough) text, or items carry durations
            and no ``realign``/``target_codes`` was given.
    """
    targets = [(item["phones"][item["prompt_phone_len"]:], item["phone_langs"][item["prompt_phone_len"]:])
               for item in items]
    needs_durations = any("durations" in item for item in items)
    if needs_durations and (realign is None or target_codes is None or len(target_codes) != len(items)):
        raise DataError("the items carry durations (a phone-synchronous AR): the wrong text needs durations too; "
                        "pass realign (the aligner of exp/align) and every item's target codes.")
    wrong = []
    count = len(items)
    for index, item in enumerate(items):
        own = targets[index][0]
        frames = int(item["codes"].shape[0]) - int(item["prompt_len"])
        for shift in range(count // 2, count // 2 + count):
            other = (index + shift) % count
            phones = targets[other][0]
            if other != index and not torch.equal(phones, own) and (not needs_durations or phones.numel() <= frames):
                break
        else:
            raise DataError("text_use_gap needs at least two pairs with different target texts"
                            + (" (of at most as many phones as the target has frames)." if needs_durations else "."))
        cut = item["prompt_phone_len"]
        replaced = {
            **item,
            "phones": torch.cat([item["phones"][:cut], targets[other][0]]),
            "phone_langs": torch.cat([item["phone_langs"][:cut], targets[other][1]]),
        }
        if needs_durations:
            assert realign is not None and target_codes is not None  # checked above
            durations = realign(targets[other][0], targets[other][1], target_codes[index])
            add_durations(replaced, durations, num_prompt_phones=cut)
        wrong.append(replaced)
    return wrong


@torch.no_grad()
def _weighted_ar_loss(model: nn.Module, items: Sequence[dict[str, Any]], batch_size: int,
                      device: torch.device) -> tuple[float, float, float]:
    """Sums over ``items`` of (loss x frames, accuracy x frames, frames); frames = target + EOS."""
    loss_sum = accuracy_sum = frames = 0.0
    for chunk in _chunks(items, batch_size):
        batch = {key: value.to(device) for key, value in collate_ar(chunk).items()}
        outputs = model(batch)
        weight = float((batch["code_lens"] - batch["prompt_lens"] + 1).sum())
        loss_sum += float(outputs["loss"]) * weight
        accuracy_sum += float(outputs["accuracy"]) * weight
        frames += weight
    return loss_sum, accuracy_sum, frames


def text_use_gap(
    model: nn.Module,
    dataset: ARPairDataset,
    *,
    max_items: int = 200,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    realign: Realigner | None = None,
) -> dict[str, Any]:
    """Teacher-forced target loss with a wrong text minus with the right text, in nats per frame.

    Args:
        model: an AR LM (batch as :func:`speechkit.data.lm_dataset.collate_ar` makes it).
        dataset: held-out pairs (e.g. the dev set); item ``(0, i)`` is used for each chosen ``i``.
        max_items: evaluate at most this many pairs, spread over the set (0 = all).
        batch_size: pairs per forward pass.
        device: where to run.
        realign: durations of a text against a target's codes (e.g.
            :class:`speechkit.align.realign.TextRealigner`); needed when the items carry
            ``durations`` (a phone-synchronous AR such as ``aligned_ar``), see :func:`with_wrong_text`.

    Returns:
        ``{"gap", "loss_right", "loss_wrong", "accuracy_right", "accuracy_wrong", "num_pairs",
        "num_frames", "groups": {"<target lang>/<same|cross>": {same keys}}}``; the wrong text of
        a pair is the target text of another pair of the set (a different sentence).
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    keys = _evenly_spaced(len(dataset), max_items)
    items = [dataset[(0, index)] for index in keys]
    pairs = [dataset.pair((0, index)) for index in keys]
    target_codes = None
    if realign is not None:
        target_codes = [dataset.corpus.codes_of(target) for target, _, _, _ in pairs]
    wrong_items = with_wrong_text(items, target_codes=target_codes, realign=realign)
    groups: dict[str, list[int]] = defaultdict(list)
    for position, (target, prompt, _, _) in enumerate(pairs):
        kind = "same" if dataset.corpus.langs[prompt] == dataset.corpus.langs[target] else "cross"
        groups[f"{dataset.corpus.langs[target]}/{kind}"].append(position)
    totals = np.zeros(6)  # right loss, right acc, right frames, wrong loss, wrong acc, wrong frames
    report: dict[str, Any] = {"groups": {}}
    try:
        for name in sorted(groups):
            positions = groups[name]
            right = _weighted_ar_loss(model, [items[p] for p in positions], batch_size, device)
            wrong = _weighted_ar_loss(model, [wrong_items[p] for p in positions], batch_size, device)
            sums = np.array([*right, *wrong])
            totals += sums
            report["groups"][name] = _gap_summary(sums, len(positions))
    finally:
        model.train(was_training)
    report.update(_gap_summary(totals, len(items)))
    return report


def _gap_summary(sums: np.ndarray, num_pairs: int) -> dict[str, float]:
    right_loss, right_acc, right_frames, wrong_loss, wrong_acc, wrong_frames = sums.tolist()
    loss_right, loss_wrong = right_loss / right_frames, wrong_loss / wrong_frames
    return {
        "gap": round(loss_wrong - loss_right, 5),
        "loss_right": round(loss_right, 5),
        "loss_wrong": round(loss_wrong, 5),
        "accuracy_right": round(right_acc / right_frames, 5),
        "accuracy_wrong": round(wrong_acc / wrong_frames, 5),
        "num_pairs": num_pairs,
        "num_frames": int(right_frames),
    }


@torch.no_grad()
def nar_level_metrics(
    model: nn.Module,
    dataset: NARPairDataset,
    num_quantizers: int,
    *,
    max_items: int = 200,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Teacher-forced loss and accuracy of each level 2..L on held-out pairs.

    Returns:
        ``{"levels": {"2": {"loss", "accuracy"}, ...}, "mean_accuracy", "num_pairs", "num_frames"}``
        (frame-weighted means; a model without an ``accuracy`` output reports loss only).
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    items = [dataset[(0, index)] for index in _evenly_spaced(len(dataset), max_items)]
    levels: dict[str, dict[str, float]] = {}
    frames = 0.0
    try:
        for level in range(2, num_quantizers + 1):
            loss_sum = accuracy_sum = frames = 0.0
            for chunk in _chunks(items, batch_size):
                batch: dict[str, Any] = {key: value.to(device) for key, value in collate_nar(chunk).items()}
                batch["level"] = level
                outputs = model(batch)
                weight = float(batch["code_lens"].sum())
                loss_sum += float(outputs["loss"]) * weight
                accuracy_sum += float(outputs.get("accuracy", float("nan"))) * weight
                frames += weight
            levels[str(level)] = {"loss": round(loss_sum / frames, 5), "accuracy": round(accuracy_sum / frames, 5)}
    finally:
        model.train(was_training)
    accuracies = [metrics["accuracy"] for metrics in levels.values()]
    return {
        "levels": levels,
        "mean_accuracy": round(float(np.mean(accuracies)), 5) if accuracies else float("nan"),
        "num_pairs": len(items),
        "num_frames": int(frames),
    }
