"""Anomaly detection with the VAE: corrupted, moved and foreign images against clean MNIST, a calibrated threshold.

Scores every image by how badly vae_mnist.py's VAE and MNIST's own conventions explain it. The default, combined,
is the largest of three standardised scores: the image's -log p under a grey-level model built on the VAE's
reconstruction, the same inside the strokes only, and its distance from MNIST's size and centring; the others
(the reconstruction error, the negative ELBO, relative_error for the one-class benchmark, an input-complexity
correction, the importance-weighted likelihood) stay behind --anomaly-score. The threshold is a percentile of the
scores of held-out *normal* images, the last 5,000 of MNIST's training set, which vae_mnist.py does not train on;
the test set never sets it. The evaluation mix holds normal MNIST test digits, corrupted versions of other test
digits (the seven original corruption types and MNIST-C's fifteen, CORRUPTIONS below) and Fashion-MNIST test images,
in two groups: every choice was made on DEVELOPMENT, and HELD_OUT is only reported. The report gives confusion
counts, precision, recall, F1, AUROC and AUPRC per type, per group and overall.

    python vae_anomaly_detection.py                          # CPU: about 25 s once vae_mnist.py has run
    python vae_anomaly_detection.py --device cuda            # GPU: seconds
    python vae_anomaly_detection.py --benchmark mnist-c      # MNIST-C's protocol: every type on all test digits
    python vae_anomaly_detection.py --corruptions held_out   # a mix of the held-out types only
    python vae_anomaly_detection.py --score my_digits.npz    # scores.csv for your own images (or a folder of PNGs)
    python vae_anomaly_detection.py --normal-digit all       # one-class benchmark: ten VAEs, each on one digit

Writes to outputs/vae_anomaly_detection/: histograms.png, roc.png, gallery.png, metrics.json, config.json; with
--benchmark, benchmark.json, histograms.png and roc.png; with --score, scores.csv; with --normal-digit,
one_class.json and a checkpoint per digit under one_class/.
"""
import csv
import math
import zipfile
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve
from torchvision import io

from common import cli, data, distributed, plots, runs, vae

# Every score, one value per image, higher = more anomalous (score_images below defines each):
ANOMALY_SCORES = ("combined", "reconstruction", "elbo", "relative_error", "grey_levels", "stroke_texture", "geometry",
                  "complexity")

SETTINGS = {
    # Shared with the other scripts (common/cli.py, vae.py): --data-dir, --out-dir, --device auto, --seed 0,
    # --vae-checkpoint outputs/vae_mnist/checkpoint.pt.
    **cli.BASE_SETTINGS,
    **vae.CHECKPOINT_SETTINGS,
    "anomaly_score": ("combined", "what an image is scored by (score_images; iw_nll needs --iw-samples); combined "
                                  "has the best mean and lowest AUROC on the development group (BENCHMARKS.md)",
                      (*ANOMALY_SCORES, "iw_nll")),
    "percentile": (99.0, "threshold = this percentile of the normal validation digits' scores, so about "
                         "(100 - it)%% of normal digits get flagged", "(0, 100)"),
    "corruptions": ("all", "what the evaluation mix holds: anomaly types and groups, comma-separated (groups: "
                           "original, development, held_out, mnist_c, all; types: see CORRUPTIONS, fashion_mnist)"),
    "anomaly_fraction": (0.5, "share of anomalies in the evaluation mix of 10,000 images, split evenly over the "
                              "types of --corruptions", "(0, 1)"),
    "benchmark": ("", "mnist-c: instead of the mix, every type of --corruptions applied to all 10,000 test digits "
                      "(as MNIST-C does) against the 10,000 clean ones; writes benchmark.json", ("", "mnist-c")),
    "score": (None, "score your own images instead: a .npy / .npz array (N x 28 x 28 or N x 1 x 28 x 28, uint8 0..255 "
                    "or float 0..1) or a folder of 28 x 28 PNGs; writes scores.csv"),
    "normal_digit": ("", "one-class benchmark: train a VAE on this digit's training images only (0-9, or all)",
                     ("", "all", *"0123456789")),
    "one_class_epochs": (10, "training epochs of each one-class VAE (about 6,000 images each: 20 s a digit on 2 "
                             "CPU cores)", "[1, inf)"),
    "iw_samples": (0, "also score by an importance-weighted -log p(x) with this many samples (iw_nll; slow)"),
}
# combined = the largest of these, each standardised on the normal validation digits.
COMBINED_SCORES = ("geometry", "grey_levels", "stroke_texture")
INK_OFFSET = 10.0  # relative_error's denominator is the image's ink (sum of pixel values, ~100 for a digit) + this
RESIDUAL_BLUR = 1.0  # relative_error smooths the residual x - x_hat with a Gaussian of this standard deviation (pixels)
GREY_LEVELS = 256  # the grey-level model's values: MNIST's 8-bit levels
CONTEXT_BINS = (16, 8)  # the grey-level model's context: a pixel's darkest neighbour, the decoder's mean there
GREY_LEVEL_DIGITS = 10_000  # training digits the grey-level model is counted on (7.8 million pixels)
MNIST_BOX = 20  # MNIST's digits are scaled to fit a 20 x 20 box, aspect kept (LeCun et al. 1998) ...
MNIST_CENTRE = 14.0  # ... and shifted so that their centre of mass is at pixel (14, 14): 14.00 +- 0.29 on validation

# Corruption types and their strengths, none erasing the digit. The first seven are the ones the detector was first
# built on, each plainly visible; the rest are MNIST-C's fifteen (Mu & Gilmer 2019), each with the parameters of
# MNIST-C's corruptions.py (google-research/mnist-c) at the severity it calls each function with, the function's
# default (shot noise and fog at 5, impulse noise and spatter at 4, ...). The one marked "approximation" follows
# their code's method without running the library it calls.
CORRUPTIONS = {
    "gaussian_noise": "additive N(0, 0.3^2) noise per pixel, clipped to [0, 1]",
    "salt_and_pepper": "10% of pixels set to black or white at random",
    "blur": "Gaussian blur with a standard deviation of 1.5 pixels",
    "occlusion": "a 10 x 10 block painted mid-grey (0.5) at a random place",
    "inversion": "black and white swapped: 1 - x",
    "stripes": "every fourth row (or column, at random) painted white",
    "pixelation": "7 x 7 blocks averaged: 4 x 4 resolution shown at 28 x 28",
    "shot_noise": "Poisson noise, severity 5: poisson(3 x) / 3, clipped, so the background stays black",
    "impulse_noise": "severity 4: 17% of pixels set to black or white at random (skimage's s&p noise)",
    "glass_blur": "severity 1: blur 0.7, two sweeps of swaps of each pixel with a random up-left neighbour (p 1/2), "
                  "blur 0.7; each blur along the columns only, as skimage's multichannel=True does to a 2-D image",
    "motion_blur": "severity 1: ImageMagick's motion blur, radius 10, sigma 3, at an angle in [-45, 45] degrees "
                   "(approximation: its one-sided kernel as imagecorruptions re-implements it, not ImageMagick run)",
    "shear": "severity 2: horizontal shear by +-0.4 (skimage's AffineTransform(shear=0.4)) about the centre",
    "scale": "severity 3: shrunk to 70% about the centre",
    "rotate": "severity 2: rotated by +-0.4 radians (23 degrees) about the centre",
    "brightness": "severity 5: 0.5 added to every grey level (the HSV value channel), clipped",
    "translate": "severity 3: shifted by 3 pixels along each axis, each direction at random",
    "stripe": "columns 0-6 and 21-27 in negative",
    "fog": "severity 5: a 256 x 256 plasma fractal (wibble decay 1.4) cropped to 28 x 28, 3 x it added, the result "
           "scaled back by max / (max + 3)",
    "spatter": "severity 4: mud (63/255) where a blurred N(0.65, 0.3^2) liquid layer exceeds 0.65, its blurred "
               "mask at 0.8 or more",
    "dotted_line": "a soft white line from column 0 to column 27, every other pair of columns blanked, added",
    "zigzag": "a soft white zigzag (teeth 2 x 2 pixels) from column 2 to 25 along a random line, added",
    "canny_edges": "the digit replaced by its Canny edges (skimage's defaults: sigma 1, thresholds 0.1 and 0.2)",
}
ANOMALY_TYPES = (*CORRUPTIONS, "fashion_mnist")
ORIGINAL = (*list(CORRUPTIONS)[:7], "fashion_mnist")
MNIST_C = tuple(list(CORRUPTIONS)[7:])
# Every choice (the score, its parameters, the model, the percentile) is made on the development group and the
# normal validation digits; the held-out group is only ever reported. The development group holds the seven
# original types and Fashion-MNIST, which earlier choices were made on, and one MNIST-C type of each family: grey-
# level noise (shot noise: the weakest type, which a score has to be built against), blur, two geometric
# changes, a change of brightness and two overlays. The held-out group has a member of every family too (impulse
# noise, motion blur, rotation and translation, fog, spatter and a dotted line) and the one kind with no sibling in
# development, Canny edges.
DEVELOPMENT = (*ORIGINAL, "shot_noise", "glass_blur", "shear", "scale", "brightness", "stripe", "zigzag")
HELD_OUT = ("impulse_noise", "motion_blur", "rotate", "translate", "fog", "spatter", "dotted_line", "canny_edges")
GROUPS = {"original": ORIGINAL, "development": DEVELOPMENT, "held_out": HELD_OUT, "mnist_c": MNIST_C,
          "all": ANOMALY_TYPES}


