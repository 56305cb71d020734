"""The standard Frechet Inception Distance (Heusel et al. 2017), optional, beside the project's own classifier distance.

FID is the Frechet distance of common/metrics.py between Gaussians fitted to Inception-v3's 2048 pool features of
real and generated images. Its value depends on the implementation (the Inception weights, the resize to 299 x 299,
the precision) and on the protocol (how many images, against which real set), so published FIDs compare only with
FIDs computed the same way. This module uses one well-kept implementation, torchmetrics' FrechetInceptionDistance,
whose Inception is torch-fidelity's port of the original TensorFlow weights (those of Heusel et al.'s TTUR code), and
the usual protocol for CIFAR-10: 50,000 generated images against the 50,000 training images (--fid-samples).

Neither package is a requirement of the project, and the weights download on first use: the classifier-based
distance, which works offline, stays every script's default.
"""
import torch

from common.cli import UserError

INSTALL = "pip install torchmetrics torch-fidelity; the Inception weights download on first use (needs internet)"
IMPLEMENTATION = "torchmetrics FrechetInceptionDistance, torch-fidelity's Inception-v3 weights, 2048 pool features"

# The flags of every script that offers the standard FID.
SETTINGS = {
    "fid": ("none", "inception: also the standard FID (torchmetrics and torch-fidelity, not installed by "
                    "requirements.txt) of --fid-samples generated images against the training images",
            ("none", "inception")),
    "fid_samples": (50000, "generated images for --fid inception (CIFAR-10's protocol: 50,000 against the 50,000 "
                           "training images)", "[2, inf)"),
}


def load_metric(device="cpu", feature=None):
    """torchmetrics' FrechetInceptionDistance on ``device``, taking uint8 images.

    With Inception-v3's 2048 pool features (the standard FID) unless ``feature`` is given: a module from uint8
    N x 3 x H x W images to N x D features, with which tests stay offline. A missing package or missing weights is a
    one-line ``UserError`` saying what to install; call this before training, so that it stops nothing half done.
    """
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except ImportError:
        raise UserError(f"--fid inception needs torchmetrics, which is not installed: {INSTALL}") from None
    try:
        metric = FrechetInceptionDistance(feature=2048 if feature is None else feature, normalize=False)
    except ImportError:  # torchmetrics without torch-fidelity
        raise UserError(f"--fid inception needs torch-fidelity, which is not installed: {INSTALL}") from None
    except Exception as error:  # the weights' download: URLError offline, HTTPError, RuntimeError for a broken file
        raise UserError(f"--fid inception could not load the Inception weights ({error.__class__.__name__}): "
                        f"{INSTALL}") from None
    return metric.to(device)


@torch.no_grad()
def frechet_inception_distance(real, generated, metric, batch_size=250):
    """The FID between two sets of uint8 images (N x C x H x W, C = 3 or 1) in the features of ``load_metric``'s
    ``metric``. Greyscale images (MNIST) are repeated to the three channels Inception-v3 takes."""
    metric.reset()
    for images, is_real in ((real, True), (generated, False)):
        for batch in images.split(batch_size):
            metric.update(batch.to(metric.device).expand(-1, 3, -1, -1), real=is_real)
    return float(metric.compute())
