"""Duration-bucketed dynamic batching: budgets, coverage, determinism, epochs, ranks, resume."""
from __future__ import annotations

import random

import pytest

from speechkit.data.sampler import BucketBatchSampler
from speechkit.errors import ConfigError

_RNG = random.Random(0)
LENGTHS = [_RNG.randint(5, 100) for _ in range(300)]


def flat(batches):
    return [index for batch in batches for index in batch]


def test_batches_respect_the_padded_frame_and_size_budgets_and_cover_every_item():
    sampler = BucketBatchSampler(LENGTHS, max_frames=400, max_batch_size=8, num_buckets=6, seed=1)
    batches = list(sampler)
    assert sorted(flat(batches)) == list(range(len(LENGTHS)))
    assert all(sampler.padded_frames(b) <= 400 and len(b) <= 8 for b in batches)
    assert len(batches) == len(sampler)


def test_buckets_group_similar_lengths():
    sampler = BucketBatchSampler(LENGTHS, max_frames=400, num_buckets=10, seed=1)
    padding = sum(sampler.padded_frames(b) - sum(LENGTHS[i] for i in b) for b in sampler)
    unbucketed = BucketBatchSampler(LENGTHS, max_frames=400, num_buckets=1, seed=1)
    padding_unbucketed = sum(unbucketed.padded_frames(b) - sum(LENGTHS[i] for i in b) for b in unbucketed)
    assert padding < 0.3 * padding_unbucketed


def test_same_seed_and_epoch_same_plan_new_epoch_new_plan():
    first = BucketBatchSampler(LENGTHS, max_frames=400, seed=3)
    second = BucketBatchSampler(LENGTHS, max_frames=400, seed=3)
    assert list(first) == list(second)
    epoch0 = list(first)
    first.set_epoch(1)
    assert list(first) != epoch0
    first.set_epoch(0)
    assert list(first) == epoch0


def test_start_batch_skips_once_for_resume():
    sampler = BucketBatchSampler(LENGTHS, max_frames=400, seed=3)
    full = list(sampler)
    sampler.set_epoch(0, start_batch=5)
    assert list(sampler) == full[5:]
    assert list(sampler) == full  # the next pass starts from the beginning again


def test_ranks_get_disjoint_equal_count_slices():
    whole = BucketBatchSampler(LENGTHS, max_frames=300, seed=2, num_replicas=1, rank=0)
    shards = [BucketBatchSampler(LENGTHS, max_frames=300, seed=2, num_replicas=3, rank=r) for r in range(3)]
    slices = [list(s) for s in shards]
    assert len({len(s) for s in slices}) == 1
    seen = [flat(s) for s in slices]
    assert not (set(seen[0]) & set(seen[1]) or set(seen[0]) & set(seen[2]) or set(seen[1]) & set(seen[2]))
    assert len(whole) - sum(len(s) for s in slices) < 3  # at most world-1 batches dropped


def test_without_shuffle_batches_come_shortest_first():
    sampler = BucketBatchSampler(LENGTHS, max_frames=400, shuffle=False)
    longest = [max(LENGTHS[i] for i in b) for b in sampler]
    assert longest == sorted(longest)


def test_too_long_items_get_their_own_batch_and_bad_input_is_an_error():
    sampler = BucketBatchSampler([5, 500, 6], max_frames=100, seed=0)
    assert [1] in list(sampler)  # item 1 (500 frames) alone
    with pytest.raises(ConfigError, match="empty"):
        BucketBatchSampler([], max_frames=10)
    with pytest.raises(ConfigError, match="lengths must be positive"):
        BucketBatchSampler([3, 0], max_frames=10)
    with pytest.raises(ConfigError, match="max_frames"):
        BucketBatchSampler([3], max_frames=0)
    with pytest.raises(ConfigError, match="fewer processes"):
        list(BucketBatchSampler([3], max_frames=10, num_replicas=2, rank=1))