def parse_corruptions(text):
    """--corruptions' comma-separated types and groups -> the anomaly types they name, in ANOMALY_TYPES' order."""
    chosen = set()
    for name in filter(None, (part.strip() for part in text.split(","))):
        if name not in GROUPS and name not in ANOMALY_TYPES:
            raise cli.UserError(f"--corruptions: unknown type or group {name!r}; groups are {', '.join(GROUPS)}, "
                                f"types {', '.join(ANOMALY_TYPES)}")
        chosen.update(GROUPS.get(name, (name,)))
    if not chosen:
        raise cli.UserError("--corruptions names no anomaly type: give types or groups, e.g. held_out")
    return tuple(kind for kind in ANOMALY_TYPES if kind in chosen)


def group_of(kind):
    return "held_out" if kind in HELD_OUT else "development"


# ----- corruptions, applied on the images' device with a seeded generator -----

def gaussian_blur(images, sigma, radius=None, padding="constant", horizontal=True):
    """Blur N x 1 x H x W images with a Gaussian of standard deviation ``sigma`` pixels, taps out to ``radius``
    (default 3 sigma). ``padding`` is "constant" (black beyond the border) or "replicate" (the border pixel repeated);
    ``horizontal=False`` blurs each column on its own (vertically) and not along the rows."""
    radius = int(3 * sigma) if radius is None else radius
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, device=images.device) / sigma) ** 2)
    taps = taps / taps.sum()
    # A Gaussian is separable: a row pass, then a column pass.
    if horizontal:
        images = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode=padding), taps.view(1, 1, 1, -1))
    return F.conv2d(F.pad(images, (0, 0, radius, radius), mode=padding), taps.view(1, 1, -1, 1))


def skimage_gaussian(images, sigma, **options):
    """skimage.filters.gaussian as MNIST-C calls it: scipy's gaussian_filter, taps out to 4 sigma, the border pixel
    repeated beyond the edge (its mode "nearest")."""
    return gaussian_blur(images, sigma, radius=int(4 * sigma + 0.5), padding="replicate", **options)


def warp(images, matrices, mode="bilinear", padding_mode="zeros"):
    """skimage.transform.warp(x, inverse_map=A) for a batch: output pixel (col, row) reads the input at
    A @ (col, row, 1), A one 2 x 3 matrix per image in pixel units; by default bilinear, black outside the image."""
    n, _, height, width = images.shape
    rows, cols = torch.meshgrid(torch.arange(height, device=images.device, dtype=images.dtype),
                                torch.arange(width, device=images.device, dtype=images.dtype), indexing="ij")
    points = torch.stack([cols, rows, torch.ones_like(rows)], dim=-1).view(1, -1, 3)    # 1 x HW x (col, row, 1)
    source = points @ matrices.transpose(1, 2)                                          # n x HW x (col, row)
    # grid_sample's coordinates run from -1 to 1 across the pixel centres (align_corners=True).
    grid = 2 * source / torch.tensor([width - 1, height - 1], device=images.device) - 1
    return F.grid_sample(images, grid.view(n, height, width, 2), mode=mode, padding_mode=padding_mode,
                         align_corners=True)


def centred_affine(linear):
    """2 x 3 matrices with the linear parts ``linear`` (n x 2 x 2) that keep the image centre (13.5, 13.5) fixed, as
    MNIST-C's affine corruptions do."""
    centre = torch.full((len(linear), 2, 1), 13.5, device=linear.device)
    return torch.cat([linear, centre - linear @ centre], dim=2)


def random_sign(n, generator, device):
    return torch.where(torch.rand(n, generator=generator, device=device) < 0.5, -1.0, 1.0)


def soft_lines(start, end):
    """MNIST-C's line_from_points for a batch: n x 1 x 28 x 28 intensities of the lines from ``start`` to ``end``
    (n x 2 each, (col, row) in pixels). A pixel's intensity falls with its vertical distance d from the line as
    log(1 - d / 2.3) + 1, clipped to [0, 1] (1 on the line, 0 from 1.45 pixels away); only the columns from
    floor(start col) up to, not including, ceil(end col) are drawn."""
    position = torch.arange(28.0, device=start.device)
    slope = (end[:, 1] - start[:, 1]) / (end[:, 0] - start[:, 0])                      # rows per column
    line_row = start[:, 1, None] + slope[:, None] * (position - start[:, 0, None])     # n x 28 (columns)
    distance = (position.view(1, 28, 1) - line_row[:, None, :]).abs().clamp(max=2.3)   # n x rows x cols
    intensity = (torch.log1p(-distance / 2.3) + 1).clamp(0, 1)                         # log(0) = -inf clips to 0
    drawn = (position >= start[:, 0, None].floor()) & (position < end[:, 0, None].ceil())
    return (intensity * drawn[:, None, :])[:, None]


def zigzag_vertices(r0, r1):
    """MNIST-C's zigzag from (col 2, row r0) towards (col 25, row r1): teeth of half-width a = 2 columns and height
    b = 2 rows about the straight line of length d, then a last vertex on the line's far end (at MNIST-C's height
    r / (2 (d - 4 floor(d / 4)))), the whole rotated onto the line. For the rows MNIST-C draws (|r1 - r0| <= 5),
    d = 23 to 23.5 always gives 8 vertices; returns them as n x 8 x (col, row)."""
    a, b = 2.0, 2.0
    theta = torch.atan((r1 - r0) / 23)
    d = 23 / torch.cos(theta)
    teeth = torch.arange(6, device=r0.device)
    cols = torch.cat([torch.zeros_like(d)[:, None], ((2 * teeth + 1) * a).expand(len(d), 6), d[:, None]], dim=1)
    last = b * (-1.0) ** 5 / (2 * (d - 2 * a * torch.floor(d / (2 * a))))
    rows = torch.cat([torch.zeros_like(d)[:, None], (b * (-1.0) ** teeth).expand(len(d), 6), last[:, None]], dim=1)
    cos, sin = torch.cos(theta)[:, None], torch.sin(theta)[:, None]
    return torch.stack([cos * cols - sin * rows + 2, sin * cols + cos * rows + r0[:, None]], dim=2)


