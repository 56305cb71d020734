"""Anomaly types for MNIST digits: one small function per corruption in the CORRUPTIONS table, each mapping float
images in [0, 1] (N x 1 x 28 x 28) and a seeded generator on their device to images in [0, 1]; and the groups
vae_anomaly_detection.py evaluates them in. After seven plainly visible types come MNIST-C's fifteen (Mu & Gilmer
2019), with the parameters of their corruptions.py at the severity it calls each with.
"""
import torch
import torch.nn.functional as F

from common.cli import UserError
from common.image_operations import (canny, centred_affine, gaussian_blur, glass_swaps, plasma_fractal, shifted,
                                     skimage_gaussian, soft_lines, warp, zigzag_vertices)


# ----- random draws from the seeded generator, on its device -----

def uniform(generator, *shape):
    return torch.rand(*shape, generator=generator, device=generator.device)


def integers(generator, low, high, *shape):
    """Uniform over low, ..., high - 1, as np.random.randint, as floats."""
    return torch.randint(low, high, shape, generator=generator, device=generator.device).float()


def random_sign(n, generator):
    return torch.where(uniform(generator, n) < 0.5, -1.0, 1.0)


# ----- the table: each corruption below registers itself, with its description for metrics.json -----

CORRUPTIONS = {}  # name -> the function (images, generator) -> images, in the order they are defined below


def corruption(description):
    def register(function):
        function.description = description
        CORRUPTIONS[function.__name__] = function
        return function
    return register


# ----- the seven types the detector was first built on -----

@corruption("additive N(0, 0.3^2) noise per pixel, clipped to [0, 1]")
def gaussian_noise(images, generator):
    return (images + 0.3 * torch.randn(images.shape, generator=generator, device=images.device)).clamp(0, 1)


@corruption("10% of pixels set to black or white at random")
def salt_and_pepper(images, generator, share=0.10):
    hit = uniform(generator, images.shape) < share
    return torch.where(hit, (uniform(generator, images.shape) < 0.5).float(), images)


@corruption("Gaussian blur with a standard deviation of 1.5 pixels")
def blur(images, generator):
    return gaussian_blur(images, 1.5)


@corruption("a 10 x 10 block painted mid-grey (0.5) at a random place")
def occlusion(images, generator, size=10):
    top, left = (uniform(generator, 2, len(images)) * (28 - size + 1)).long()
    position = torch.arange(28, device=images.device)
    inside_rows = (position >= top[:, None]) & (position < top[:, None] + size)      # n x 28
    inside_cols = (position >= left[:, None]) & (position < left[:, None] + size)
    block = (inside_rows[:, :, None] & inside_cols[:, None, :])[:, None]             # n x 1 x 28 x 28
    return images.masked_fill(block, 0.5)


@corruption("black and white swapped: 1 - x")
def inversion(images, generator):
    return 1 - images


@corruption("every fourth row (or column, at random) painted white")
def stripes(images, generator):
    n = len(images)
    phase = (uniform(generator, n) * 4).long()[:, None]
    lines = (torch.arange(28, device=images.device) - phase) % 4 == 0                # n x 28
    horizontal = (uniform(generator, n) < 0.5)[:, None, None]
    mask = torch.where(horizontal, lines[:, :, None].expand(n, 28, 28), lines[:, None, :].expand(n, 28, 28))
    return images.masked_fill(mask[:, None], 1.0)


@corruption("7 x 7 blocks averaged: 4 x 4 resolution shown at 28 x 28")
def pixelation(images, generator):
    return F.interpolate(F.avg_pool2d(images, 7), scale_factor=7, mode="nearest")


# ----- MNIST-C's fifteen, each at the severity its corruptions.py calls it with -----

@corruption("Poisson noise, severity 5: poisson(3 x) / 3, clipped, so the background stays black")
def shot_noise(images, generator):
    return (torch.poisson(images * 3, generator=generator) / 3).clamp(0, 1)  # a stroke's levels: 0, 1/3, 2/3, 1


@corruption("severity 4: 17% of pixels set to black or white at random (skimage's s&p noise)")
def impulse_noise(images, generator):
    return salt_and_pepper(images, generator, share=0.17)


