"""The phone aligner: per-phone Gaussian means of acoustic features, aligned by MAS.

A small phone encoder (phone + language embeddings -> residual 1-D convolutions -> a few
Transformer layers) predicts, for every phone, the mean (and optionally a log standard
deviation) of the acoustic feature frames it covers. The score of phone ``p`` at frame ``t`` is
the diagonal-Gaussian log-likelihood ``LL[p, t] = -0.5 ||(x_t - mu_p) / sigma_p||^2 -
sum log sigma_p`` (divided by the feature size, which does not change the best path). Training
maximises ``LL`` along the Monotonic Alignment Search path (no gradient through the path
choice), as in Glow-TTS without the flow; a first phase may use a uniform path instead so the
means start near the right sounds.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from speechkit.align.mas import monotonic_alignment_search
from speechkit.config import require_minimums
from speechkit.errors import ConfigError
from speechkit.nn import TransformerStack, key_padding_mask, lengths_to_mask
from speechkit.nn.checks import check_dropout


@dataclasses.dataclass
class AlignerConfig:
    """Size of the phone aligner.

    Attributes:
        d_model: width of the phone encoder.
        conv_layers, kernel_size: residual convolution blocks over the phone sequence.
        transformer_layers, num_heads, ffn_dim: Transformer layers after the convolutions.
        dropout: dropout in both.
        learn_sigma: predict a per-phone log standard deviation too (else sigma = 1).
        objective: ``forward_sum`` (default): per frame, a softmax over the utterance's phones of
            the Gaussian scores, summed over all monotonic paths (CTC-style, as in RAD-TTS): it
            pushes phone means apart, so no phone becomes a generic "hub" that absorbs long
            stretches; ``viterbi``: maximise the scores along the MAS path only (hard EM; collapses
            on real speech more easily).
        score_scale: multiplies the per-dimension scores before the softmax over phones (its
            sharpness; forward_sum only).
        prior_weight: weight of a static near-diagonal alignment prior added to the phone
            log-posteriors (forward_sum) for training and for MAS: ``log BetaBinomial(p; P - 1,
            t + 1, T - t)``, as in RAD-TTS. Without it, an utterance whose phone means are still
            poor can collapse onto one "hub" phone that takes nearly all frames (seen on the
            Mandarin half of the embedded corpus); 0 turns it off.
    """

    d_model: int = 192
    conv_layers: int = 3
    kernel_size: int = 5
    transformer_layers: int = 0
    num_heads: int = 2
    ffn_dim: int = 512
    dropout: float = 0.1
    learn_sigma: bool = False
    objective: str = "forward_sum"
    score_scale: float = 8.0
    prior_weight: float = 1.0


class _ConvBlock(nn.Module):
    """``x + dropout(norm(relu(conv(x))))`` over a padded phone sequence."""

    def __init__(self, width: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(width, width, kernel_size, padding=kernel_size // 2)
        self.norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x: FloatTensor[B, P, D], valid: BoolTensor[B, P] -> FloatTensor[B, P, D] (zero on padding)."""
        x = x * valid.unsqueeze(2)
        y = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        return (x + self.dropout(self.norm(y))) * valid.unsqueeze(2)


