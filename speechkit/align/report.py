"""Sanity checks of an alignment a person can look at: plots of the score matrix with the path,
mean duration per phone class, and whether pauses land on quiet frames."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Mapping, Sequence

import torch

from speechkit.text.languages import token_language


def phone_class(token: str) -> str:
    """A coarse class for duration statistics: ``<sp>``/``<sil>`` as themselves; language phones as
    ``<lang>:vowel`` when the symbol carries a stress/tone digit (English vowels, Mandarin
    finals), else ``<lang>:consonant``."""
    lang = token_language(token)
    if lang == "-":
        return token
    symbol = token.partition(":")[2]
    return f"{lang}:{'vowel' if symbol[-1:].isdigit() else 'consonant'}"


def duration_statistics(
    durations: Mapping[str, Sequence[int]], tokens: Mapping[str, Sequence[str]], frame_rate: float
) -> dict[str, dict[str, float]]:
    """Per phone class: ``count``, ``mean_frames`` and ``mean_ms`` over every aligned phone."""
    totals: dict[str, list[int]] = defaultdict(list)
    for utt, counts in durations.items():
        for token, count in zip(tokens[utt], counts):
            totals[phone_class(token)].append(int(count))
    return {
        name: {
            "count": len(values),
            "mean_frames": round(sum(values) / len(values), 2),
            "mean_ms": round(1000.0 * sum(values) / len(values) / frame_rate, 1),
        }
        for name, values in sorted(totals.items())
    }


def pause_energy_check(
    durations: Mapping[str, Sequence[int]], tokens: Mapping[str, Sequence[str]], energy: Mapping[str, torch.Tensor]
) -> dict[str, float]:
    """Do pause tokens sit on quiet frames? ``energy[utt]``: FloatTensor[T] (e.g. the mean
    normalised log-mel of each frame).

    Returns the mean energy of frames aligned to ``<sp>``/``<sil>`` and to other phones, and the
    fraction of pause frames quieter than their utterance's median frame.
    """
    pause, speech, quiet, pause_frames = [], [], 0, 0
    for utt, counts in durations.items():
        frame_energy = energy.get(utt)
        if frame_energy is None:
            continue
        frame_tokens = [token for token, count in zip(tokens[utt], counts) for _ in range(int(count))]
        median = float(frame_energy.median())
        for token, value in zip(frame_tokens, frame_energy.tolist()):
            if token in ("<sp>", "<sil>"):
                pause.append(value)
                quiet += value < median
                pause_frames += 1
            else:
                speech.append(value)
    return {
        "pause_frames": float(pause_frames),
        "pause_mean_energy": sum(pause) / len(pause) if pause else float("nan"),
        "speech_mean_energy": sum(speech) / len(speech) if speech else float("nan"),
        "pause_below_median": quiet / pause_frames if pause_frames else float("nan"),
    }


def plot_alignment(
    scores: torch.Tensor, durations: Sequence[int], tokens: Sequence[str], path: Path, title: str = ""
) -> None:
    """Save a PNG of the score matrix scores: FloatTensor[P, T] with the path drawn on it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    num_phones, num_frames = scores.shape
    frame_phones = torch.repeat_interleave(torch.arange(num_phones), torch.as_tensor(list(durations)))
    figure, axis = plt.subplots(figsize=(max(6.0, num_frames / 20), max(4.0, num_phones / 4)))
    axis.imshow(scores.float().numpy(), aspect="auto", origin="lower", interpolation="nearest", cmap="viridis")
    axis.plot(range(num_frames), frame_phones.numpy(), color="red", linewidth=1.0)
    axis.set_yticks(range(num_phones))
    axis.set_yticklabels(tokens, fontsize=6)
    axis.set_xlabel("frame")
    axis.set_title(title or path.stem, fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