@corruption("severity 1: blur 0.7, two sweeps of swaps of each pixel with a random up-left neighbour (p 1/2), blur "
            "0.7; each blur along the columns only, as skimage's multichannel=True does to a 2-D image")
def glass_blur(images, generator):
    levels = torch.floor(skimage_gaussian(images, 0.7, horizontal=False) * 255)  # truncated to uint8, as theirs is
    return skimage_gaussian(glass_swaps(levels, generator) / 255, 0.7, horizontal=False).clamp(0, 1)


@corruption("severity 1: ImageMagick's motion blur, radius 10, sigma 3, at an angle in [-45, 45] degrees "
            "(approximation: its one-sided kernel as imagecorruptions re-implements it, not ImageMagick run)")
def motion_blur(images, generator):
    # A one-sided Gaussian average of 21 copies of the image shifted by whole pixels along the angle, edges repeated.
    angle = torch.deg2rad(uniform(generator, len(images)) * 90 - 45)
    offsets = torch.arange(2 * 10 + 1, device=images.device, dtype=images.dtype)
    weights = torch.exp(-offsets ** 2 / (2 * 3 ** 2))
    weights = weights / weights.sum()
    blurred = torch.zeros_like(images)
    for offset, weight in zip(offsets, weights):
        step = torch.stack([torch.ceil(offset * torch.cos(angle) - 0.5),
                            torch.ceil(offset * torch.sin(angle) - 0.5)], dim=1)        # n x (col, row)
        blurred += weight * warp(images, shifted(step), mode="nearest", padding_mode="border")
    return blurred.clamp(0, 1)


@corruption("severity 2: horizontal shear by +-0.4 (skimage's AffineTransform(shear=0.4)) about the centre")
def shear(images, generator):
    c = 0.4 * random_sign(len(images), generator)
    linear = torch.stack([torch.ones_like(c), -torch.sin(c), torch.zeros_like(c), torch.cos(c)], dim=1)
    return warp(images, centred_affine(linear.view(-1, 2, 2))).clamp(0, 1)


@corruption("severity 3: shrunk to 70% about the centre")
def scale(images, generator):
    linear = torch.eye(2, device=images.device).expand(len(images), 2, 2) / 0.7  # read at 1/0.7 times the distance
    return warp(images, centred_affine(linear)).clamp(0, 1)


@corruption("severity 2: rotated by +-0.4 radians (23 degrees) about the centre")
def rotate(images, generator):
    c = 0.4 * random_sign(len(images), generator)
    linear = torch.stack([torch.cos(c), -torch.sin(c), torch.sin(c), torch.cos(c)], dim=1)
    return warp(images, centred_affine(linear.view(-1, 2, 2))).clamp(0, 1)


@corruption("severity 5: 0.5 added to every grey level (the HSV value channel), clipped")
def brightness(images, generator):
    return (images + 0.5).clamp(0, 1)  # a grey image's HSV value is its grey level


@corruption("severity 3: shifted by 3 pixels along each axis, each direction at random")
def translate(images, generator):
    n = len(images)
    return warp(images, shifted(3 * torch.stack([random_sign(n, generator), random_sign(n, generator)], dim=1)))


@corruption("columns 0-6 and 21-27 in negative")
def stripe(images, generator):
    band = (torch.arange(28, device=images.device) < 7) | (torch.arange(28, device=images.device) >= 21)
    return torch.where(band.view(1, 1, 1, 28), 1 - images, images)


@corruption("severity 5: a 256 x 256 plasma fractal (wibble decay 1.4) cropped to 28 x 28, 3 x it added, the result "
            "scaled back by max / (max + 3)")
def fog(images, generator):
    top = images.amax((1, 2, 3), keepdim=True)
    cloud = torch.cat([plasma_fractal(len(part), generator, images.device)[:, None, :28, :28]
                       for part in images.split(250)])  # 250 fractals of 256 x 256 at a time: 65 MB
    return ((images + 3.0 * cloud) * top / (top + 3.0)).clamp(0, 1)


@corruption("severity 4: mud (63/255) where a blurred N(0.65, 0.3^2) liquid layer exceeds 0.65, its blurred mask at "
            "0.8 or more")
