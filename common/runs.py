"""What every run shares: the device, seeds, the output folder, atomic files, checkpoints and the progress bar.

Every file a run writes goes to a temporary name first and is renamed into place, so an interrupted run never
leaves a half-written checkpoint, figure or metrics file behind.
"""
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common.cli import UserError

DEVICES = ("auto", "cpu", "cuda", "mps")


def pick_device(name="auto"):
    """``auto`` -> cuda, then mps, then cpu, whichever is present first; a named device must be present."""
    if name not in DEVICES:
        raise UserError(f"--device must be one of {', '.join(DEVICES)}, got {name!r}")
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if cuda else "mps" if mps else "cpu"
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise UserError(f"--device {name} was asked for but this machine has none; use --device cpu or auto")
    if name == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls and convolutions: ~2x faster, ample for these models
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    return torch.device(name)


def seed_everything(seed):
    """Seed torch (CPU and GPU) and numpy; returns a CPU generator for data order."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


def seed_epoch(seed, epoch):
    """Reseed at the start of an epoch, so a resumed run draws exactly what an uninterrupted one would."""
    return seed_everything(seed * 100_003 + epoch)


def output_folder(script_file, out_dir=None):
    """``--out-dir`` or ``outputs/<script name>``, created if needed."""
    folder = Path(out_dir) if out_dir else Path("outputs") / Path(script_file).stem
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def atomic_write(path, write):
    """Call ``write(temporary_path)``, then rename the result onto ``path`` (atomic on one filesystem)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(handle)
    try:
        write(temporary)
        umask = os.umask(0)  # mkstemp made the file private; give it the permissions a plain open() would
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_json(path, data):
    def write(temporary):
        with open(temporary, "w") as file:
            json.dump(data, file, indent=2, default=str)
            file.write("\n")
    atomic_write(path, write)


def write_samples(path, images):
    """Generated images as ``samples.npz`` with one key, ``images`` (uint8, N x C x H x W)."""
    atomic_write(path, lambda temporary: np.savez_compressed(temporary, images=np.asarray(images, dtype=np.uint8)))


def save_checkpoint(path, **state):
    """One file a run can resume from: weights, the model's config, optimizer state, epoch, history."""
    atomic_write(path, lambda temporary: torch.save(state, temporary))


def load_checkpoint(path, device="cpu"):
    """Load a checkpoint written by ``save_checkpoint``; a missing or damaged file is a ``UserError``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}: train first (drop --epochs 0 / --resume) or pass its path")
    try:
        # weights_only: a checkpoint is data (tensors, numbers, strings, dicts), never code to execute.
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as error:
        raise UserError(f"checkpoint {path} is corrupt or truncated ({error.__class__.__name__}); "
                        f"delete it and train again") from None


def progress(batches, epoch, epochs):
    """A tqdm bar over one epoch's batches (hidden when stderr is not a terminal, as in CI logs)."""
    return tqdm(batches, desc=f"epoch {epoch}/{epochs}", leave=False, disable=None, dynamic_ncols=True)


class Timer:
    """Wall-clock seconds, waiting for queued GPU work first so the numbers are honest."""

    def __init__(self, device):
        self.device = device
        self.start = self.now()

    def now(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def elapsed(self):
        return self.now() - self.start