def plasma_fractal(n, generator, device, size=256, decay=1.4):
    """n greyscale plasma fractals in [0, 1], size x size: the diamond-square algorithm of ImageNet-C's fog
    (Hendrycks & Dietterich 2019), which MNIST-C keeps at its 256 x 256 and crops; vectorised over the batch (their
    random draws, in another order)."""
    maps = torch.zeros(n, size, size, device=device)
    step, wibble = size, 100.0

    def wibbled_mean(total):
        return total / 4 + wibble * (2 * torch.rand(total.shape, generator=generator, device=device) - 1) * wibble

    while step >= 2:
        half = step // 2
        # Squares: each square's centre is the mean of its four corners plus noise.
        corners = maps[:, ::step, ::step]
        square = corners + corners.roll(-1, 1)
        square = square + square.roll(-1, 2)
        maps[:, half::step, half::step] = wibbled_mean(square)
        # Diamonds: each edge's midpoint is the mean of its two corners and the two square centres beside it.
        centres, corners = maps[:, half::step, half::step], maps[:, ::step, ::step]
        maps[:, ::step, half::step] = wibbled_mean(centres + centres.roll(1, 1) + corners + corners.roll(-1, 2))
        maps[:, half::step, ::step] = wibbled_mean(centres + centres.roll(1, 2) + corners + corners.roll(-1, 1))
        step, wibble = half, wibble / decay
    low = maps.amin((1, 2), keepdim=True)
    return (maps - low) / (maps.amax((1, 2), keepdim=True) - low)


def glass_swaps(levels, generator, iterations=2):
    """ImageNet-C's local shuffle in glass blur, at MNIST-C's max_delta 1: ``iterations`` sweeps over the rows h and
    the columns w from 27 down to 2, each swapping pixel (h, w), with probability 1/2, with (h + dy, w + dx), dy and
    dx each -1 or 0. The swaps are done one after another, as theirs are (a pixel can travel several steps up and
    left in one sweep), each at once for the whole batch; ``levels`` is n x 1 x 28 x 28."""
    n, device = len(levels), levels.device
    x = levels.flatten(1).clone()
    sweep = [(h, w) for h in range(27, 1, -1) for w in range(27, 1, -1)]
    swap = torch.rand(iterations, len(sweep), n, generator=generator, device=device) < 0.5
    dy, dx = torch.randint(-1, 1, (2, iterations, len(sweep), n), generator=generator, device=device)
    for iteration in range(iterations):
        for step, (h, w) in enumerate(sweep):
            here = h * 28 + w
            there = torch.where(swap[iteration, step], here + dy[iteration, step] * 28 + dx[iteration, step], here)
            moving = x[:, here].clone()
            x[:, here] = x.gather(1, there[:, None])[:, 0]
            x.scatter_(1, there[:, None], moving[:, None])
    return x.view_as(levels)


def canny(images, sigma=1.0, low=0.1, high=0.2):
    """Canny edges (Canny 1986) as skimage.feature.canny draws them with its defaults: a Gaussian of ``sigma``
    (normalised at the border), Sobel gradients, thinning to the local maxima along the gradient, and hysteresis
    between the thresholds ``low`` and ``high`` on the gradient magnitude (edges above ``low`` kept where they
    connect to one above ``high``); no edge on the image's outermost pixels."""
    radius = int(4 * sigma + 0.5)
    smooth = gaussian_blur(images, sigma, radius) / gaussian_blur(torch.ones_like(images), sigma, radius)
    padded = F.pad(smooth, (1, 1, 1, 1), mode="replicate")
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=images.device)
    gx = F.conv2d(padded, sobel.view(1, 1, 3, 3))                 # along the columns
    gy = F.conv2d(padded, sobel.t().reshape(1, 1, 3, 3))          # along the rows
    magnitude = torch.hypot(gx, gy)
    # Non-maximum suppression: a pixel is kept if it is no smaller than the magnitude one step ahead and one step
    # behind along its gradient, each interpolated between the nearest axis neighbour and the diagonal one.
    steep = gy.abs() >= gx.abs()
    weight = torch.where(steep, gx.abs() / gy.abs(), gy.abs() / gx.abs()).nan_to_num(0.0)
    sy, sx = gy.sign().long(), gx.sign().long()
    axis_step = torch.where(steep, sy * 28, sx)
    diagonal_step = sy * 28 + sx
    flat = magnitude.flatten(1)
    index = torch.arange(28 * 28, device=images.device).view(1, 1, 28, 28)
    interior = torch.zeros(28, 28, dtype=torch.bool, device=images.device)
    interior[1:-1, 1:-1] = True
    keep = interior.clone()
    for direction in (1, -1):
        def at(step):  # the magnitude one step along the gradient (the border's steps are never used)
            return flat.gather(1, (index + direction * step).clamp(0, 28 * 28 - 1).flatten(1)).view_as(magnitude)
        keep = keep & (magnitude >= weight * at(diagonal_step) + (1 - weight) * at(axis_step))
    weak = keep & (magnitude >= low)
    edges = weak & (magnitude >= high)
    while True:  # hysteresis: grow the strong edges along the weak ones (8-connected) until nothing changes
        grown = weak & (F.max_pool2d(edges.float(), 3, stride=1, padding=1) > 0)
        if torch.equal(grown, edges):
            return edges.float()
        edges = grown


def corrupt(images, kind, generator):
    """Corrupt float images in [0, 1] (N x 1 x 28 x 28) by ``kind``; random choices come from ``generator``.

    The result is rounded to 256 grey levels, as an image file (or MNIST-C's uint8 arrays) would hold it: no score
    can then tell a corruption by grey levels that fall between MNIST's.
    """
    return (exact_corruption(images, kind, generator) * 255).round() / 255


