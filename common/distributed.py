"""More than one GPU or machine: the plumbing of DistributedDataParallel under torchrun, in one place.

``torchrun --nproc_per_node N script.py`` starts N copies of a script and tells each, in environment variables, its
RANK (0 to WORLD_SIZE - 1 over all machines), its LOCAL_RANK (on its own machine) and where to meet the others.
Each process drives one device, holds the whole dataset, and trains on its own slice of every global batch; the
gradients are averaged across processes before each optimizer step, so every process takes the same step and the
weights stay identical. Rank 0 is the main process: the only one that prints, draws progress bars and writes files
(common/files.py skips every write elsewhere), and the one that measures quality and draws the figures.

Without torchrun there is one process, rank 0 of 1, and every function here is a no-op or the identity: a plain run
computes exactly what it did before.
"""
import atexit
import datetime
import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from common.cli import UserError

# How long a process waits for the others at a collective operation. Rank 0 alone trains the cached classifier or
# measures a GAN's quality after an epoch while the others wait at their next step; torchrun stops every process
# when one fails, so a long wait never hides an error.
TIMEOUT = datetime.timedelta(hours=2)


def launched_by_torchrun():
    return int(os.environ.get("WORLD_SIZE", 1)) > 1


def launcher():
    """The words that start this process's command line: python, or under torchrun the torchrun options that start
    as many processes again (the number of machines too; each machine's rank and the rendezvous point are the
    cluster's, which a command on one machine cannot know)."""
    if not launched_by_torchrun():
        return ["python"]
    per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    machines = int(os.environ["WORLD_SIZE"]) // per_machine
    where = ["--standalone"] if machines == 1 else ["--nnodes", str(machines)]
    return ["torchrun", *where, "--nproc_per_node", str(per_machine)]


def world_size():
    return dist.get_world_size() if dist.is_initialized() else 1


def rank():
    return dist.get_rank() if dist.is_initialized() else 0


def is_main():
    return rank() == 0


def setup(device):
    """Join the processes torchrun started (nccl between GPUs, gloo between CPUs); returns this process's device.

    On CUDA each process takes the GPU of its LOCAL_RANK. The processes other than rank 0 send what they print to
    os.devnull (errors on stderr still show, from every process).
    """
    if not launched_by_torchrun() or dist.is_initialized():
        return device
    if device.type == "mps":
        raise UserError("torchrun needs CUDA GPUs or CPUs: pass --device cuda or --device cpu")
    if device.type == "cuda":
        local_rank = int(os.environ["LOCAL_RANK"])
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"process {local_rank} of this machine has no GPU of its own ({torch.cuda.device_count()} "
                            f"here): pass --nproc_per_node {torch.cuda.device_count()} or fewer to torchrun")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    atexit.register(dist.destroy_process_group)
    if not is_main():
        sys.stdout = open(os.devnull, "w")
    return device


def check_batch_size(batch_size, per_process=1):
    """Refuse a --batch-size that does not give every process the same share, of at least ``per_process`` images."""
    if batch_size % world_size():
        raise UserError(f"--batch-size {batch_size} does not split evenly over {world_size()} processes: pass a "
                        f"multiple of {world_size()} (--batch-size is the global batch, over all processes)")
    if batch_size < per_process * world_size():
        raise UserError(f"--batch-size {batch_size} gives each of {world_size()} processes fewer than {per_process} "
                        f"images a step: pass {per_process * world_size()} or more")


def shard(batches):
    """This process's part of each global batch of indices (every process draws the same batches).

    Equal parts, so that averaging the processes' gradients averages over the global batch: the last batch of an
    epoch loses its last few images (fewer than the process count; another permutation next epoch) where it does
    not split evenly, and disappears if smaller than the process count.
    """
    processes = world_size()
    if processes == 1:
        return batches
    parts = []
    for batch in batches:
        batch = batch[:len(batch) - len(batch) % processes]
        if len(batch):
            parts.append(batch.view(processes, -1)[rank()])
    return parts


def wrap(model):
    """``model`` in DistributedDataParallel, which averages its gradients during the backward pass; the model itself
    with one process. Train through the wrapper; evaluate, sample and save the model itself."""
    if world_size() == 1:
        return model
    device = next(model.parameters()).device
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def average_gradients(model):
    """Replace each gradient of ``model`` by its mean over the processes: one all-reduce of all of them at once.

    Called between backward() and the optimizer step, this is what DDP does during backward(). The GANs use it
    rather than DDP: D is called three times a step (on real images, on detached fakes, then frozen for G's loss),
    and DDP's reducer expects one forward per backward over parameters that all get a gradient; it would need
    find_unused_parameters for the frozen call and would broadcast batch norm's buffers at every call. Averaging
    after backward() is right whatever the calls were, and sends what DDP would, only not overlapped with the
    backward pass (little time for networks this small).
    """
    if world_size() == 1:
        return
    gradients = [parameter.grad for parameter in model.parameters() if parameter.grad is not None]
    flat = torch.cat([gradient.reshape(-1) for gradient in gradients])
    dist.all_reduce(flat)
    flat /= world_size()
    for gradient, mean in zip(gradients, flat.split([gradient.numel() for gradient in gradients])):
        gradient.copy_(mean.view_as(gradient))


def broadcast_parameters(*models):
    """Give every process rank 0's weights and buffers, the start that keeps their weights identical."""
    if world_size() == 1:
        return
    for model in models:
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, src=0)


def average_buffers(*models):
    """Batch norm's running statistics, which each process gathered on its own images, averaged over the processes."""
    if world_size() == 1:
        return
    for model in models:
        for buffer in model.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer /= world_size()


def total(tensor):
    """The sum of ``tensor`` over the processes."""
    if world_size() == 1:
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor)
    return tensor


def mean(tensor):
    """The mean of ``tensor`` over the processes (logged losses)."""
    return total(tensor) / world_size()


def from_main(function, *args):
    """``function(*args)`` run by rank 0 alone and its result handed to every process: for what only rank 0 can
    read, such as a checkpoint on its machine's disk (keep tensors on the CPU). A ``UserError`` it raises is raised
    in every process."""
    if world_size() == 1:
        return function(*args)
    box = [None]
    if is_main():
        try:
            box = [(function(*args), None)]
        except UserError as error:
            box = [(None, error)]
    dist.broadcast_object_list(box, src=0)
    result, error = box[0]
    if error is not None:
        raise error
    return result
