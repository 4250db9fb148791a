"""Worker for the 2-process DDP test: ``torchrun --nproc_per_node=2 ddp_worker.py EXP_DIR``.

Trains a tiny tagger with the real Trainer on CPU (gloo) and saves each rank's final weights and
the items it saw to ``EXP_DIR/rank<r>.pt``, so the test can compare ranks.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from speechkit.data.collate import lengths_to_mask, pad_sequences
from speechkit.data.sampler import BucketBatchSampler
from speechkit.train import Trainer, TrainerConfig, build_loader, cleanup_distributed, init_distributed


class Tagger(nn.Module):
    """x FloatTensor[B, T, 4] -> per-frame class logits; CE loss over valid frames."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(0.1), nn.Linear(16, 4))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self.net(batch["x"])  # [B, T, 4]
        mask = lengths_to_mask(batch["lengths"], logits.shape[1])
        return {"loss": nn.functional.cross_entropy(logits[mask], batch["y"][mask])}


def main(exp_dir: Path) -> None:
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    generator = torch.Generator().manual_seed(0)
    lengths = [int(n) for n in torch.randint(3, 12, (48,), generator=generator)]
    xs = [torch.randn(n, 4, generator=generator) for n in lengths]
    dataset = [(x, x.argmax(-1), index) for index, x in enumerate(xs)]
    seen: list[int] = []

    def collate(items):
        seen.extend(item[2] for item in items)
        x, lens = pad_sequences([item[0].T for item in items])
        y, _ = pad_sequences([item[1] for item in items])
        return {"x": x.transpose(1, 2), "y": y, "lengths": lens}

    sampler = BucketBatchSampler(lengths, max_frames=40, num_buckets=3, seed=0)
    torch.manual_seed(1000 + info.rank)  # different inits: DDP must broadcast rank 0's weights
    model = Tagger()
    config = TrainerConfig(max_steps=12, lr=3e-2, warmup_steps=2, log_every=2, checkpoint_every=6,
                           grad_accum=2, progress=False, device="cpu")
    result = Trainer(model, build_loader(dataset, sampler, collate), exp_dir, config).fit()
    epoch0 = [index for batch in sampler.rank_batches(0) for index in batch]
    torch.save({"model": model.state_dict(), "seen": seen, "epoch0": epoch0, "step": result.step,
                "world_size": info.world_size}, exp_dir / f"rank{info.rank}.pt")
    cleanup_distributed()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
