"""The fraud network: embeddings for categorical fields, an MLP over everything.

Plain torch (no Lightning) so it scripts to TorchScript and runs in the serving environment.
"""

from __future__ import annotations

import torch
from torch import nn


def embedding_dim(cardinality: int) -> int:
    return int(min(16, max(2, round(1.6 * cardinality**0.56))))


class FraudNet(nn.Module):
    def __init__(
        self, cardinalities: list[int], n_numeric: int, hidden: tuple[int, ...] = (64, 32), dropout: float = 0.1
    ):
        super().__init__()
        self.embeddings = nn.ModuleList([nn.Embedding(c, embedding_dim(c)) for c in cardinalities])
        width = sum(embedding_dim(c) for c in cardinalities) + n_numeric
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def logits(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        parts = [num]
        for j, emb in enumerate(self.embeddings):
            parts.append(emb(cat[:, j]))
        return self.mlp(torch.cat(parts, dim=1)).squeeze(1)

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(cat, num))