def exact_corruption(images, kind, generator):
    n, device = len(images), images.device

    def uniform(*shape):
        return torch.rand(*shape, generator=generator, device=device)

    def integers(low, high, *shape):  # uniform over low, ..., high - 1, as np.random.randint
        return torch.randint(low, high, shape, generator=generator, device=device).float()

    # The seven types the detector was first built on.
    if kind == "gaussian_noise":
        return (images + 0.3 * torch.randn(images.shape, generator=generator, device=device)).clamp(0, 1)
    if kind == "salt_and_pepper":
        hit = uniform(images.shape) < 0.10
        return torch.where(hit, (uniform(images.shape) < 0.5).float(), images)
    if kind == "blur":
        return gaussian_blur(images, 1.5)
    if kind == "occlusion":
        size = 10
        top, left = (uniform(2, n) * (28 - size + 1)).long()
        position = torch.arange(28, device=device)
        inside_rows = (position >= top[:, None]) & (position < top[:, None] + size)      # n x 28
        inside_cols = (position >= left[:, None]) & (position < left[:, None] + size)
        block = (inside_rows[:, :, None] & inside_cols[:, None, :])[:, None]             # n x 1 x 28 x 28
        return images.masked_fill(block, 0.5)
    if kind == "inversion":
        return 1 - images
    if kind == "stripes":
        phase = (uniform(n) * 4).long()[:, None]
        lines = (torch.arange(28, device=device) - phase) % 4 == 0                        # n x 28
        horizontal = (uniform(n) < 0.5)[:, None, None]
        mask = torch.where(horizontal, lines[:, :, None].expand(n, 28, 28), lines[:, None, :].expand(n, 28, 28))
        return images.masked_fill(mask[:, None], 1.0)
    if kind == "pixelation":
        return F.interpolate(F.avg_pool2d(images, 7), scale_factor=7, mode="nearest")

    # MNIST-C (Mu & Gilmer 2019), each at the severity its corruptions.py calls it with (the function's default).
    if kind == "shot_noise":
        # Severity 5: Poisson counts at 3 photons for a white pixel, so a stroke's levels become 0, 1/3, 2/3 or 1.
        return (torch.poisson(images * 3, generator=generator) / 3).clamp(0, 1)
    if kind == "impulse_noise":
        # Severity 4: skimage's random_noise(mode="s&p", amount=0.17), salt and pepper in equal shares.
        hit = uniform(images.shape) < 0.17
        return torch.where(hit, (uniform(images.shape) < 0.5).float(), images)
    if kind == "glass_blur":
        # Severity 1 (sigma 0.7, max_delta 1, 2 iterations): blur, truncate to uint8, shuffle, blur again. MNIST-C
        # calls skimage's gaussian with multichannel=True on a 2-D image, which takes the last axis for colour
        # channels and so blurs each column vertically, never across columns: so does this.
        levels = torch.floor(skimage_gaussian(images, 0.7, horizontal=False) * 255)
        return skimage_gaussian(glass_swaps(levels, generator) / 255, 0.7, horizontal=False).clamp(0, 1)
    if kind == "motion_blur":
        # Severity 1: ImageMagick's motion blur (radius 10, sigma 3) at an angle uniform in [-45, 45] degrees: a
        # one-sided Gaussian average of the 21 copies of the image shifted by whole pixels along that direction
        # (edges repeated), as the imagecorruptions package re-implements it.
        angle = torch.deg2rad(uniform(n) * 90 - 45)
        offsets = torch.arange(2 * 10 + 1, device=device, dtype=images.dtype)
        weights = torch.exp(-offsets ** 2 / (2 * 3 ** 2))
        weights = weights / weights.sum()
        blurred = torch.zeros_like(images)
        for offset, weight in zip(offsets, weights):
            shift = torch.stack([-torch.ceil(offset * torch.cos(angle) - 0.5),
                                 -torch.ceil(offset * torch.sin(angle) - 0.5)], dim=1)  # n x (col, row)
            matrices = torch.cat([torch.eye(2, device=device).expand(n, 2, 2), -shift[..., None]], dim=2)
            blurred += weight * warp(images, matrices, mode="nearest", padding_mode="border")
        return blurred.clamp(0, 1)
    if kind in ("shear", "rotate"):
        # Severity 2: skimage's AffineTransform(shear=c) or (rotation=c), c = +-0.4 (radians) at random, centre fixed.
        c = 0.4 * random_sign(n, generator, device)
        if kind == "shear":
            linear = torch.stack([torch.ones_like(c), -torch.sin(c), torch.zeros_like(c), torch.cos(c)], dim=1)
        else:
            linear = torch.stack([torch.cos(c), -torch.sin(c), torch.sin(c), torch.cos(c)], dim=1)
        return warp(images, centred_affine(linear.view(n, 2, 2))).clamp(0, 1)
    if kind == "scale":
        # Severity 3: read the input at 1/0.7 times the distance from the centre, so the digit shrinks to 70%.
        linear = torch.eye(2, device=device).expand(n, 2, 2) / 0.7
        return warp(images, centred_affine(linear)).clamp(0, 1)
    if kind == "translate":
        # Severity 3: 3 pixels along each axis, each direction at random.
        shift = 3 * torch.stack([random_sign(n, generator, device), random_sign(n, generator, device)], dim=1)
        matrices = torch.cat([torch.eye(2, device=device).expand(n, 2, 2), shift[..., None]], dim=2)
        return warp(images, matrices)
    if kind == "brightness":
        # Severity 5: 0.5 added to the HSV value channel, which for a grey image is the grey level itself.
        return (images + 0.5).clamp(0, 1)
    if kind == "stripe":
        # Columns 0-6 and 21-27 in negative.
        band = (torch.arange(28, device=device) < 7) | (torch.arange(28, device=device) >= 21)
        return torch.where(band.view(1, 1, 1, 28), 1 - images, images)
    if kind == "fog":
        # Severity 5 (3.0, 1.4): 3 x a plasma fractal's top-left corner added, then scaled back by max / (max + 3).
        # The fractals are drawn 250 at a time: 256 x 256 each, 65 MB a batch.
        top = images.amax((1, 2, 3), keepdim=True)
        cloud = torch.cat([plasma_fractal(len(part), generator, device)[:, None, :28, :28]
                           for part in images.split(250)])
        return ((images + 3.0 * cloud) * top / (top + 3.0)).clamp(0, 1)
    if kind == "spatter":
        # Severity 4, mud: a liquid layer N(0.65, 0.3^2) per pixel, blurred (1 pixel); where it exceeds 0.65, a mask,
        # blurred (1.5 pixels) and kept where it is at least 0.8; under the mask the image fades to mud, 63/255.
        liquid = skimage_gaussian(0.65 + 0.3 * torch.randn(images.shape, generator=generator, device=device), 1.0)
        mud = skimage_gaussian((liquid > 0.65).float(), 1.5)
        mud = torch.where(mud < 0.8, 0.0, mud)
        return (images * (1 - mud) + 63 / 255 * mud).clamp(0, 1)
    if kind == "dotted_line":
        # A soft line from column 0 to column 27 (which the line itself leaves out) between rows drawn from 0-26,
        # every other pair of columns blanked (0-1, 4-5, ...), added to the image.
        rows = integers(0, 27, 2, n)
        start = torch.stack([torch.zeros(n, device=device), rows[0]], 1)
        end = torch.stack([torch.full((n,), 27.0, device=device), rows[1]], 1)
        kept = (torch.arange(28, device=device) // 2) % 2 == 1
        return (images + soft_lines(start, end) * kept).clamp(0, 1)
    if kind == "zigzag":
        # Soft line segments through zigzag_vertices, from row r0 (0-26) towards r0 + (-5 to 4), added to the image.
        r0 = integers(0, 27, n)
        vertices = zigzag_vertices(r0, r0 + integers(-5, 5, n))
        segments = soft_lines(vertices[:, :-1].reshape(-1, 2), vertices[:, 1:].reshape(-1, 2))
        return (images + segments.view(n, 7, 28, 28).sum(1, keepdim=True)).clamp(0, 1)
    if kind == "canny_edges":
        return canny(images)
    raise ValueError(kind)


# ----- scores -----

def neighbour_minimum(x):
    """Per pixel, the darkest of its four neighbours (black beyond the border)."""
    padded = F.pad(x, (1, 1, 1, 1))
    return torch.stack([padded[..., :-2, 1:-1], padded[..., 2:, 1:-1],
                        padded[..., 1:-1, :-2], padded[..., 1:-1, 2:]]).amin(0)


def grey_level_context(x, logits):
    """Each pixel's context for the grey-level model: its darkest neighbour (16 bins) and the decoder's mean there
    (8 bins), as one index."""
    darkest = (neighbour_minimum(x) * CONTEXT_BINS[0]).long().clamp(max=CONTEXT_BINS[0] - 1)
    mean = (torch.sigmoid(logits) * CONTEXT_BINS[1]).long().clamp(max=CONTEXT_BINS[1] - 1)
    return darkest * CONTEXT_BINS[1] + mean


def grey_level(x):
    return (x * (GREY_LEVELS - 1)).round().long()


@torch.no_grad()
def fit_grey_levels(model, images, batch_size=1000):
    """log p(grey level | context) for every context, counted on the normal digits ``images`` (floats in [0, 1]).

    The Bernoulli decoder gives a grey pixel the same likelihood whether it sits at the edge of a stroke, where
    MNIST's anti-aliasing puts grey, or inside one, where a clean digit is white: it is blind to noise that keeps
    the strokes' shape. A categorical over the 256 levels (the output of PixelCNN, van den Oord et al. 2016),
    conditioned on the decoder's mean and on the darkest neighbour, sees it: inside a stroke every neighbour is
    bright and a clean pixel is too. Fitted by counting (add-0.01 smoothing), it needs no training of its own.
    """
    cells = math.prod(CONTEXT_BINS) * GREY_LEVELS
    counts = torch.zeros(cells, device=images.device)
    for x in images.split(batch_size):
        logits = model.decode(model.encode(x)[0])
        counts += torch.bincount((grey_level_context(x, logits) * GREY_LEVELS + grey_level(x)).flatten(),
                                 minlength=cells)
    counts = counts.view(-1, GREY_LEVELS) + 0.01
    return (counts / counts.sum(1, keepdim=True)).log()


def geometry_error(x):
    """How far each image is from MNIST's normalisation, in pixels: |the longer side of the ink's bounding box - 20|
    plus the distance of the centre of mass from (14, 14). Zero for 4,990 of the 5,000 validation digits' sides."""
    ink = x[:, 0] > 0.25                                                                 # n x 28 x 28
    position = torch.arange(28, device=x.device)

    def extent(lit):  # n x 28: rows (or columns) holding ink -> how many from the first to the last, 0 if none
        first = torch.where(lit, position, 28).amin(1)
        return (torch.where(lit, position, -1).amax(1) - first + 1).clamp(min=0)

    side = torch.maximum(extent(ink.any(2)), extent(ink.any(1)))
    mass = x.sum((1, 2, 3)).clamp(min=1e-6)
    centre = torch.stack([(x.sum((1, 3)) * position).sum(1), (x.sum((1, 2)) * position).sum(1)], dim=1)
    return (side - MNIST_BOX).abs() + (centre / mass[:, None] - MNIST_CENTRE).norm(dim=1)


def png_bits(x):
    """Each image's length in bits as a PNG at the strongest compression: Serra et al.'s (2020) input complexity."""
    return torch.tensor([8.0 * len(io.encode_png(image, compression_level=9)) for image in data.to_uint8(x)],
                        device=x.device)


@torch.no_grad()
def score_images(model, images, grey_levels, batch_size=1000, seed=0, iw_samples=0):
    """Every score of ANOMALY_SCORES but ``combined`` (see ``combine``) for float ``images`` in [0, 1], x_hat being
    the decoder's pixel means at z = mu(x) and ``grey_levels`` the table of ``fit_grey_levels``:

    - reconstruction: -log p(x | z = mu(x)) under the Bernoulli decoder, in nats;
    - elbo: the negative ELBO, reconstruction plus KL, for one z ~ q(z|x);
    - relative_error: |blur(x - x_hat)|^2 / (sum(x) + INK_OFFSET), blur a Gaussian of RESIDUAL_BLUR pixels;
    - grey_levels: -log p(x) under the grey-level model, summed over the image, per unit of ink (the pixels above
      0.1, plus INK_OFFSET), so a digit with many strokes is not suspect for its edges alone;
    - stroke_texture: the same per pixel inside the strokes (all four neighbours above 0.5), where shot noise is;
    - geometry: ``geometry_error``, for digits moved, scaled or turned from MNIST's normalisation;
    - complexity: reconstruction in bits minus the PNG length, Serra et al.'s (2020) correction of a likelihood for
      how simple an image is;
    - iw_nll, with ``iw_samples``: the importance-weighted -log p(x) (Burda et al. 2016).

    relative_error answers the one-class benchmark's problem: likelihoods favour simple images, so a VAE trained on
    eights gives a one, with few lit pixels, a lower -log p(x) than most eights get. Dividing the squared error by the
    image's ink removes most of that, and smoothing the residual first discounts what every reconstruction gets
    slightly wrong, the exact edges of the strokes, while keeping what a wrong digit gets wrong, whole strokes
    (one-class AUROC for digit 8: 80 with the ELBO, 95 with the plain squared error per ink, 96.7 smoothed;
    BENCHMARKS.md). The ELBO's and iw_nll's samples are seeded, so the same images always get the same scores.
    """
    model.eval()
    runs.seed_everything(seed)
    scores = {name: [] for name in ANOMALY_SCORES[1:]}
    for x in images.split(batch_size):
        logits = model.decode(model.encode(x)[0])
        reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        scores["reconstruction"].append(reconstruction)
        sampled_reconstruction, kl = vae.negative_elbo(model, x)
        scores["elbo"].append(sampled_reconstruction + kl)
        smoothed_error = gaussian_blur(torch.sigmoid(logits) - x, RESIDUAL_BLUR).pow(2).flatten(1).sum(1)
        scores["relative_error"].append(smoothed_error / (x.flatten(1).sum(1) + INK_OFFSET))
        pixel_nll = -grey_levels[grey_level_context(x, logits), grey_level(x)]           # n x 1 x 28 x 28 nats
        ink = (x > 0.1).flatten(1).sum(1)
        scores["grey_levels"].append(pixel_nll.flatten(1).sum(1) / (ink + INK_OFFSET))
        inside = neighbour_minimum(x) > 0.5
        scores["stroke_texture"].append((pixel_nll * inside).flatten(1).sum(1) /
                                        (inside.flatten(1).sum(1) + INK_OFFSET))
        scores["geometry"].append(geometry_error(x))
        scores["complexity"].append(reconstruction / math.log(2) - png_bits(x))
    scores = {name: torch.cat(values).cpu().numpy() for name, values in scores.items()}
    if iw_samples:
        runs.seed_everything(seed)
        scores["iw_nll"] = vae.importance_weighted_nll_per_image(model, images, iw_samples).cpu().numpy()
    return scores


def combine(scores, validation_scores):
    """Add ``combined`` to ``scores``: the largest of the COMBINED_SCORES, each standardised by its mean and standard
    deviation over the normal validation digits (``validation_scores``), so that each flags what it alone sees."""
    standardised = [(scores[name] - validation_scores[name].mean()) / validation_scores[name].std()
                    for name in COMBINED_SCORES]
    return {"combined": np.maximum.reduce(standardised), **scores}


def confusion(scores, labels, threshold):
    """Counts and rates of ``score > threshold`` as the anomaly call (labels: True for anomalies), AUROC, AUPRC."""
    flagged = scores > threshold
    tp, fp = int((flagged & labels).sum()), int((flagged & ~labels).sum())
    fn, tn = int((~flagged & labels).sum()), int((~flagged & ~labels).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"threshold": float(threshold), "tp": tp, "fp": fp, "tn": tn, "fn": fn, "precision": precision,
            "recall": recall, "f1": f1, "auroc": float(roc_auc_score(labels, scores)),
            "auprc": float(average_precision_score(labels, scores))}


def best_f1_threshold(scores, labels):
    """The threshold that maximises F1 on the evaluation mix itself: a bound in hindsight, not a usable calibration."""
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    # precision_recall_curve flags score >= threshold, ours score > threshold: step just below it.
    return float(np.nextafter(thresholds[int(np.argmax(f1))], -np.inf))


# ----- the threshold, the evaluation mix and the benchmark -----

def calibrate(cfg, model, device):
    """Fit what the scores need on normal digits only, and set the threshold. No test image is involved.

    The grey-level model is counted on the first GREY_LEVEL_DIGITS digits of the training split, which the VAE was
    trained on; the normal validation digits (the last 5,000 of MNIST's training set, never trained on) standardise
    the parts of ``combined`` and give the threshold, the --percentile of their scores. Returns a namespace with
    ``scores(images)`` (every score of every image), ``validation_scores`` and ``threshold``.
    """
    train_images = vae.load_training_split(cfg.data_dir, device, GREY_LEVEL_DIGITS)
    grey_levels = fit_grey_levels(model, data.to_unit_range(train_images))
    val_images, _ = vae.load_validation_split(cfg.data_dir, device)
    raw_validation = score_images(model, data.to_unit_range(val_images), grey_levels, seed=cfg.seed,
                                  iw_samples=cfg.iw_samples)

    def scores(images):
        return combine(score_images(model, images, grey_levels, seed=cfg.seed, iw_samples=cfg.iw_samples),
                       raw_validation)
    validation_scores = combine(raw_validation, raw_validation)
    threshold = float(np.percentile(validation_scores[cfg.anomaly_score], cfg.percentile))
    return SimpleNamespace(scores=scores, grey_levels=grey_levels, validation_scores=validation_scores,
                           threshold=threshold)


def build_mix(cfg, types, device, generator):
    """Normal test digits, corrupted *other* test digits and Fashion-MNIST test images, as floats in [0, 1]: the
    anomalies split evenly over ``types``.

    Returns (images, kinds), where kinds[i] is "normal" or one of ``types``.
    """
    test_images, _ = data.load_mnist(cfg.data_dir, train=False, device=device)
    total = len(test_images)
    per_type = round(cfg.anomaly_fraction * total) // len(types)
    num_normal = total - per_type * len(types)
    if per_type == 0:
        raise cli.UserError(f"--anomaly-fraction {cfg.anomaly_fraction} leaves no anomaly of some of the "
                            f"{len(types)} types among {total} images: raise it")
    order = torch.randperm(total, generator=generator).to(device)
    clean = data.to_unit_range(test_images[order])
    parts, kinds = [clean[:num_normal]], ["normal"] * num_normal
    device_generator = torch.Generator(device=device).manual_seed(cfg.seed)
    start = num_normal
    for kind in types:
        if kind == "fashion_mnist":
            fashion, _ = data.load_mnist(cfg.data_dir, train=False, device=device, name="fashion-mnist")
            pick = torch.randperm(len(fashion), generator=generator)[:per_type].to(device)
            parts.append(data.to_unit_range(fashion[pick]))
        else:
            parts.append(corrupt(clean[start:start + per_type], kind, device_generator))
            start += per_type
        kinds += [kind] * per_type
    return torch.cat(parts), np.array(kinds)


def benchmark_scores(cfg, types, detector, device):
    """MNIST-C's protocol: each type applied to all 10,000 test digits (Fashion-MNIST: its 10,000 test images),
    scored against the 10,000 clean digits. Returns (scores, kinds) as for the mix; the images are not kept."""
    test_images, _ = data.load_mnist(cfg.data_dir, train=False, device=device)
    clean = data.to_unit_range(test_images)
    device_generator = torch.Generator(device=device).manual_seed(cfg.seed)
    parts, kinds = [detector.scores(clean)], ["normal"] * len(clean)
    for kind in types:
        if kind == "fashion_mnist":
            images = data.to_unit_range(data.load_mnist(cfg.data_dir, train=False, device=device,
                                                        name="fashion-mnist")[0])
        else:
            images = corrupt(clean, kind, device_generator)
        parts.append(detector.scores(images))
        kinds += [kind] * len(images)
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}, np.array(kinds)


