"""Checkpoints: one dict per file, its ``kind`` and what KINDS lists for it, so that it rebuilds its own model and a
run can resume from it. Any other file is refused in one line, never a KeyError deep in a script."""
from pathlib import Path

import torch

from common import cli, files, run_folder
from common.cli import UserError

# Each kind: what it is, in the words of an error message, and the keys every file of it holds.
KINDS = {
    "vae": ("a VAE (written by vae_mnist.py)",
            ("model", "model_config", "optimizer", "epoch", "history", "train_examples", "settings")),
    "gan": ("a GAN (written by gan_mnist.py or dcgan_cifar10.py)",
            ("architecture", "generator", "generator_config", "generator_ema", "discriminator",
             "discriminator_config", "optimizer_g", "optimizer_d", "epoch", "history", "settings")),
    "classifier": ("a cached classifier (outputs/classifiers/)", ("model", "model_config", "identity")),
}


def save_checkpoint(path, kind, **state):
    """Write ``state`` (the keys KINDS lists for ``kind``) as one checkpoint at ``path``, and update the run's record
    and what Ctrl-C says right as the file lands, so that a Ctrl-C just after it names the epoch the file holds."""
    message = run_folder.interrupt_message_after(Path(path), state)
    files.atomic_write(path, lambda temporary: torch.save({"kind": kind, **state}, temporary))
    if message:
        cli.on_interrupt(*message)
    run_folder.record_epoch(path, state)


def load_checkpoint(path, device="cpu", *, kind, flag=None):
    """Load a checkpoint of ``kind`` written by ``save_checkpoint``; a missing, damaged or other file is a
    ``UserError`` naming ``flag``, the option the path came from."""
    path = Path(path)
    named = f"{flag} {path}" if flag else str(path)
    if path.is_dir():
        raise UserError(f"{named} is a folder: pass the path of a checkpoint file")
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}: train first (drop --epochs 0 / --resume) or pass its path")
    try:
        # weights_only: a checkpoint is data (tensors, numbers, strings, dicts), never code to execute.
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:
        raise UserError(f"checkpoint {path} is corrupt or truncated ({error.__class__.__name__}); "
                        f"delete it and train again") from None
    found = checkpoint.get("kind") if isinstance(checkpoint, dict) else None
    found = found if isinstance(found, str) else None  # an edited file's kind may be anything, a list even
    if found != kind:
        holds = KINDS[found][0] if found in KINDS else "no checkpoint of this project"
        raise UserError(f"{named} holds {holds}, not {KINDS[kind][0]}: pass {flag + ' ' if flag else ''}the path of "
                        f"{KINDS[kind][0]}")
    missing = [key for key in KINDS[kind][1] if key not in checkpoint]
    if missing:
        raise UserError(f"{named} is an incomplete or older checkpoint ({', '.join(missing)} missing): delete it and "
                        f"train again with the script that writes it")
    return checkpoint


def check_resumable(checkpoint, cfg, names, path):
    """Refuse to continue a run under other values of the settings ``names`` (those that shape the model, the data
    order or the optimizer's schedule) than it was trained with: the result would be neither of the two runs."""
    for name in names:
        if name in checkpoint["settings"] and checkpoint["settings"][name] != getattr(cfg, name):
            asked, saved = cli.as_flag(name, getattr(cfg, name)), cli.as_flag(name, checkpoint["settings"][name])
            raise UserError(f"{asked} does not match the run in {path}, trained with {saved}: pass {saved} to "
                            f"continue it, or another --out-dir to start a new run beside it")


# A loss past this size means training has left the rails: no run of these models comes near it while it learns
# (binary cross-entropy of 1e6 nats means a call made with probability e^-1e6).
DIVERGED = 1e6


def stop_if_diverged(losses, epoch, checkpoint_path, advice):
    """Stop when a loss of the epoch just trained (``losses``: "the generator's loss" -> its values) is not finite or
    has passed DIVERGED; called before the epoch is saved, so that the checkpoint keeps the last good epoch."""
    for name, values in losses.items():
        values = torch.as_tensor(values, dtype=torch.float64).flatten()
        bad = ~torch.isfinite(values) | (values.abs() > DIVERGED)
        if bad.any():
            kept = (f"{checkpoint_path} still holds epoch {epoch - 1}, which --resume continues from"
                    if epoch > 1 else "no checkpoint was written")
            raise UserError(f"training diverged in epoch {epoch}: {name} reached {values[bad][0].item():g}; "
                            f"stopped without saving it ({kept}); {advice}")
