"""Shared fixtures: tiny data and configs that train in a fraction of a second."""
from __future__ import annotations

import pytest
import torch

from landscape_utils.data import Dataset


def make_blobs(n_train: int = 256, n_test: int = 128, dim: int = 10, k: int = 3, seed: int = 0) -> Dataset:
    """Gaussian blobs as a Dataset: a task an MLP fits in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(k, dim, generator=g)

    def draw(n):
        y = torch.randint(0, k, (n,), generator=g)
        return centers[y] + torch.randn(n, dim, generator=g), y

    x_tr, y_tr = draw(n_train)
    x_te, y_te = draw(n_test)
    return Dataset(x_tr, y_tr, x_te, y_te, y_tr.clone(), k, "blobs", 0.0)


@pytest.fixture
def blobs() -> Dataset:
    return make_blobs()