def saw_validation_images(checkpoint, log=print):
    """Whether the VAE was trained on the validation digits: then they score lower than unseen digits do, and a
    percentile of their scores is too low a threshold (more false positives than the percentile promises)."""
    train_examples = checkpoint.get("train_examples")
    if train_examples is not None and train_examples <= 60_000 - vae.VALIDATION_SIZE:
        return False
    log(f"warning: this VAE was trained on {train_examples or 'all 60,000'} MNIST training images, the "
        f"{vae.VALIDATION_SIZE:,} validation digits among them, so the threshold comes out too low; retrain it "
        f"with vae_mnist.py, which holds them out")
    return True


# ----- users' images -----

def load_user_images(path):
    """Images from a .npy / .npz file or a folder of PNGs, as (ids, float N x 1 x 28 x 28 in [0, 1])."""
    path = Path(path)
    expected = "N x 28 x 28 or N x 1 x 28 x 28, uint8 0..255 or float 0..1"
    if path.is_dir():
        files = sorted(path.glob("*.png"))
        if not files:
            raise cli.UserError(f"no *.png images in {path}: expected a folder of 28 x 28 PNG images")
        images = []
        for file in files:
            try:
                image = io.decode_png(io.read_file(str(file)), mode=io.ImageReadMode.GRAY)
            except RuntimeError:
                raise cli.UserError(f"{file} is not a readable PNG: expected 28 x 28 greyscale PNG images") from None
            if image.shape != (1, 28, 28):
                raise cli.UserError(f"{file} is {image.shape[2]} x {image.shape[1]} pixels: expected 28 x 28")
            images.append(image)
        return [file.name for file in files], data.to_unit_range(torch.stack(images))
    if path.suffix not in (".npy", ".npz") or not path.is_file():
        raise cli.UserError(f"--score {path}: expected an existing .npy or .npz file or a folder of PNG images")
    try:
        loaded = np.load(path, allow_pickle=False)
        if path.suffix == ".npz":
            keys = list(loaded.keys())
            if "images" not in keys and len(keys) != 1:
                raise cli.UserError(f"{path} holds arrays {keys}: expected one array, or one named 'images'")
            loaded = loaded["images" if "images" in keys else keys[0]]
        array = np.asarray(loaded)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # an .npz is a zip archive
        raise cli.UserError(f"{path} is not a readable numpy file ({error.__class__.__name__}): "
                            f"expected an array of {expected}") from None
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3 or array.shape[1:] != (28, 28) or len(array) == 0:
        raise cli.UserError(f"{path} holds an array of shape {array.shape}: expected {expected}")
    if array.dtype == np.uint8:
        images = torch.from_numpy(array).float() / 255
    elif np.issubdtype(array.dtype, np.floating) and np.isfinite(array).all() and 0 <= array.min() <= array.max() <= 1:
        images = torch.from_numpy(array.astype(np.float32))
    else:
        raise cli.UserError(f"{path} holds {array.dtype} values from {array.min()} to {array.max()}: "
                            f"expected uint8 0..255 or float 0..1")
    return [str(i) for i in range(len(images))], images[:, None]