class PhoneAligner(nn.Module):
    """Phones -> per-phone feature means; frames are assigned to phones by MAS.

    Args:
        config: :class:`AlignerConfig`.
        num_phones: phone table size (pad id 0); num_languages: language-ID table size;
        feature_dim: size ``F`` of the acoustic feature frames.
    """

    def __init__(self, config: AlignerConfig, *, num_phones: int, num_languages: int, feature_dim: int) -> None:
        super().__init__()
        if config.objective not in ("forward_sum", "viterbi"):
            raise ConfigError(f"align.model.objective must be 'forward_sum' or 'viterbi', got {config.objective!r}.")
        require_minimums(config, "align.model.", {"d_model": 2, "conv_layers": 1, "kernel_size": 1,
                                                  "transformer_layers": 0, "num_heads": 1, "ffn_dim": 1})
        check_dropout("align.model", config.dropout)
        if config.kernel_size % 2 == 0 or config.d_model % config.num_heads:
            raise ConfigError(
                f"align.model: kernel_size ({config.kernel_size}) must be odd and d_model ({config.d_model}) "
                f"divisible by num_heads ({config.num_heads})."
            )
        self.config = config
        self.num_phones, self.num_languages, self.feature_dim = num_phones, num_languages, feature_dim
        width = config.d_model
        self.phone_embedding = nn.Embedding(num_phones, width, padding_idx=0)
        self.language_embedding = nn.Embedding(num_languages, width)
        self.convs = nn.ModuleList(_ConvBlock(width, config.kernel_size, config.dropout) for _ in range(config.conv_layers))
        self.encoder = (
            TransformerStack(
                num_layers=config.transformer_layers, d_model=width, num_heads=config.num_heads,
                ffn_dim=config.ffn_dim, dropout=config.dropout,
            )
            if config.transformer_layers
            else None
        )
        self.mean_head = nn.Linear(width, feature_dim)
        self.log_sigma_head = nn.Linear(width, feature_dim) if config.learn_sigma else None

    def context(self) -> dict[str, int]:
        """The constructor's sizes (saved beside the weights)."""
        return {"num_phones": self.num_phones, "num_languages": self.num_languages, "feature_dim": self.feature_dim}

    def forward(
        self, phones: torch.Tensor, phone_langs: torch.Tensor, phone_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """phones, phone_langs: LongTensor[B, P], phone_lens: LongTensor[B] -> means
        FloatTensor[B, P, F] and log standard deviations FloatTensor[B, P, F] (None if not learned)."""
        valid = lengths_to_mask(phone_lens, phones.shape[1])
        x = self.phone_embedding(phones * valid) + self.language_embedding(phone_langs * valid)
        for block in self.convs:
            x = block(x, valid)
        if self.encoder is not None:
            x = self.encoder(x, key_padding_mask(valid))
        log_sigma = self.log_sigma_head(x).clamp(-4.0, 4.0) if self.log_sigma_head is not None else None
        return self.mean_head(x), log_sigma

    def log_likelihood(self, means: torch.Tensor, log_sigma: torch.Tensor | None, features: torch.Tensor) -> torch.Tensor:
        """means, log_sigma: FloatTensor[B, P, F]; features: FloatTensor[B, T, F] -> LL FloatTensor[B, P, T]
        (diagonal Gaussian without the constant, divided by ``F``)."""
        if log_sigma is None:
            distance = torch.cdist(means, features).pow(2)  # [B, P, T]
            return -0.5 * distance / self.feature_dim
        inverse_variance = torch.exp(-2.0 * log_sigma)  # [B, P, F]
        quadratic = (
            inverse_variance @ features.pow(2).transpose(1, 2)
            - 2.0 * (means * inverse_variance) @ features.transpose(1, 2)
            + (means.pow(2) * inverse_variance).sum(2, keepdim=True)
        )  # [B, P, T]
        return (-0.5 * quadratic - log_sigma.sum(2, keepdim=True)) / self.feature_dim

    def phone_log_posteriors(self, scores: torch.Tensor, phone_lens: torch.Tensor) -> torch.Tensor:
        """scores FloatTensor[B, P, T] -> log softmax over the valid phones of each frame of
        ``score_scale * scores`` (FloatTensor[B, P, T]; padded phones get -inf)."""
        valid = lengths_to_mask(phone_lens, scores.shape[1]).unsqueeze(2)
        return (self.config.score_scale * scores).masked_fill(~valid, float("-inf")).log_softmax(dim=1)

    def with_prior(self, log_posteriors: torch.Tensor, phone_lens: torch.Tensor, frame_lens: torch.Tensor) -> torch.Tensor:
        """``log_posteriors + prior_weight * log prior`` (see :func:`diagonal_log_prior`), FloatTensor[B, P, T]."""
        if self.config.prior_weight == 0:
            return log_posteriors
        prior = diagonal_log_prior(phone_lens, frame_lens, log_posteriors.shape[1], log_posteriors.shape[2])
        return log_posteriors + self.config.prior_weight * prior.to(log_posteriors)

    def path_scores(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The matrix MAS searches: FloatTensor[B, P, T] (phone log-posteriors plus the weighted
        alignment prior for ``forward_sum``, Gaussian scores for ``viterbi``)."""
        means, log_sigma = self(batch["phones"], batch["phone_langs"], batch["phone_lens"])
        scores = self.log_likelihood(means, log_sigma, batch["features"])
        if self.config.objective == "forward_sum":
            posteriors = self.phone_log_posteriors(scores, batch["phone_lens"])
            return self.with_prior(posteriors, batch["phone_lens"], batch["frame_lens"])
        return scores

    def loss(self, batch: dict[str, torch.Tensor], *, uniform_path: bool = False) -> dict[str, Any]:
        """Training loss per frame (see :class:`AlignerConfig` ``objective``).

        batch: ``phones``, ``phone_langs`` LongTensor[B, P], ``phone_lens`` LongTensor[B],
        ``features`` FloatTensor[B, T, F], ``frame_lens`` LongTensor[B] -> dict with ``loss``
        (scalar). ``uniform_path`` trains on the evenly spread path instead (a warm start).
        """
        scores = self.path_scores(batch)  # [B, P, T]
        phone_lens, frame_lens = batch["phone_lens"], batch["frame_lens"]
        if self.config.objective == "forward_sum" and not uniform_path:
            return {"loss": forward_sum_loss(scores, phone_lens, frame_lens)}
        if uniform_path:
            frame_phones = uniform_frame_phones(phone_lens, frame_lens, scores.shape[2])
        else:
            frame_phones = monotonic_alignment_search(scores, phone_lens, frame_lens)
        valid = frame_phones >= 0  # [B, T]
        on_path = scores.gather(1, frame_phones.clamp(min=0).unsqueeze(1)).squeeze(1)  # [B, T]
        return {"loss": -(on_path * valid).sum() / valid.sum().clamp(min=1)}

    @torch.no_grad()
    def align(self, batch: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """MAS durations of each item: list of LongTensor[P_b] (each >= 1, summing to T_b), and the
        score matrix FloatTensor[B, P, T] they were searched on."""
        scores = self.path_scores(batch)
        frame_phones = monotonic_alignment_search(scores, batch["phone_lens"], batch["frame_lens"])
        durations = []
        for row in range(frame_phones.shape[0]):
            path = frame_phones[row, : int(batch["frame_lens"][row])]
            durations.append(torch.bincount(path, minlength=int(batch["phone_lens"][row])))
        return durations, scores


def forward_sum_loss(log_posteriors: torch.Tensor, phone_lens: torch.Tensor, frame_lens: torch.Tensor) -> torch.Tensor:
    """-log of the summed probability of every monotonic path (each phone >= 1 frame), per frame.

    log_posteriors: FloatTensor[B, P, T] (log p(phone | frame)). Computed with CTC whose blank is
    made (practically) impossible and whose labels are the phone positions 1..P, so repeated
    phones are separate states.
    """
    batch, num_phones, num_frames = log_posteriors.shape
    blank = torch.full((batch, 1, num_frames), -1e4, dtype=log_posteriors.dtype, device=log_posteriors.device)
    log_probs = torch.cat([blank, log_posteriors.clamp(min=-1e4)], dim=1).permute(2, 0, 1)  # [T, B, P+1]
    targets = torch.arange(1, num_phones + 1, device=log_posteriors.device).expand(batch, -1)
    total = F.ctc_loss(log_probs, targets, frame_lens, phone_lens, blank=0, reduction="sum", zero_infinity=True)
    return total / frame_lens.sum().clamp(min=1)


def uniform_frame_phones(phone_lens: torch.Tensor, frame_lens: torch.Tensor, num_frames: int) -> torch.Tensor:
    """The evenly spread path: frame ``t`` of an item with ``P`` phones and ``T`` frames belongs to
    phone ``floor(t * P / T)``. phone_lens, frame_lens: LongTensor[B] -> LongTensor[B, num_frames]
    (-1 past the end)."""
    frames = torch.arange(num_frames, device=phone_lens.device).unsqueeze(0)  # [1, T]
    phones = torch.div(frames * phone_lens.unsqueeze(1), frame_lens.clamp(min=1).unsqueeze(1), rounding_mode="floor")
    return torch.where(frames < frame_lens.unsqueeze(1), phones, torch.full_like(phones, -1))


def diagonal_log_prior(phone_lens: torch.Tensor, frame_lens: torch.Tensor, num_phones: int, num_frames: int) -> torch.Tensor:
    """Static alignment prior: for frame ``t`` of ``T``, ``log BetaBinomial(p; n = P - 1, a = t + 1,
    b = T - t)`` over phone ``p`` of ``P``: its mode moves from the first phone to the last along
    the diagonal. phone_lens, frame_lens: LongTensor[B] -> FloatTensor[B, num_phones, num_frames]
    (0 outside each item's phones and frames)."""
    p = torch.arange(num_phones, dtype=torch.float64).view(1, -1, 1)
    t = torch.arange(num_frames, dtype=torch.float64).view(1, 1, -1)
    n = (phone_lens.double() - 1).clamp(min=0).view(-1, 1, 1)
    a, b = t + 1, frame_lens.double().view(-1, 1, 1) - t
    b = b.clamp(min=1.0)
    k = torch.minimum(p, n)
    log_choose = torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
    prior = log_choose + _log_beta(k + a, n - k + b) - _log_beta(a, b)
    valid = (p < phone_lens.view(-1, 1, 1)) & (t < frame_lens.view(-1, 1, 1))
    return torch.where(valid, prior, torch.zeros_like(prior)).float()


def _log_beta(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log B(x, y) elementwise."""
    return torch.lgamma(x) + torch.lgamma(y) - torch.lgamma(x + y)
