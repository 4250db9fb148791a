"""Trainer: accumulation equivalence, resume == uninterrupted, validation, logs, curves, budgets."""
from __future__ import annotations

import copy

import pytest
import torch

from speechkit.data.sampler import BucketBatchSampler
from speechkit.errors import ConfigError
from speechkit.train import AVERAGED, Trainer, TrainerConfig, build_loader, list_checkpoints, read_log
from speechkit.train.trainer import resolve_amp

LENGTHS = [3, 5, 4, 8, 12, 7, 6, 9, 11, 10, 5, 4, 3, 6, 8, 12, 7, 9, 10, 11, 4, 5, 6, 3]


class Killed(RuntimeError):
    """Stands in for SIGKILL in the middle of training."""


def loaders(task, seed: int = 0):
    dataset = task.Dataset(LENGTHS, seed=seed)
    sampler = BucketBatchSampler(LENGTHS, max_frames=40, num_buckets=3, seed=seed)
    valid_set = task.Dataset(LENGTHS[:8], seed=seed + 1)
    valid_sampler = BucketBatchSampler(LENGTHS[:8], max_frames=40, shuffle=False)
    return (build_loader(dataset, sampler, task.collate), build_loader(valid_set, valid_sampler, task.collate))


def config(**overrides) -> TrainerConfig:
    options = dict(max_steps=20, lr=3e-2, warmup_steps=4, schedule="cosine", grad_accum=2, log_every=1,
                   checkpoint_every=5, valid_every=5, keep_last=2, average_last=2, progress=False)
    options.update(overrides)
    return TrainerConfig(**options)


def comparable(records):
    return [{k: v for k, v in r.items() if k != "steps_per_s"} for r in records]


def test_resume_after_kill_reproduces_the_uninterrupted_run(tmp_path, tiny_task):
    train, valid = loaders(tiny_task)
    straight = Trainer(tiny_task.Tagger(seed=1), train, tmp_path / "straight", config(), valid_loader=valid).fit()
    assert straight.step == 20 and straight.stop_reason == "max_steps"

    model = tiny_task.Tagger(seed=1)
    original_forward = model.forward
    calls = {"n": 0}

    def dying_forward(batch):
        calls["n"] += model.training
        if model.training and calls["n"] == 2 * 13 + 1:  # after step 13: checkpoints 5, 10
            raise Killed
        return original_forward(batch)

    model.forward = dying_forward
    train, valid = loaders(tiny_task)
    with pytest.raises(Killed):
        Trainer(model, train, tmp_path / "killed", config(), valid_loader=valid).fit()
    assert [step for step, _ in list_checkpoints(tmp_path / "killed")] == [5, 10]
    assert read_log(tmp_path / "killed" / "train_log.jsonl")[-1]["step"] == 13

    train, valid = loaders(tiny_task)
    resumed = Trainer(tiny_task.Tagger(seed=99), train, tmp_path / "killed", config(), valid_loader=valid).fit()
    assert resumed.step == 20
    expected = comparable(read_log(tmp_path / "straight" / "train_log.jsonl"))
    got = comparable(read_log(tmp_path / "killed" / "train_log.jsonl"))
    assert [r["step"] for r in got] == [r["step"] for r in expected]
    for want, have in zip(expected, got):
        assert want.keys() == have.keys()
        for key in want:
            assert have[key] == pytest.approx(want[key], abs=1e-6), (want["step"], key)
    losses = [r["loss"] for r in expected if r["split"] == "train"]
    assert sum(losses[-5:]) < sum(losses[:5])  # it learns


