"""Seeds: two runs with one --seed draw the same numbers, and a resumed run what an uninterrupted one would."""
import numpy as np
import torch

from common import distributed


def seed_everything(seed):
    """Seed torch (CPU and GPU) and numpy; returns a CPU generator for data order."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


def seed_epoch(seed, epoch):
    """Reseed at the start of an epoch, so a resumed run draws exactly what an uninterrupted one would; returns the
    generator of the epoch's data order. Under torchrun every process draws the same order and its own noise (z, eps,
    flips) from a seed of its rank; rank 0 draws what a single process does."""
    base = seed * 100_003 + epoch
    seed_everything(base + distributed.rank() * 1_000_003)
    return torch.Generator().manual_seed(base)
