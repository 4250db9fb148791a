"""Residual vector quantization whose codebooks are fitted by k-means (no gradient training).

Level 1 clusters the feature frames; level ``l`` clusters what levels ``1..l-1`` left over.
k-means is seeded, runs on at most ``max_frames`` frames (a random subsample), initialises with
k-means++ on a smaller sample and then runs Lloyd iterations with chunked distance matrices, so
fitting 8 levels on ~100k 80-dim frames takes seconds to a minute on one CPU core.
"""
from __future__ import annotations

import torch

from speechkit.errors import ConfigError

#: Frames per chunk when computing distances (bounds memory to ~chunk x codebook floats).
DISTANCE_CHUNK = 16384


def nearest(points: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """points: FloatTensor[N, D], centroids: FloatTensor[K, D] -> ids LongTensor[N] (L2 nearest)."""
    ids = []
    half_norms = 0.5 * centroids.square().sum(1)  # [K]
    for chunk in points.split(DISTANCE_CHUNK):
        # argmin |x - c|^2 = argmax (x.c - |c|^2 / 2)
        ids.append((chunk @ centroids.T - half_norms).argmax(1))
    return torch.cat(ids) if ids else torch.zeros(0, dtype=torch.long)


def kmeans_plus_plus(points: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: FloatTensor[N, D] -> FloatTensor[k, D] (requires ``N >= k``)."""
    first = int(torch.randint(len(points), (1,), generator=generator))
    centroids = [points[first]]
    closest = (points - points[first]).square().sum(1)
    for _ in range(1, k):
        probabilities = closest / closest.sum() if closest.sum() > 0 else torch.full_like(closest, 1 / len(closest))
        index = int(torch.multinomial(probabilities, 1, generator=generator))
        centroids.append(points[index])
        closest = torch.minimum(closest, (points - points[index]).square().sum(1))
    return torch.stack(centroids)


def kmeans(
    points: torch.Tensor, k: int, iterations: int, generator: torch.Generator, init_frames: int = 20000
) -> torch.Tensor:
    """Lloyd's k-means: points FloatTensor[N, D] -> centroids FloatTensor[k, D].

    Empty clusters are re-seeded at the points worst served by the current codebook.
    """
    if len(points) < k:
        raise ConfigError(
            f"k-means needs at least codebook_size={k} frames, got {len(points)}. Fit on more "
            "audio or lower the codebook size."
        )
    seed_sample = points[torch.randperm(len(points), generator=generator)[:init_frames]]
    centroids = kmeans_plus_plus(seed_sample, k, generator)
    for _ in range(iterations):
        ids = nearest(points, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, ids, points)
        counts = torch.bincount(ids, minlength=k).to(points.dtype)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp_min(1)[:, None])
        if empty.any():
            errors = (points - centroids[nearest(points, centroids)]).square().sum(1)
            centroids[empty] = points[errors.topk(int(empty.sum())).indices]
    return centroids


class ResidualKMeansQuantizer:
    """``L`` codebooks of sizes ``codebook_sizes``; quantize = greedy residual nearest neighbour.

    Attributes:
        codebooks: list of FloatTensor[K_l, D] once fitted.
    """

    def __init__(self, codebook_sizes: list[int]) -> None:
        self.codebook_sizes = list(codebook_sizes)
        self.codebooks: list[torch.Tensor] = []

    @property
    def is_fitted(self) -> bool:
        """Whether every level has a codebook."""
        return len(self.codebooks) == len(self.codebook_sizes)

    def fit(
        self,
        frames: torch.Tensor,
        iterations: int,
        seed: int,
        max_frames: int,
        progress: bool = True,
    ) -> None:
        """frames: FloatTensor[N, D] -> fitted codebooks (level by level on the residuals)."""
        from tqdm import tqdm

        generator = torch.Generator().manual_seed(seed)
        if len(frames) > max_frames:
            frames = frames[torch.randperm(len(frames), generator=generator)[:max_frames]]
        residual = frames.float().clone()
        self.codebooks = []
        for size in tqdm(self.codebook_sizes, desc="rvq k-means", unit="level", disable=not progress, leave=False):
            codebook = kmeans(residual, size, iterations, generator)
            residual -= codebook[nearest(residual, codebook)]
            self.codebooks.append(codebook)

    def quantize(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: FloatTensor[T, D] -> codes LongTensor[L, T]."""
        residual = frames.float().clone()
        codes = []
        for codebook in self.codebooks:
            ids = nearest(residual, codebook)
            residual -= codebook[ids]
            codes.append(ids)
        return torch.stack(codes)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: LongTensor[L', T] (first ``L'`` levels) -> frames FloatTensor[T, D]."""
        total = torch.zeros(codes.shape[1], self.codebooks[0].shape[1])
        for level, ids in enumerate(codes):
            total += self.codebooks[level][ids]
        return total

    def state_dict(self) -> dict[str, object]:
        """Plain tensors only (loads with ``weights_only=True``)."""
        return {f"level{index}": codebook for index, codebook in enumerate(self.codebooks)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the codebooks of :meth:`state_dict`; sizes must match the config."""
        codebooks = [state[f"level{index}"] for index in range(len(self.codebook_sizes))]
        sizes = [len(codebook) for codebook in codebooks]
        if sizes != self.codebook_sizes:
            raise ConfigError(f"Saved codebook sizes {sizes} differ from the configured {self.codebook_sizes}.")
        self.codebooks = codebooks