def spatter(images, generator):
    noise = torch.randn(images.shape, generator=generator, device=images.device)
    liquid = skimage_gaussian(0.65 + 0.3 * noise, 1.0)
    mud = skimage_gaussian((liquid > 0.65).float(), 1.5)
    mud = torch.where(mud < 0.8, 0.0, mud)
    return (images * (1 - mud) + 63 / 255 * mud).clamp(0, 1)


@corruption("a soft white line from column 0 to column 27, every other pair of columns blanked, added")
def dotted_line(images, generator):
    n, device = len(images), images.device
    rows = integers(generator, 0, 27, 2, n)  # each end's row; soft_lines leaves the end column, 27, undrawn
    start = torch.stack([torch.zeros(n, device=device), rows[0]], 1)
    end = torch.stack([torch.full((n,), 27.0, device=device), rows[1]], 1)
    kept = (torch.arange(28, device=device) // 2) % 2 == 1  # columns 0-1, 4-5, ... blanked
    return (images + soft_lines(start, end) * kept).clamp(0, 1)


@corruption("a soft white zigzag (teeth 2 x 2 pixels) from column 2 to 25 along a random line, added")
def zigzag(images, generator):
    n = len(images)
    r0 = integers(generator, 0, 27, n)
    vertices = zigzag_vertices(r0, r0 + integers(generator, -5, 5, n))
    segments = soft_lines(vertices[:, :-1].reshape(-1, 2), vertices[:, 1:].reshape(-1, 2))
    return (images + segments.view(n, 7, 28, 28).sum(1, keepdim=True)).clamp(0, 1)


@corruption("the digit replaced by its Canny edges (skimage's defaults: sigma 1, thresholds 0.1 and 0.2)")
def canny_edges(images, generator):
    return canny(images)


# ----- the groups -----

ANOMALY_TYPES = (*CORRUPTIONS, "fashion_mnist")  # Fashion-MNIST's test images: foreign, not corrupted, digits
ORIGINAL = (*list(CORRUPTIONS)[:7], "fashion_mnist")
MNIST_C = tuple(list(CORRUPTIONS)[7:])
# Every choice (the score, its parameters, the model, the percentile) is made on the development group and the
# normal validation digits; the held-out group is only ever reported. Each holds a member of every MNIST-C family
# (grey-level noise, blur, geometric changes, brightness, overlays). Development has shot noise, the weakest type,
# which a score has to be built against, and the original types, which earlier choices were made on; held-out has
# Canny edges, the one kind with no sibling.
DEVELOPMENT = (*ORIGINAL, "shot_noise", "glass_blur", "shear", "scale", "brightness", "stripe", "zigzag")
HELD_OUT = ("impulse_noise", "motion_blur", "rotate", "translate", "fog", "spatter", "dotted_line", "canny_edges")
GROUPS = {"original": ORIGINAL, "development": DEVELOPMENT, "held_out": HELD_OUT, "mnist_c": MNIST_C,
          "all": ANOMALY_TYPES}


def corrupt(images, kind, generator):
    """Corrupt float images in [0, 1] by ``kind``, rounded to 256 grey levels as an image file (or MNIST-C's uint8
    arrays) would hold them: no score can then tell a corruption by grey levels that fall between MNIST's."""
    return (CORRUPTIONS[kind](images, generator) * 255).round() / 255


def describe(kind):
    return CORRUPTIONS[kind].description if kind in CORRUPTIONS else "Fashion-MNIST test images"


def parse_corruptions(text):
    """--corruptions' comma-separated types and groups -> the anomaly types they name, in ANOMALY_TYPES' order."""
    chosen = set()
    for name in filter(None, (part.strip() for part in text.split(","))):
        if name not in GROUPS and name not in ANOMALY_TYPES:
            raise UserError(f"--corruptions: unknown type or group {name!r}; groups are {', '.join(GROUPS)}, "
                            f"types {', '.join(ANOMALY_TYPES)}")
        chosen.update(GROUPS.get(name, (name,)))
    if not chosen:
        raise UserError("--corruptions names no anomaly type: give types or groups, e.g. held_out")
    return tuple(kind for kind in ANOMALY_TYPES if kind in chosen)


def group_of(kind):
    return "held_out" if kind in HELD_OUT else "development"