def test_checkpoints_are_pruned_averaged_and_load_weights_only(tmp_path, tiny_task):
    train, valid = loaders(tiny_task)
    model = tiny_task.Tagger()
    result = Trainer(model, train, tmp_path, config(keep_last=1, average_last=3), valid_loader=valid).fit()
    kept = list_checkpoints(tmp_path)
    assert [step for step, _ in kept] == [10, 15, 20]  # average_last wins over keep_last
    states = [torch.load(path, weights_only=True)["model"] for _, path in kept]
    averaged = torch.load(tmp_path / AVERAGED, weights_only=True)
    assert averaged["averaged_steps"] == [10, 15, 20]
    for name, tensor in averaged["model"].items():
        torch.testing.assert_close(tensor, sum(s[name] for s in states) / 3)
        torch.testing.assert_close(model.state_dict()[name], tensor)  # the model holds the average
    assert result.averaged == tmp_path / AVERAGED
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_validation_each_epoch_with_weighted_metrics(tmp_path, tiny_task):
    train, valid = loaders(tiny_task)
    trainer = Trainer(tiny_task.Tagger(), train, tmp_path, config(max_steps=0, epochs=2, valid_every=0),
                      valid_loader=valid)
    result = trainer.fit()
    assert result.stop_reason == "epochs" and result.epoch == 2
    valid_records = [r for r in read_log(tmp_path / "train_log.jsonl") if r["split"] == "valid"]
    assert [r["epoch"] for r in valid_records] == [1, 2]
    assert set(valid_records[-1]) >= {"loss", "accuracy", "step"}
    assert "weight" not in valid_records[-1]
    assert 0.0 <= result.valid["accuracy"] <= 1.0
    # frame-weighted: equals the loss over all dev frames at once
    batch = tiny_task.collate([valid.dataset[i] for i in range(len(valid.dataset))])
    trainer.model.eval()
    with torch.no_grad():
        assert trainer.model(batch)["loss"].item() == pytest.approx(result.valid["loss"], rel=1e-5)


def test_grad_accumulation_equals_a_double_batch(tmp_path, tiny_task):
    dataset = tiny_task.Dataset([6] * 8, seed=3)
    halves = [tiny_task.collate([dataset[i] for i in range(0, 4)]), tiny_task.collate([dataset[i] for i in range(4, 8)])]
    whole = [tiny_task.collate([dataset[i] for i in range(8)])]

    def sgd(model, cfg):
        return torch.optim.SGD(model.parameters(), lr=cfg.lr)

    base = tiny_task.Tagger(dropout=0.0, seed=5)
    accumulated, single = copy.deepcopy(base), copy.deepcopy(base)
    common = dict(max_steps=1, schedule="constant", warmup_steps=0, grad_clip=0.0, valid_every=0, average_last=0)
    Trainer(accumulated, halves, tmp_path / "a", config(grad_accum=2, **common), optimizer_factory=sgd).fit()
    Trainer(single, whole, tmp_path / "b", config(grad_accum=1, **common), optimizer_factory=sgd).fit()
    for name, tensor in single.state_dict().items():
        torch.testing.assert_close(accumulated.state_dict()[name], tensor, rtol=1e-6, atol=1e-7)
        assert not torch.equal(tensor, base.state_dict()[name])  # a real update happened


def test_time_budget_stops_cleanly_and_counts_across_resumes(tmp_path, tiny_task):
    train, _ = loaders(tiny_task)
    budget = config(max_steps=100000, max_minutes=0.002, checkpoint_every=100000, valid_every=0)
    result = Trainer(tiny_task.Tagger(), train, tmp_path, budget).fit()
    assert result.stop_reason == "max_minutes" and 0 < result.step < 100000
    assert [step for step, _ in list_checkpoints(tmp_path)] == [result.step]
    again = Trainer(tiny_task.Tagger(), train, tmp_path, budget).fit()
    assert again.stop_reason == "max_minutes" and again.step == result.step  # budget already spent


def test_cpu_bf16_autocast_trains(tmp_path, tiny_task):
    train, _ = loaders(tiny_task)
    result = Trainer(tiny_task.Tagger(), train, tmp_path, config(max_steps=3, amp="bf16", valid_every=0)).fit()
    assert result.step == 3
    assert all(r["loss"] == r["loss"] for r in read_log(tmp_path / "train_log.jsonl"))  # not NaN


def test_amp_modes_resolve_per_device():
    cpu = torch.device("cpu")
    assert resolve_amp("auto", cpu) == (None, False)
    assert resolve_amp("bf16", cpu) == (torch.bfloat16, False)
    with pytest.raises(ConfigError, match="needs CUDA"):
        resolve_amp("fp16", cpu)


def test_a_model_without_loss_is_a_clear_error(tmp_path, tiny_task):
    class NoLoss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, batch):
            return {"score": self.w.sum()}

    train, _ = loaders(tiny_task)
    with pytest.raises(ConfigError, match="scalar 'loss'"):
        Trainer(NoLoss(), train, tmp_path, config(valid_every=0)).fit()


def test_a_sampler_sharded_for_another_world_size_is_an_error(tmp_path, tiny_task):
    dataset = tiny_task.Dataset(LENGTHS)
    sampler = BucketBatchSampler(LENGTHS, max_frames=40, num_replicas=2, rank=0)
    with pytest.raises(ConfigError, match="init_distributed"):
        Trainer(tiny_task.Tagger(), build_loader(dataset, sampler, tiny_task.collate), tmp_path, config())
