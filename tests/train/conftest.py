"""A tiny sequence-labelling task for trainer tests: variable-length items, a 2-layer tagger."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from speechkit.data.collate import lengths_to_mask, pad_sequences


class TinyTagger(nn.Module):
    """Per-frame classifier: x FloatTensor[B, T, 4] -> logits [B, T, 4]; CE over valid frames."""

    def __init__(self, dropout: float = 0.1, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, 4))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self.net(batch["x"])  # [B, T, 4]
        mask = lengths_to_mask(batch["lengths"], logits.shape[1])  # [B, T]
        loss = nn.functional.cross_entropy(logits[mask], batch["y"][mask])
        accuracy = (logits[mask].argmax(-1) == batch["y"][mask]).float().mean()
        return {"loss": loss, "accuracy": accuracy, "logits": logits, "weight": mask.sum()}


class TinyDataset(torch.utils.data.Dataset):
    """``count`` items; item i has ``lengths[i]`` frames; the label is a function of x."""

    def __init__(self, lengths: list[int], seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.lengths = lengths
        self.items = []
        for length in lengths:
            x = torch.randn(length, 4, generator=generator)
            self.items.append((x, x.argmax(-1)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.items[index]


def collate(items: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad a list of (x [T, 4], y [T]) into a batch dict."""
    x, lengths = pad_sequences([item[0].T for item in items])  # [B, 4, T]
    y, _ = pad_sequences([item[1] for item in items])
    return {"x": x.transpose(1, 2), "y": y, "lengths": lengths}


class TinyTask:
    """What the trainer tests need: the model and dataset classes and the collate function."""

    Tagger = TinyTagger
    Dataset = TinyDataset
    collate = staticmethod(collate)


@pytest.fixture
def tiny_task() -> type[TinyTask]:
    """The tiny tagging task (model, dataset, collate)."""
    return TinyTask
