"""The compute device a run asks for: --device auto, cpu, cuda or mps."""
import torch

from common import distributed
from common.cli import UserError


def pick_device(name):
    """``auto`` -> cuda, then mps, then cpu, whichever is present first; a named device must be present. Under
    torchrun the process joins the others here and gets a GPU of its own (``distributed.setup``)."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if cuda else "mps" if mps else "cpu"
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise UserError(f"--device {name} was asked for but this machine has none; use --device cpu or auto")
    if name == "cuda":
        # TF32 matmuls and convolutions: faster on tensor cores, ample for these models.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    return distributed.setup(torch.device(name))
