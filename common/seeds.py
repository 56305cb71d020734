"""Seeds, and each epoch's batches of a dataset held as one tensor: two runs with one --seed draw the same numbers and
batches, and a resumed run what an uninterrupted one would."""
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


def shuffled_batches(num_examples, batch_size, generator, device="cpu"):
    """Index tensors that together visit every example exactly once, in an order drawn from ``generator``. A last
    batch too small to give every process two examples joins the one before: batch norm cannot normalise one."""
    order = torch.randperm(num_examples, generator=generator).to(device)
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) < 2 * distributed.world_size():
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def epoch_batches(num_examples, batch_size, seed, epoch, device="cpu"):
    """``shuffled_batches`` for ``epoch`` of a run seeded ``seed``, this process's share of each under torchrun;
    reseeds torch for the epoch first (``seed_epoch``), so the epoch's noise is the seed's and epoch's too."""
    return distributed.shard(shuffled_batches(num_examples, batch_size, seed_epoch(seed, epoch), device))
