"""Duration-bucketed dynamic batching: batches of similar-length items under a padded-frame budget.

Items are split into ``num_buckets`` buckets of similar length (equal-count quantiles of the
sorted lengths). Each epoch, the items of every bucket are shuffled (seeded by ``seed + epoch``),
cut greedily into batches whose *padded* cost ``max_len * batch_size`` stays within
``max_frames`` (and ``max_batch_size`` items), and the batches of all buckets are shuffled
together. The plan depends only on ``(lengths, seed, epoch)``, so every rank of a distributed run
computes the same plan and takes a disjoint, equal-count slice of it; a resumed run can start at
any batch of an epoch (:meth:`BucketBatchSampler.set_epoch` with ``start_batch``).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from speechkit.errors import ConfigError

log = logging.getLogger(__name__)


class BucketBatchSampler(Sampler[list[int]]):
    """Batch sampler over items with known lengths (e.g. frames), for ``DataLoader(batch_sampler=)``.

    Args:
        lengths: length of each item (frames, tokens, ...); index ``i`` is dataset item ``i``.
        max_frames: budget of padded frames per batch (``max_len * batch_size <= max_frames``).
            An item longer than the budget forms a batch on its own (logged once).
        max_batch_size: optional cap on the number of items per batch.
        num_buckets: number of equal-count length buckets.
        shuffle: shuffle items within buckets and batches across buckets each epoch; if False,
            batches come in order of increasing length (for validation).
        seed: base seed; epoch ``e`` uses ``seed + e``.
        num_replicas: number of distributed ranks (default: the initialised process group's
            world size, else 1).
        rank: this process's rank (default: the process group's rank, else 0).

    In a multi-rank run the last ``len(plan) % num_replicas`` batches of an epoch's plan are
    dropped so that ranks stay in step (which batches varies with the epoch's shuffle).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_frames: int,
        *,
        max_batch_size: int | None = None,
        num_buckets: int = 10,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if len(lengths) == 0:
            raise ConfigError("BucketBatchSampler needs at least one item; the dataset is empty.")
        if max_frames <= 0:
            raise ConfigError(f"max_frames must be positive, got {max_frames}.")
        if max_batch_size is not None and max_batch_size <= 0:
            raise ConfigError(f"max_batch_size must be positive or None, got {max_batch_size}.")
        if num_buckets <= 0:
            raise ConfigError(f"num_buckets must be positive, got {num_buckets}.")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if (self.lengths <= 0).any():
            bad = int(np.flatnonzero(self.lengths <= 0)[0])
            raise ConfigError(f"Item {bad} has length {int(self.lengths[bad])}; lengths must be positive.")
        self.max_frames = int(max_frames)
        self.max_batch_size = max_batch_size
        self.shuffle = shuffle
        self.seed = int(seed)
        self.num_replicas, self.rank = _resolve_rank(num_replicas, rank)
        self.buckets = _equal_count_buckets(self.lengths, min(num_buckets, len(self.lengths)))
        self.epoch = 0
        self.start_batch = 0
        self._plan_epoch: int | None = None
        self._plan: list[list[int]] = []
        too_long = int((self.lengths > self.max_frames).sum())
        if too_long:
            log.warning(
                "%d item(s) are longer than max_frames=%d and will form single-item batches; "
                "raise max_frames or filter long utterances.", too_long, self.max_frames,
            )

    # -- epoch control ------------------------------------------------------------------------
    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Use the plan of ``epoch``; iteration skips this rank's first ``start_batch`` batches."""
        self.epoch = int(epoch)
        self.start_batch = int(start_batch)

    def epoch_plan(self, epoch: int) -> list[list[int]]:
        """All batches of ``epoch`` (every rank's), as lists of item indices."""
        if self._plan_epoch != epoch:
            self._plan = self._make_plan(epoch)
            self._plan_epoch = epoch
        return self._plan

    def rank_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of ``epoch``: a disjoint slice, equal in count across ranks."""
        plan = self.epoch_plan(epoch)
        usable = len(plan) - len(plan) % self.num_replicas
        return plan[self.rank:usable:self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.rank_batches(self.epoch)
        start, self.start_batch = self.start_batch, 0  # a skip applies to one pass only
        yield from batches[start:]

    def __len__(self) -> int:
        """Number of batches this rank yields in the current epoch (ignoring ``start_batch``)."""
        return len(self.rank_batches(self.epoch))

    # -- planning -----------------------------------------------------------------------------
    def _make_plan(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng(self.seed + epoch)
        batches: list[list[int]] = []
        for bucket in self.buckets:
            order = rng.permutation(bucket) if self.shuffle else bucket
            batches.extend(self._cut(order))
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if len(batches) < self.num_replicas:
            raise ConfigError(
                f"Only {len(batches)} batch(es) per epoch for {self.num_replicas} ranks; lower "
                f"max_frames ({self.max_frames}) or use fewer processes."
            )
        return batches

    def _cut(self, indices: np.ndarray) -> list[list[int]]:
        """Greedy batches over ``indices`` in order under the padded-frame and size budgets."""
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0
        for index in indices.tolist():
            length = int(self.lengths[index])
            grown = max(longest, length)
            full = self.max_batch_size is not None and len(current) >= self.max_batch_size
            if current and (grown * (len(current) + 1) > self.max_frames or full):
                batches.append(current)
                current, grown = [], length
            current.append(index)
            longest = grown
        if current:
            batches.append(current)
        return batches

    def padded_frames(self, batch: Sequence[int]) -> int:
        """Padded cost ``max_len * len(batch)`` of a batch of item indices."""
        return int(self.lengths[list(batch)].max()) * len(batch)


def _equal_count_buckets(lengths: np.ndarray, num_buckets: int) -> list[np.ndarray]:
    """Indices sorted by length, split into ``num_buckets`` nearly equal-count groups."""
    order = np.argsort(lengths, kind="stable")
    return [chunk for chunk in np.array_split(order, num_buckets) if len(chunk)]


def _resolve_rank(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """Explicit values, else the initialised process group's, else a single process."""
    import torch.distributed as dist

    initialised = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    if num_replicas <= 0 or not 0 <= rank < num_replicas:
        raise ConfigError(f"Invalid rank {rank} for {num_replicas} replica(s).")
    return int(num_replicas), int(rank)

