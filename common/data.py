"""Datasets as uint8 tensors on the run's device, and batches by slicing a random permutation.

The airbench recipe without its CUDA-only parts: decode a dataset once, keep it on the device as uint8 (MNIST's 60k
training images are 47 MB), draw each batch by indexing with a slice of a random permutation and scale it to floats
on the device. There is no DataLoader and no per-image PIL transform in any training loop.
"""
import os
from pathlib import Path

import torch
from torchvision import datasets

from common.cli import UserError

DATA_ENV = "GENMODELS_DATA"  # environment variable naming the data folder, like --data-dir
DEFAULT_DATA_DIR = Path("data")  # torchvision downloads here when neither --data-dir nor $GENMODELS_DATA is set
MNIST_LIKE = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}


def data_folder(data_dir=None):
    """The folder to read from, and whether downloading into it is allowed.

    An explicit folder (``--data-dir`` or ``$GENMODELS_DATA``) is the user's own copy and is never downloaded into;
    only the default ``./data`` is, so nothing ever reaches for the network behind the user's back.
    """
    if data_dir:
        return Path(data_dir), False
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]), False
    return DEFAULT_DATA_DIR, True


def load_mnist(data_dir=None, train=True, device="cpu", name="mnist", limit=0):
    """MNIST or Fashion-MNIST as (images, labels): uint8 N x 1 x 28 x 28 and int64 N, both on ``device``."""
    folder, may_download = data_folder(data_dir)
    dataset_class = MNIST_LIKE[name]
    raw = folder / dataset_class.__name__ / "raw"
    try:
        dataset = dataset_class(folder, train=train, download=may_download)
    except Exception as error:  # torchvision raises RuntimeError for missing files, URLError and others when offline
        hint = "it could not be downloaded" if may_download else "downloads go only to the default ./data"
        raise UserError(f"{dataset_class.__name__} not found in {raw} ({hint}: {error.__class__.__name__}); "
                        f"pass --data-dir DIR or set {DATA_ENV}=DIR, where DIR holds "
                        f"{dataset_class.__name__}/raw/*-ubyte") from None
    images, labels = dataset.data, dataset.targets
    if limit:
        images, labels = images[:limit], labels[:limit]
    return images.unsqueeze(1).to(device), labels.to(device)


def shuffled_batches(num_examples, batch_size, generator, device="cpu"):
    """Index tensors that together visit every example exactly once, in an order drawn from ``generator``."""
    order = torch.randperm(num_examples, generator=generator).to(device)
    return order.split(batch_size)


def to_unit_range(images):
    """uint8 pixels -> floats in [0, 1] (the VAE's Bernoulli means)."""
    return images.float().div_(255)


def to_signed_range(images):
    """uint8 pixels -> floats in [-1, 1] (a GAN generator's Tanh range)."""
    return images.float().div_(127.5).sub_(1)


def to_uint8(images, low=0.0, high=1.0):
    """Floats in [low, high] -> uint8 pixels on the CPU, for samples.npz and image files."""
    scaled = (images.detach().float() - low) / (high - low)
    return scaled.clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
