"""The small task the examples share: scikit-learn's digits, a fixed train / test split, a short Adam run."""

import torch
from sklearn.datasets import load_digits
from torch import nn


def digits(shape: str = "flat"):
    """``(x, y, train_idx, test_idx)``: pixels in [0, 1] as (N, 64) ``"flat"``, (N, 8, 8) ``"rows"`` or
    (N, 1, 8, 8) ``"image"``; the first 1,400 of a seeded permutation train, the rest test."""
    torch.set_num_threads(1)  # tiny models: one thread is fastest (and kind to a shared CPU)
    torch.manual_seed(0)
    d = load_digits()
    x = torch.tensor(d.data if shape == "flat" else d.images, dtype=torch.float32) / 16
    x = x[:, None] if shape == "image" else x
    perm = torch.randperm(len(x))
    return x, torch.tensor(d.target), perm[:1400], perm[1400:]


def fit(model: nn.Module, x, y, train_idx, steps: int) -> nn.Module:
    """``steps`` Adam steps (lr 3e-3, batch 64) of cross-entropy on the training images; the model in eval mode."""
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(steps):
        idx = train_idx[torch.randint(0, len(train_idx), (64,))]
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def accuracy(model: nn.Module, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()
