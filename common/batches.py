"""An epoch's batches of a dataset held as one tensor on its device, in an order drawn from the seed and the epoch."""
import torch

from common import distributed, seeds


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
    reseeds torch for the epoch first (``seeds.seed_epoch``), so the epoch's noise is the seed's and epoch's too."""
    return distributed.shard(shuffled_batches(num_examples, batch_size, seeds.seed_epoch(seed, epoch), device))