def write_scores(path, ids, scores, threshold):
    def write(temporary):
        with open(temporary, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["id", "score", "is_anomaly"])
            writer.writerows((name, f"{score:.4f}", int(score > threshold)) for name, score in zip(ids, scores))
    runs.atomic_write(path, write)


# ----- figures -----

def plot_histograms(path, scores, kinds, types, threshold, score_name):
    """Normal digits against each anomaly type. The axis is linear near 0 and logarithmic beyond (arcsinh spacing):
    scores like ``combined`` can be negative, and the anomalies' span orders of magnitude."""
    bins = np.sinh(np.linspace(np.arcsinh(scores.min()), np.arcsinh(scores.max() * 1.01), 80))
    rows = -(-len(types) // 4)
    figure, all_axes = plt.subplots(rows, 4, figsize=(16, 3.2 * rows + 0.4), sharex=True, squeeze=False)
    for axes in all_axes.flat[len(types):]:
        axes.remove()
    for axes, kind in zip(all_axes.flat, types):
        name = f"{kind.replace('_', ' ')} ({group_of(kind).replace('_', '-')})"
        # Each group's share of images per bin: densities would shrink the wide bins of the log axis to nothing.
        for group, colour, label in [("normal", "tab:blue", "normal test digits"), (kind, "tab:red", name)]:
            chosen = scores[kinds == group]
            axes.hist(chosen, bins, weights=np.full(len(chosen), 1 / len(chosen)), alpha=0.6, color=colour,
                      histtype="stepfilled",  # one polygon, not 80 bars: half the drawing time
                      label=label)
        axes.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3g}")
        axes.set_xscale("symlog", linthresh=1)
        axes.set(title=name, xlabel=f"{score_name} score (log scale beyond +-1)", ylabel="share of images per bin")
        axes.tick_params(labelbottom=True)
        axes.legend(fontsize=7)
    figure.suptitle(f"Anomaly scores ({score_name}) of normal MNIST test digits against each anomaly type")
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.3 / (3.2 * rows + 0.4)))  # room for the title above the top row
    plots.save_figure(figure, path)


