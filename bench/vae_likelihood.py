"""The binarised-MNIST test -log p(x) of a `vae_mnist.py --binarize` checkpoint with k = 5,000 importance samples, the
VAE papers' protocol (Burda et al. 2016), within a CPU's reach.

k = 5,000 for each of the 10,000 test images is 50 million decodes: 33 minutes on 2 CPU cores for vae_mnist.py's VAE
(BENCHMARKS.md). This takes every test image's bound with --small-k samples (cheap) and, on --images of them drawn at
random, also the bound with --iw-samples. The mean gap between the two bounds on that subset, added to the small-k
mean over all 10,000 images, is an unbiased estimate of the k = --iw-samples mean over all 10,000 (a difference
estimator): the gap varies far less from image to image than the bound does, so a few hundred images pin it down (200:
a minute, within 0.1 nats). Its standard error is printed beside it. --images 10000 computes the papers' number exactly.

    python vae_mnist.py --data-dir ../shared/data --binarize --out-dir outputs/vae_binarized
    python bench/vae_likelihood.py --data-dir ../shared/data --checkpoint outputs/vae_binarized/checkpoint.pt
"""
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import vae_mnist  # noqa: E402
from common import cli, data, devices, files, seeds, vae  # noqa: E402

SETTINGS = {
    **{name: cli.BASE_SETTINGS[name] for name in ("data_dir", "device", "seed")},
    "checkpoint": ("outputs/vae_binarized/checkpoint.pt", "a vae_mnist.py --binarize checkpoint"),
    "iw_samples": (5000, "importance samples per image of the reported bound (Burda et al.: 5000)", "[1, inf)"),
    "small_k": (64, "importance samples per image of the cheap bound taken on every test image", "[1, inf)"),
    "images": (200, "test images, drawn at random, that also get the --iw-samples bound (10000: all)", "[2, 10000]"),
}


def difference_estimate(model, images, small_k, large_k, subset_size, generator):
    """(estimate, standard error, small-k mean, mean gap): the mean over ``images`` (floats in [0, 1]) of the
    ``large_k`` bound on -log p(x), from the ``small_k`` bound on all of them plus the mean gap between the two bounds
    on ``subset_size`` of them drawn at random. Without replacement from a finite set: the standard error carries the
    finite-population correction, 0 when the subset is the whole set."""
    cheap = vae.importance_weighted_nll_per_image(model, images, small_k)
    subset = torch.randperm(len(images), generator=generator)[:subset_size].to(images.device)
    gaps = vae.importance_weighted_nll_per_image(model, images[subset], large_k) - cheap[subset]
    correction = 1 - subset_size / len(images)
    error = gaps.std().item() * math.sqrt(correction / subset_size)
    return cheap.mean().item() + gaps.mean().item(), error, cheap.mean().item(), gaps.mean().item()


def main(argv=None):
    cfg = cli.parse(SETTINGS, __doc__, argv)
    device = devices.pick_device(cfg.device)
    model, checkpoint = vae.load_vae(cfg.checkpoint, device, flag="--checkpoint")
    if not checkpoint["settings"].get("binarize"):
        raise cli.UserError(f"{cfg.checkpoint} was trained on grey levels: pass a vae_mnist.py --binarize checkpoint")
    test_images, _ = data.load_mnist(cfg.data_dir, train=False, device=device)
    # The test images binarised exactly as vae_mnist.py --binarize does (seed 0), so the numbers compare with its own.
    binary = data.to_unit_range(vae_mnist.binarize(test_images, torch.Generator(device=device).manual_seed(0)))
    seeds.seed_everything(cfg.seed)
    estimate, error, cheap, gap = difference_estimate(model, binary, cfg.small_k, cfg.iw_samples, cfg.images,
                                                      torch.Generator().manual_seed(cfg.seed))
    print(f"test -log p(x), k = {cfg.iw_samples}: {estimate:.2f} +- {error:.2f} nats (k = {cfg.small_k} on all "
          f"{len(binary)} images: {cheap:.2f}; mean gap on {cfg.images} images: {gap:+.2f})")
    result = {"iw_nll": estimate, "standard_error": error, "iw_samples": cfg.iw_samples, "small_k": cfg.small_k,
              "small_k_nll": cheap, "gap": gap, "subset_images": cfg.images, "test_images": len(binary),
              "epochs": len(checkpoint["history"]["test_loss"]), "test_loss": checkpoint["history"]["test_loss"][-1]}
    files.write_json(Path(cfg.checkpoint).parent / "likelihood.json", result)
    return result


if __name__ == "__main__":
    cli.run(main)
