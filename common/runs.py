"""What every run shares: the device, seeds, the output folder, atomic files, checkpoints and the progress bar.

Every file a run writes goes to a temporary name first and is renamed into place, so an interrupted run never
leaves a half-written checkpoint, figure or metrics file behind. Under torchrun only the main process (rank 0)
writes: the others skip every write (common/distributed.py).
"""
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common import cli, distributed
from common.cli import UserError

DEVICES = ("auto", "cpu", "cuda", "mps")


def pick_device(name="auto"):
    """``auto`` -> cuda, then mps, then cpu, whichever is present first; a named device must be present. Under
    torchrun the process joins the others here and gets a GPU of its own (``distributed.setup``)."""
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
    return distributed.setup(torch.device(name))


def seed_everything(seed):
    """Seed torch (CPU and GPU) and numpy; returns a CPU generator for data order."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


def seed_epoch(seed, epoch):
    """Reseed at the start of an epoch, so a resumed run draws exactly what an uninterrupted one would; returns the
    generator of the epoch's data order.

    Under torchrun every process draws the same data order, and its own noise (z, eps, flips) from a seed of its
    rank, so a run is reproducible for a given seed and number of processes; rank 0 draws what a single process does.
    """
    base = seed * 100_003 + epoch
    seed_everything(base + distributed.rank() * 1_000_003)
    return torch.Generator().manual_seed(base)


def output_folder(script_file, out_dir=None):
    """``--out-dir`` or ``outputs/<script name>``, created if needed."""
    folder = Path(out_dir) if out_dir else Path("outputs") / Path(script_file).stem
    if distributed.is_main():
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def atomic_write(path, write):
    """Call ``write(temporary_path)``, then rename the result onto ``path`` (atomic on one filesystem). Nothing on a
    process other than the main one under torchrun: every process holds the same result, one writes it."""
    if not distributed.is_main():
        return
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


# What each kind of checkpoint holds, in the words of an error message.
CHECKPOINT_KINDS = {"vae": "a VAE (written by vae_mnist.py)",
                    "gan": "a GAN (written by gan_mnist.py or dcgan_cifar10.py)",
                    "classifier": "a cached classifier (outputs/classifiers/)"}


def save_checkpoint(path, kind, **state):
    """One file a run can resume from: its ``kind`` (a key of CHECKPOINT_KINDS), weights, the model's config,
    optimizer state, epoch, history, settings."""
    atomic_write(path, lambda temporary: torch.save({"kind": kind, **state}, temporary))


def checkpoint_kind(checkpoint):
    """The kind a loaded checkpoint says it is; for files written before kinds were recorded, what its keys say."""
    if not isinstance(checkpoint, dict):
        return None
    if "kind" in checkpoint:
        return checkpoint["kind"]
    if "architecture" in checkpoint and "generator" in checkpoint:
        return "gan"
    if "test_accuracy" in checkpoint:
        return "classifier"
    if "model_config" in checkpoint and "optimizer" in checkpoint:
        return "vae"
    return None


def load_checkpoint(path, device="cpu", kind=None, flag=None):
    """Load a checkpoint written by ``save_checkpoint``: a missing or damaged file, or one of another ``kind`` than
    asked for, is a ``UserError`` (which names ``flag``, the option the path came from, where there is one)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}: train first (drop --epochs 0 / --resume) or pass its path")
    try:
        # weights_only: a checkpoint is data (tensors, numbers, strings, dicts), never code to execute.
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:
        raise UserError(f"checkpoint {path} is corrupt or truncated ({error.__class__.__name__}); "
                        f"delete it and train again") from None
    found = checkpoint_kind(checkpoint)
    if kind is not None and found != kind:
        holds = CHECKPOINT_KINDS.get(found, "no checkpoint of this project")
        raise UserError(f"{path} holds {holds}, not {CHECKPOINT_KINDS[kind]}: pass {flag + ' ' if flag else ''}the "
                        f"path of {CHECKPOINT_KINDS[kind]}")
    return checkpoint


def check_resumable(checkpoint, cfg, names, path):
    """Refuse to continue a run under other values of the settings ``names`` than it was trained with.

    These settings shape the model, the data order or the optimizer's schedule: a run continued under other values
    would be neither of the two runs. Files written before settings were recorded are checked by their model configs
    when loaded.
    """
    trained = checkpoint.get("settings") or {}
    for name in names:
        if name in trained and trained[name] != getattr(cfg, name):
            asked, saved = cli.as_flag(name, getattr(cfg, name)), cli.as_flag(name, trained[name])
            raise UserError(f"{asked} does not match the run in {path}, trained with {saved}: pass {saved} to "
                            f"continue it, or another --out-dir to start a new run beside it")


# A loss past this size means training has left the rails: no run of these models comes near it while it learns
# (binary cross-entropy of 1e6 nats means a call made with probability e^-1e6).
DIVERGED = 1e6


def stop_if_diverged(losses, epoch, checkpoint_path, advice):
    """Stop with a ``UserError`` when a loss of the epoch just trained is not finite or has passed DIVERGED.

    Called before the epoch is saved, so the checkpoint keeps the last good epoch for ``--resume``. ``losses`` maps
    a name ("the generator's loss") to that epoch's values.
    """
    for name, values in losses.items():
        values = torch.as_tensor(values, dtype=torch.float64).flatten()
        bad = ~torch.isfinite(values) | (values.abs() > DIVERGED)
        if bad.any():
            kept = (f"{checkpoint_path} still holds epoch {epoch - 1}, which --resume continues from"
                    if epoch > 1 else "no checkpoint was written")
            raise UserError(f"training diverged in epoch {epoch}: {name} reached {values[bad][0].item():g}; "
                            f"stopped without saving it ({kept}); {advice}")


def progress_bar(items, description):
    """A tqdm bar over ``items`` (hidden when stderr is not a terminal, as in CI logs, and on every process but the
    main one under torchrun)."""
    return tqdm(items, desc=description, leave=False, disable=None if distributed.is_main() else True,
                dynamic_ncols=True)


def progress(batches, epoch, epochs):
    """The bar over one epoch's batches."""
    return progress_bar(batches, f"epoch {epoch}/{epochs}")


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