def plot_roc(path, scores, kinds, types, per_type, score_name):
    """One panel per group of types, so that the held-out curves are read apart from the ones tuned on."""
    groups = [group for group in ("development", "held_out") if any(group_of(kind) == group for kind in types)]
    figure, all_axes = plt.subplots(1, len(groups), figsize=(6.5 * len(groups), 5.5), squeeze=False)
    normal = kinds == "normal"
    for axes, group in zip(all_axes[0], groups):
        in_group = [kind for kind in types if group_of(kind) == group]
        for kind, colour in zip(in_group, plt.cm.tab20(np.arange(len(in_group)) % 20)):  # 15 distinct colours
            chosen = normal | (kinds == kind)
            fpr, tpr, _ = roc_curve(kinds[chosen] == kind, scores[chosen])
            axes.plot(fpr, tpr, color=colour, label=f"{kind.replace('_', ' ')} (AUROC {per_type[kind]['auroc']:.4f})")
        # A log x-axis: at AUROCs near 1 everything that differs happens at false-positive rates below 10%.
        axes.set(xscale="log", xlim=(1 / normal.sum(), 1), ylim=(0, 1.01),
                 xlabel="false-positive rate (normal test digits flagged, log scale)",
                 ylabel="true-positive rate (anomalies flagged)",
                 title=f"{group.replace('_', '-')} types ({score_name})")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, loc="lower right")
    plots.save_figure(figure, path)


@torch.no_grad()
def plot_gallery(path, model, grey_levels, images, scores, kinds, threshold, weakest, per_row=8):
    """The highest-scoring normal digits and the best-hidden images of the weakest type, each above its
    reconstruction and its map of -log p(x_ij | context) under the grey-level model, the per-pixel terms of
    grey_levels and stroke_texture: where the detector sees something wrong, and where it does not."""
    normal, of_kind = np.flatnonzero(kinds == "normal"), np.flatnonzero(kinds == weakest)
    sections = [(f"highest-scoring normal\ndigits ({(scores[normal] > threshold).sum()} of {len(normal)} "
                 f"flagged)", normal[np.argsort(-scores[normal])][:per_row]),
                (f"{weakest.replace('_', ' ')}: best hidden\n({(scores[of_kind] <= threshold).sum()} of "
                 f"{len(of_kind)} missed)", of_kind[np.argsort(scores[of_kind])][:per_row])]
    error_top = 8.0  # nats: the colour scale's top; a clean digit's pixels stay below about 4
    figure, all_axes = plt.subplots(3 * len(sections), 1, figsize=(0.62 * per_row + 3.5, 0.85 * 3 * len(sections)))
    for index, (label, picks) in enumerate(sections):
        x = images[torch.as_tensor(picks, device=images.device)]
        logits = model.decode(model.encode(x)[0])
        pixel_nll = -grey_levels[grey_level_context(x, logits), grey_level(x)]
        picked_scores = ", ".join(f"{score:.3g}" for score in scores[picks])
        rows = [(f"{label}\nscores {picked_scores}", x, "gray", 1.0),
                ("reconstruction", torch.sigmoid(logits), "gray", 1.0),
                ("-log p per pixel\n(grey-level model)", pixel_nll, "magma", error_top)]
        for axes, (name, pictures, colours, top) in zip(all_axes[3 * index:3 * index + 3], rows):
            # The white gaps between tiles are masked out, so that they do not read as the error scale's top.
            gaps = plots.tile(torch.zeros_like(pictures), per_row) > 0
            shown = axes.imshow(np.ma.masked_where(gaps, plots.tile(pictures / top, per_row) * top), cmap=colours,
                                vmin=0, vmax=top, interpolation="nearest")
            axes.set_xticks([])
            axes.set_yticks([])
            axes.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    # One colour bar for every error map, beside the whole figure, so that all rows keep the same width.
    figure.colorbar(shown, ax=list(all_axes), fraction=0.02, pad=0.01, label="-log p per pixel (nats)")
    all_axes[0].set_title(f"Threshold {threshold:.3g}: inputs, their reconstructions and where they are unlikely")
    plots.save_figure(figure, path)


# ----- the one-class benchmark -----

def one_class_benchmark(cfg, device, out, log=print):
    """Per digit K: a VAE trained on K's training images only, scored on the whole test set (K normal, the other
    nine anomalous): the protocol of Deep SVDD (Ruff et al. 2018) and GeoTrans (Golan & El-Yaniv 2018)."""
    digits = list(range(10)) if cfg.normal_digit == "all" else [int(cfg.normal_digit)]
    train_images, train_labels = data.load_mnist(cfg.data_dir, train=True, device=device)
    test_images, test_labels = data.load_mnist(cfg.data_dir, train=False, device=device)
    recipe = cli.defaults(vae.SETTINGS)
    recipe["epochs"] = cfg.one_class_epochs
    x_test = data.to_unit_range(test_images)
    results = {}
    for digit in digits:
        timer = runs.Timer(device)
        model, _ = vae.train_vae(SimpleNamespace(**recipe, seed=cfg.seed, resume=False),
                                 train_images[train_labels == digit], test_images[test_labels == digit], device,
                                 out / "one_class" / f"digit_{digit}" / "checkpoint.pt", log=lambda _: None)
        if not distributed.is_main():
            continue  # under torchrun the other processes help train; rank 0 scores
        normal_train = data.to_unit_range(train_images[train_labels == digit][:GREY_LEVEL_DIGITS])
        scores = score_images(model, x_test, fit_grey_levels(model, normal_train), seed=cfg.seed,
                              iw_samples=cfg.iw_samples)
        anomalous = (test_labels != digit).cpu().numpy()
        results[digit] = {f"auroc_{name}": 100 * float(roc_auc_score(anomalous, values))
                          for name, values in scores.items()}
        results[digit]["seconds"] = timer.elapsed()
        log(f"digit {digit}: " + "  ".join(f"{name} {value:.2f}" for name, value in results[digit].items()))
    if not distributed.is_main():
        return None
    columns = list(results[digits[0]])
    summary = {"digits": results, "epochs": cfg.one_class_epochs,
               "mean": {name: float(np.mean([row[name] for row in results.values()])) for name in columns}}
    print(f"{'digit':>6s}" + "".join(f"{name:>22s}" for name in columns))
    for digit, row in results.items():
        print(f"{digit:>6d}" + "".join(f"{row[name]:22.2f}" for name in columns))
    print(f"{'mean':>6s}" + "".join(f"{summary['mean'][name]:22.2f}" for name in columns))
    return summary


