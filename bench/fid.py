"""The standard FID and KID (common/fid.py) between two image sets: a samples.npz that a script wrote with
--num-samples, or one of the named real sets. The reference set's features are cached in outputs/fid_cache/
(docs/fid.md).

    python bench/fid.py --images outputs/dcgan_cifar10/samples.npz --reference cifar10-train
    python bench/fid.py --images cifar10-test --reference cifar10-train --device cuda   # the real data's own FID
"""
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import cli, data, devices, fid  # noqa: E402
from common.cli import UserError  # noqa: E402

NAMED_SETS = ("cifar10-train", "cifar10-test", "mnist-train", "mnist-test")

SETTINGS = {
    **{name: cli.BASE_SETTINGS[name] for name in ("data_dir", "device")},
    "images": (None, f"the images to judge: a samples.npz (key 'images', uint8 N x C x H x W) or one of "
                     f"{', '.join(NAMED_SETS)}"),
    "reference": ("cifar10-train", "the real images to compare with, spelled the same way; their statistics are "
                                   "cached in outputs/fid_cache/"),
    "limit": (0, "the first N images of each set only (0: all); FID grows as the sets shrink"),
    "inception_weights": fid.SETTINGS["inception_weights"],
    "batch_size": (fid.BATCH_SIZE, "images per pass through Inception-v3", "[1, inf)"),
}


def load_image_set(name, data_dir, limit):
    """uint8 N x C x H x W images (CPU) of a named set or a samples.npz."""
    if name in NAMED_SETS:
        dataset, split = name.rsplit("-", 1)
        load = data.load_cifar10 if dataset == "cifar10" else data.load_mnist
        images, _ = load(data_dir, train=split == "train", limit=limit)
        return images
    path = Path(name)
    if path.suffix != ".npz" or not path.is_file():
        raise UserError(f"{name} is neither a samples.npz file nor one of {', '.join(NAMED_SETS)}")
    try:
        with np.load(path, allow_pickle=False) as samples:  # a pickled array would run code: refused
            if "images" not in samples:
                raise UserError(f"{path} has no 'images' array (keys: {', '.join(samples)}): pass a samples.npz "
                                f"written by one of the scripts")
            images = torch.from_numpy(samples["images"])
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # an .npz is a zip archive
        raise UserError(f"{path} is not a readable samples.npz ({error.__class__.__name__}): pass a samples.npz "
                        f"written by one of the scripts") from None
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise UserError(f"{path}: 'images' must be uint8 N x C x H x W with C = 1 or 3, got {images.dtype} "
                        f"{tuple(images.shape)}")
    return images[:limit] if limit else images


def main(argv=None):
    cfg = cli.parse(SETTINGS, __doc__, argv)
    if cfg.images is None:
        raise UserError("pass --images: a samples.npz or a named set (see --help)")
    device = devices.pick_device(cfg.device)
    network = fid.load_network(cfg.inception_weights, device)
    images = load_image_set(cfg.images, cfg.data_dir, cfg.limit)
    reference = load_image_set(cfg.reference, cfg.data_dir, cfg.limit)
    for name, count in ((cfg.images, len(images)), (cfg.reference, len(reference))):
        if count < 2:
            raise UserError(f"{name} holds {count} image: a covariance needs at least 2")
    real = fid.reference_features(reference, network, device, cfg.batch_size)
    scores = fid.fid_and_kid(real, fid.inception_features(images, network, device, cfg.batch_size))
    print(f"FID {scores['fid_inception']:.3f}, KID {scores['kid_inception']:.5f} +- "
          f"{scores['kid_inception_standard_error']:.5f} (standard error): {len(images)} images of {cfg.images} "
          f"against {len(reference)} of {cfg.reference}")
    return scores


if __name__ == "__main__":
    cli.run(main)
