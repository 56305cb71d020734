"""More than one GPU or machine: the plumbing of DistributedDataParallel under torchrun, in one place.

``torchrun --nproc_per_node N script.py`` starts N copies of a script, each told its RANK, LOCAL_RANK (on its own
machine) and WORLD_SIZE in environment variables. Each process drives one device, holds the whole dataset and trains
on its slice of every global batch; averaged gradients keep the weights identical. Rank 0 alone prints, writes files
and measures quality. Without torchrun there is one process, rank 0 of 1, and every function here is a no-op.
"""
import atexit
import datetime
import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from common.cli import UserError

# How long a process waits for the others at a collective operation: rank 0 alone trains the cached classifier or
# measures quality while they wait. torchrun stops every process when one fails, so a long wait hides no error.
TIMEOUT = datetime.timedelta(hours=2)


def launched_by_torchrun():
    return int(os.environ.get("WORLD_SIZE", 1)) > 1


def launcher():
    """The words that start this process's command line: python, or the torchrun options that start as many
    processes again (not each machine's rank or the rendezvous point, which one machine cannot know)."""
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
    """Join the processes torchrun started (nccl between GPUs, gloo between CPUs); returns this process's device, on
    CUDA the GPU of its LOCAL_RANK. Only rank 0 prints (errors on stderr still show, from every process)."""
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
    """This process's part of each global batch of indices (every process draws the same batches). Equal parts, so
    that averaging the gradients averages over the global batch: a last batch that does not split evenly loses its
    last few images (fewer than the process count; another permutation next epoch)."""
    processes = world_size()
    evened = [batch[:len(batch) - len(batch) % processes] for batch in batches]
    return [batch.view(processes, -1)[rank()] for batch in evened if len(batch)]


def wrap(model):
    """``model`` in DistributedDataParallel, which averages its gradients during the backward pass; the model itself
    with one process. Train through the wrapper; evaluate, sample and save the model itself."""
    if world_size() == 1:
        return model
    device = next(model.parameters()).device
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def average_gradients(model):
    """Replace each gradient of ``model`` by its mean over the processes (one all-reduce), between backward() and
    the optimizer step. The GANs use it rather than DDP, whose reducer expects one forward per backward: D is called
    three times a step (real images, detached fakes, then frozen for G's loss). It sends what DDP would, only not
    overlapped with the backward pass (little time for networks this small)."""
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


def from_main(function, *args):
    """``function(*args)`` run by rank 0 alone (keep tensors on the CPU), its result or ``UserError`` handed to every
    process: for what only rank 0 can read, such as a checkpoint on its machine's disk."""
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