# ----- main -----

def print_table(per_type, overall):
    header = ("type", "group", "threshold", "TP", "FP", "TN", "FN", "precision", "recall", "F1", "AUROC", "AUPRC")
    print(f"{header[0]:16s}{header[1]:>12s}" + "".join(f"{name:>10s}" for name in header[2:]))
    for name, row in [*per_type.items(), ("overall", overall)]:
        group = group_of(name) if name != "overall" else ""
        print(f"{name:16s}{group:>12s}{row['threshold']:10.3g}{row['tp']:10d}{row['fp']:10d}{row['tn']:10d}"
              f"{row['fn']:10d}{row['precision']:10.4f}{row['recall']:10.4f}{row['f1']:10.4f}{row['auroc']:10.4f}"
              f"{row['auprc']:10.4f}")


def summarise_groups(auroc_by_type):
    """Mean and lowest AUROC, and the weakest type, of each group present in ``{type: AUROC}``."""
    summary = {}
    for group in ("development", "held_out"):
        values = {kind: auroc for kind, auroc in auroc_by_type.items() if group_of(kind) == group}
        if values:
            weakest = min(values, key=values.get)
            summary[group] = {"mean_auroc": float(np.mean(list(values.values()))), "min_auroc": values[weakest],
                              "weakest": weakest, "types": len(values)}
    return summary


def main(argv=None):
    cfg = cli.parse(SETTINGS, __doc__, argv)
    if cfg.anomaly_score == "iw_nll" and not cfg.iw_samples:
        raise cli.UserError("--anomaly-score iw_nll needs --iw-samples N (N >= 1)")
    types = parse_corruptions(cfg.corruptions)
    user_images = load_user_images(cfg.score) if cfg.score else None  # bad input stops here, before any work
    device = runs.pick_device(cfg.device)
    out = runs.output_folder(__file__, cfg.out_dir)
    runs.write_json(out / "config.json", vars(cfg))
    generator = runs.seed_everything(cfg.seed)
    timer = runs.Timer(device)

    if cfg.normal_digit:
        summary = one_class_benchmark(cfg, device, out)
        runs.write_json(out / "one_class.json", summary)
        print(f"wrote {out}/")
        return summary

    model, checkpoint = vae.load_or_train_vae(cfg.vae_checkpoint, cfg.data_dir, device, cfg.seed)
    if not distributed.is_main():
        return None  # under torchrun: the other processes' part was training the VAE, if it was absent
    vae_saw_validation = saw_validation_images(checkpoint)
    detector = calibrate(cfg, model, device)
    threshold, val_scores = detector.threshold, detector.validation_scores
    if user_images:
        ids, images = user_images
        scores = detector.scores(images.to(device))[cfg.anomaly_score]
        write_scores(out / "scores.csv", ids, scores, threshold)
        flagged = int((scores > threshold).sum())
        print(f"{flagged} of {len(ids)} images above the threshold {threshold:.3g} ({cfg.anomaly_score}, "
              f"{cfg.percentile}th percentile of {vae.VALIDATION_SIZE} normal validation digits)\n"
              f"wrote {out}/scores.csv")
        return {"threshold": threshold, "num_images": len(ids), "num_anomalies": flagged}

    if cfg.benchmark:
        all_scores, kinds = benchmark_scores(cfg, types, detector, device)
    else:
        images, kinds = build_mix(cfg, types, device, generator)
        all_scores = detector.scores(images)
    scores, labels = all_scores[cfg.anomaly_score], kinds != "normal"
    normal = ~labels
    per_type = {kind: confusion(scores[normal | (kinds == kind)], labels[normal | (kinds == kind)], threshold)
                for kind in types}
    for kind, row in per_type.items():
        row["group"] = group_of(kind)
    overall = confusion(scores, labels, threshold)
    # Every score's AUROC per type on every run: the numbers behind the choice of the default score.
    auroc_by_score = {name: {kind: float(roc_auc_score(labels[normal | (kinds == kind)],
                                                       values[normal | (kinds == kind)])) for kind in types}
                      for name, values in all_scores.items()}
    groups = summarise_groups({kind: row["auroc"] for kind, row in per_type.items()})
    metrics = {
        "anomaly_score": cfg.anomaly_score, "percentile": cfg.percentile, "threshold": threshold,
        "benchmark": cfg.benchmark, "vae_saw_validation": vae_saw_validation,
        "val_false_positive_rate": float((val_scores[cfg.anomaly_score] > threshold).mean()),
        "test_false_positive_rate": overall["fp"] / int(normal.sum()),
        "num_normal": int(normal.sum()), "num_per_anomaly_type": int((kinds == types[0]).sum()),
        "groups": groups, "overall": overall, "per_type": per_type,
        "best_f1": confusion(scores, labels, best_f1_threshold(scores, labels)),
        "auroc_by_score": auroc_by_score,
        "groups_by_score": {name: summarise_groups(aurocs) for name, aurocs in auroc_by_score.items()},
        "corruptions": {kind: CORRUPTIONS.get(kind, "Fashion-MNIST test images") for kind in types},
    }
    plot_histograms(out / "histograms.png", scores, kinds, types, threshold, cfg.anomaly_score)
    plot_roc(out / "roc.png", scores, kinds, types, per_type, cfg.anomaly_score)
    if not cfg.benchmark:
        weakest = (groups.get("held_out") or groups["development"])["weakest"]
        plot_gallery(out / "gallery.png", model, detector.grey_levels, images, scores, kinds, threshold, weakest)
    metrics["seconds"] = timer.elapsed()
    runs.write_json(out / ("benchmark.json" if cfg.benchmark else "metrics.json"), metrics)

    print_table(per_type, overall)
    print(f"\nmean (lowest) AUROC per group of types, by score:\n{'score':16s}" +
          "".join(f"{group:>24s}" for group in groups))
    for name, summary in metrics["groups_by_score"].items():
        print(f"{name:16s}" + "".join(f"{summary[group]['mean_auroc']:12.4f} ({summary[group]['min_auroc']:.4f})"
                                      for group in groups))
    best = metrics["best_f1"]
    print(f"\nthreshold {threshold:.3g} = {cfg.percentile}th percentile of {vae.VALIDATION_SIZE} normal validation "
          f"digits ({cfg.anomaly_score}): {metrics['test_false_positive_rate']:.2%} of normal test digits flagged, "
          f"F1 {overall['f1']:.4f}; the best F1 in hindsight, {best['f1']:.4f}, is at {best['threshold']:.3g}")
    for group, summary in groups.items():
        print(f"{group}: mean AUROC {summary['mean_auroc']:.4f} over {summary['types']} types, lowest "
              f"{summary['min_auroc']:.4f} ({summary['weakest']})")
    print(f"{metrics['seconds']:.1f} s\nwrote {out}/")
    return metrics


if __name__ == "__main__":
    cli.run(main)
