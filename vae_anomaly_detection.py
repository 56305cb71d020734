"""Anomaly detection with the VAE: corrupted digits and Fashion-MNIST against clean MNIST, a calibrated threshold.

Scores every image by how badly vae_mnist.py's VAE explains it: the reconstruction error -log p(x | z = mu(x)) (the
default: the highest AUROC on every anomaly type, BENCHMARKS.md), the negative ELBO (reconstruction plus KL), or the
squared error per unit of ink (best for the one-class benchmark of --normal-digit). The threshold is a percentile of
the scores of held-out *normal* images, the last 5,000 of MNIST's training set, which vae_mnist.py does not train on;
the test set never sets it. The evaluation mix holds normal MNIST test digits, corrupted versions of other test
digits (seven corruption types, CORRUPTIONS below) and Fashion-MNIST test images; the report gives confusion counts,
precision, recall, F1, AUROC and AUPRC per type and overall.

    python vae_anomaly_detection.py                          # CPU: under half a minute once vae_mnist.py has run
    python vae_anomaly_detection.py --device cuda            # GPU: seconds
    python vae_anomaly_detection.py --score my_digits.npz    # scores.csv for your own images (or a folder of PNGs)
    python vae_anomaly_detection.py --normal-digit all       # one-class benchmark: ten VAEs, each on one digit

Writes to outputs/vae_anomaly_detection/: histograms.png, roc.png, gallery.png, metrics.json, config.json; with
--score, scores.csv; with --normal-digit, one_class.json and a checkpoint per digit under one_class/.
"""
import csv
import math
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve
from torchvision import io

from common import cli, data, plots, runs, vae

SETTINGS = {
    **cli.BASE_SETTINGS,
    **vae.CHECKPOINT_SETTINGS,
    "anomaly_score": ("reconstruction", "reconstruction | elbo | relative_error: -log p(x | z = mu(x)), the negative "
                                        "ELBO, or the squared error of the reconstruction, smoothed over about a "
                                        "pixel, per unit of ink"),
    "percentile": (99.0, "threshold = this percentile of the normal validation digits' scores, so about "
                         "(100 - it)%% of normal digits get flagged; at 99 every anomaly type keeps >= 98%% recall"),
    "anomaly_fraction": (0.5, "share of anomalies in the evaluation mix of 10,000 images, split evenly over the "
                              "seven corruption types and Fashion-MNIST"),
    "score": (None, "score your own images instead: a .npy / .npz array (N x 28 x 28 or N x 1 x 28 x 28, uint8 0..255 "
                    "or float 0..1) or a folder of 28 x 28 PNGs; writes scores.csv"),
    "normal_digit": ("", "one-class benchmark: train a VAE on this digit's training images only (0-9, or all)"),
    "one_class_epochs": (10, "training epochs of each one-class VAE (about 6,000 images each: 20 s a digit on 2 "
                             "CPU cores)"),
    "iw_samples": (0, "one-class benchmark: also score by an importance-weighted -log p(x) with this many samples"),
}
ANOMALY_SCORES = ("reconstruction", "elbo", "relative_error")
INK_OFFSET = 10.0  # relative_error's denominator is the image's ink (sum of pixel values, ~100 for a digit) + this
RESIDUAL_BLUR = 1.0  # relative_error smooths the residual x - x_hat with a Gaussian of this standard deviation (pixels)

# Corruption types and their strengths: each plainly visible to a person, none erasing the digit. The first seven
# are the ones the detector was first built on; the rest are MNIST-C's fifteen (Mu & Gilmer 2019), each at the one
# severity their benchmark uses. Their parameters are those of MNIST-C's corruptions.py as we recall it (no copy of
# it was at hand); those marked "approximation" follow its idea, not its exact code.
CORRUPTIONS = {
    "gaussian_noise": "additive N(0, 0.3^2) noise per pixel, clipped to [0, 1]",
    "salt_and_pepper": "10% of pixels set to black or white at random",
    "blur": "Gaussian blur with a standard deviation of 1.5 pixels",
    "occlusion": "a 10 x 10 block painted mid-grey (0.5) at a random place",
    "inversion": "black and white swapped: 1 - x",
    "stripes": "every fourth row (or column, at random) painted white",
    "pixelation": "7 x 7 blocks averaged: 4 x 4 resolution shown at 28 x 28",
    "shot_noise": "Poisson noise on the grey levels: poisson(60 x) / 60, so the background stays black",
    "impulse_noise": "27% of pixels set to black or white at random (salt and pepper)",
    "glass_blur": "blur 0.7, each pixel moved by up to 1 pixel twice, blur 0.7 (approximation: a gather, not swaps)",
    "motion_blur": "one-sided Gaussian smear (sigma 3 pixels, radius 15) at an angle in [-45, 45] degrees",
    "shear": "horizontal shear by +-0.4 (skimage's AffineTransform(shear=0.4)) about the centre",
    "scale": "shrunk to 70% about the centre",
    "rotate": "rotated by +-0.4 radians (23 degrees) about the centre",
    "brightness": "0.4 added to every grey level (the HSV value channel), clipped",
    "translate": "shifted by 3 pixels along each axis, each direction at random",
    "stripe": "the left and right quarters of the image in negative",
    "fog": "a plasma-fractal cloud of strength 0.75 added, the result scaled back into [0, 1]",
    "spatter": "drops of mid-grey (0.6) where smoothed noise exceeds 2 standard deviations (approximation)",
    "dotted_line": "a white line of dots, every second pixel, between two opposite edges",
    "zigzag": "a white zigzag of four segments across the image",
    "canny_edges": "the digit replaced by its Canny edges (sigma 1, thresholds 0.1 and 0.2)",
}
ANOMALY_TYPES = (*CORRUPTIONS, "fashion_mnist")


# ----- corruptions, applied on the images' device with a seeded generator -----

def gaussian_blur(images, sigma):
    """Blur N x 1 x H x W images with a Gaussian of standard deviation ``sigma`` pixels (taps out to 3 sigma)."""
    radius = max(1, int(3 * sigma))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, device=images.device) / sigma) ** 2)
    taps = taps / taps.sum()
    # A Gaussian is separable: a row pass, then a column pass; zero padding (MNIST's border is black anyway).
    rows = F.conv2d(images, taps.view(1, 1, 1, -1), padding=(0, radius))
    return F.conv2d(rows, taps.view(1, 1, -1, 1), padding=(radius, 0))


def warp(images, matrices, mode="bilinear", padding_mode="zeros"):
    """skimage.transform.warp(x, inverse_map=A) for a batch: output pixel (col, row) reads the input at
    A @ (col, row, 1), A one 2 x 3 matrix per image in pixel units; bilinear, black outside the image."""
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


def draw_polylines(n, vertices, spacing, device):
    """Masks n x 1 x 28 x 28 of the polylines through ``vertices`` (n x K x 2, (col, row) in pixels), one point every
    ``spacing`` pixels along each segment: 0.5 draws a solid line, 2 a dotted one."""
    mask = torch.zeros(n, 28 * 28, device=device)
    steps = torch.arange(0, 40, spacing, device=device)                                # 40 > the image's diagonal
    for start, end in zip(vertices.unbind(1)[:-1], vertices.unbind(1)[1:]):
        length = (end - start).norm(dim=1, keepdim=True).clamp(min=1e-6)               # n x 1
        t = (steps / length).clamp(max=1)                                              # n x S, the end repeated
        points = (start[:, None] + t[..., None] * (end - start)[:, None]).round().long().clamp(0, 27)
        mask.scatter_(1, points[..., 1] * 28 + points[..., 0], 1.0)
    return mask.view(n, 1, 28, 28)


def plasma_fractal(n, generator, device, size=32, decay=2.5):
    """n greyscale plasma fractals in [0, 1], size x size: the diamond-square algorithm of ImageNet-C's fog
    (Hendrycks & Dietterich 2019), vectorised over the batch (their random draws, in another order)."""
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


def canny(images, sigma=1.0, low=0.1, high=0.2):
    """Canny edges (Canny 1986) as skimage.feature.canny draws them with its defaults: a Gaussian of ``sigma``,
    Sobel gradients, thinning to the local maxima along the gradient, and hysteresis between the thresholds ``low``
    and ``high`` on the gradient magnitude (edges above ``low`` kept where they connect to one above ``high``)."""
    smooth = gaussian_blur(images, sigma)
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=images.device)
    gx = F.conv2d(smooth, sobel.view(1, 1, 3, 3), padding=1)
    gy = F.conv2d(smooth, sobel.t().reshape(1, 1, 3, 3), padding=1)
    magnitude = torch.hypot(gx, gy)
    # Non-maximum suppression: keep a pixel only if it is no smaller than both neighbours along the gradient,
    # the direction rounded to one of four (0, 45, 90, 135 degrees).
    direction = (torch.atan2(gy, gx) / (math.pi / 4)).round().long() % 4
    padded = F.pad(magnitude, (1, 1, 1, 1))
    keep = torch.zeros_like(magnitude, dtype=torch.bool)
    for d, (dr, dc) in enumerate([(0, 1), (1, 1), (1, 0), (1, -1)]):
        ahead = padded[..., 1 + dr:29 + dr, 1 + dc:29 + dc]
        behind = padded[..., 1 - dr:29 - dr, 1 - dc:29 - dc]
        keep |= (direction == d) & (magnitude >= ahead) & (magnitude >= behind)
    weak = keep & (magnitude > low)
    edges = weak & (magnitude > high)
    while True:  # hysteresis: grow the strong edges along the weak ones until nothing changes
        grown = weak & (F.max_pool2d(edges.float(), 3, stride=1, padding=1) > 0)
        if torch.equal(grown, edges):
            return edges.float()
        edges = grown


def corrupt(images, kind, generator):
    """Corrupt float images in [0, 1] (N x 1 x 28 x 28) by ``kind``; random choices come from ``generator``."""
    n, device = len(images), images.device

    def uniform(*shape):
        return torch.rand(*shape, generator=generator, device=device)

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

    # MNIST-C (Mu & Gilmer 2019), each at the one severity their benchmark uses.
    if kind == "shot_noise":
        return (torch.poisson(images * 60, generator=generator) / 60).clamp(0, 1)
    if kind == "impulse_noise":
        hit = uniform(images.shape) < 0.27
        return torch.where(hit, (uniform(images.shape) < 0.5).float(), images)
    if kind == "glass_blur":
        # ImageNet-C's glass blur at (sigma 0.7, max_delta 1, 2 iterations): blur, shuffle each pixel with a
        # neighbour at most max_delta away, blur again. Here each pixel takes the value of a random neighbour (a
        # gather) instead of their sequence of swaps: the same local shuffle, not the same images.
        x = gaussian_blur(images, 0.7)
        rows = torch.arange(28, device=device).view(1, 28, 1)
        cols = torch.arange(28, device=device).view(1, 1, 28)
        for _ in range(2):
            dr, dc = (uniform(2, n, 28, 28) * 3).long() - 1                              # each -1, 0 or 1
            source = (rows + dr).clamp(0, 27) * 28 + (cols + dc).clamp(0, 27)
            x = x.flatten(1).gather(1, source.flatten(1)).view(n, 1, 28, 28)
        return gaussian_blur(x, 0.7).clamp(0, 1)
    if kind == "motion_blur":
        # ImageNet-C's motion blur, radius 15 and sigma 3, at an angle uniform in [-45, 45] degrees: a one-sided
        # Gaussian average of the image shifted by whole pixels along that direction (edges repeated).
        angle = torch.deg2rad(uniform(n) * 90 - 45)
        offsets = torch.arange(2 * 15 + 1, device=device, dtype=images.dtype)
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
        # skimage's AffineTransform(shear=c) or (rotation=c), c = +-0.4 (radians) at random, centre fixed.
        c = 0.4 * random_sign(n, generator, device)
        if kind == "shear":
            linear = torch.stack([torch.ones_like(c), -torch.sin(c), torch.zeros_like(c), torch.cos(c)], dim=1)
        else:
            linear = torch.stack([torch.cos(c), -torch.sin(c), torch.sin(c), torch.cos(c)], dim=1)
        return warp(images, centred_affine(linear.view(n, 2, 2))).clamp(0, 1)
    if kind == "scale":
        # Read the input at 1/0.7 times the distance from the centre: the digit shrinks to 70% of its size.
        linear = torch.eye(2, device=device).expand(n, 2, 2) / 0.7
        return warp(images, centred_affine(linear)).clamp(0, 1)
    if kind == "translate":
        # 3 pixels along each axis, each direction at random: MNIST centres its digits by their centre of mass.
        shift = 3 * torch.stack([random_sign(n, generator, device), random_sign(n, generator, device)], dim=1)
        matrices = torch.cat([torch.eye(2, device=device).expand(n, 2, 2), shift[..., None]], dim=2)
        return warp(images, matrices)
    if kind == "brightness":
        # ImageNet-C adds c to the HSV value channel, which for a grey image is the grey level itself.
        return (images + 0.4).clamp(0, 1)
    if kind == "stripe":
        # The left and right quarters of the image in negative.
        band = (torch.arange(28, device=device) < 7) | (torch.arange(28, device=device) >= 21)
        return torch.where(band.view(1, 1, 1, 28), 1 - images, images)
    if kind == "fog":
        # ImageNet-C's fog at (0.75, 2.5): plasma fractal cloud added, then scaled back by max / (max + 0.75).
        top = images.amax((1, 2, 3), keepdim=True)
        cloud = plasma_fractal(n, generator, device)[:, None, :28, :28]
        return ((images + 0.75 * cloud) * top / (top + 0.75)).clamp(0, 1)
    if kind == "spatter":
        # Drops of grey: a smoothed noise field (1 pixel), thresholded two standard deviations above its mean; an
        # approximation of ImageNet-C's liquid spatter (its mud colour and motion smear left out).
        field = gaussian_blur(torch.randn(images.shape, generator=generator, device=device), 1.0)
        field = (field - field.mean((2, 3), keepdim=True)) / field.std((2, 3), keepdim=True)
        return torch.where(field > 2.0, 0.6, images)
    if kind == "dotted_line":
        # A line between two random points on opposite edges, every second pixel of it white.
        ends = uniform(n, 2) * 27
        vertices = torch.stack([torch.stack([torch.zeros(n, device=device), ends[:, 0]], 1),
                                torch.stack([torch.full((n,), 27.0, device=device), ends[:, 1]], 1)], dim=1)
        vertical = uniform(n) < 0.5
        vertices = torch.where(vertical[:, None, None], vertices.flip(2), vertices)
        return torch.maximum(images, draw_polylines(n, vertices, 2.0, device))
    if kind == "zigzag":
        # A white zigzag of four segments across the image: columns evenly spaced, rows alternating between two
        # random heights; vertical for half of the images.
        cols = torch.linspace(2, 25, 5, device=device).expand(n, 5)
        heights = uniform(n, 2) * 23 + 2
        rows = torch.where(torch.arange(5, device=device) % 2 == 0, heights[:, :1], heights[:, 1:])
        vertices = torch.stack([cols, rows], dim=2)
        vertical = uniform(n) < 0.5
        vertices = torch.where(vertical[:, None, None], vertices.flip(2), vertices)
        return torch.maximum(images, draw_polylines(n, vertices, 0.5, device))
    if kind == "canny_edges":
        return canny(images)
    raise ValueError(kind)


# ----- scores -----

@torch.no_grad()
def score_images(model, images, batch_size=1000, seed=0):
    """Three scores per image: the reconstruction error -log p(x | z = mu(x)) and the negative ELBO (one z ~ q(z|x)),
    both in nats, and the relative error |blur(x - x_hat)|^2 / (sum(x) + INK_OFFSET), x_hat the pixel means at
    z = mu(x), blur a Gaussian of RESIDUAL_BLUR pixels.

    Likelihoods favour simple images: a VAE trained on eights gives a one, with few lit pixels, a lower -log p(x)
    than most eights get. Dividing the squared error by the image's ink removes most of that, and smoothing the
    residual first discounts what every reconstruction gets slightly wrong, the exact edges of the strokes, while
    keeping what a wrong digit gets wrong, whole strokes (one-class AUROC for digit 8: 80 with the ELBO, 95 with the
    plain squared error per ink, 96.7 smoothed; BENCHMARKS.md). ``images`` are floats in [0, 1]; the ELBO's sample
    is seeded, so the same images always get the same scores.
    """
    model.eval()
    runs.seed_everything(seed)
    scores = {name: [] for name in ANOMALY_SCORES}
    for x in images.split(batch_size):
        logits = model.decode(model.encode(x)[0])
        scores["reconstruction"].append(F.binary_cross_entropy_with_logits(logits, x, reduction="none")
                                        .flatten(1).sum(1))
        sampled_reconstruction, kl = vae.negative_elbo(model, x)
        scores["elbo"].append(sampled_reconstruction + kl)
        smoothed_error = gaussian_blur(torch.sigmoid(logits) - x, RESIDUAL_BLUR).pow(2).flatten(1).sum(1)
        scores["relative_error"].append(smoothed_error / (x.flatten(1).sum(1) + INK_OFFSET))
    return {name: torch.cat(values).cpu().numpy() for name, values in scores.items()}


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


# ----- the evaluation mix and the threshold -----

def build_mix(cfg, device, generator):
    """Normal test digits, corrupted *other* test digits and Fashion-MNIST test images, as floats in [0, 1].

    Returns (images, kinds), where kinds[i] is "normal" or one of ANOMALY_TYPES.
    """
    test_images, _ = data.load_mnist(cfg.data_dir, train=False, device=device)
    fashion, _ = data.load_mnist(cfg.data_dir, train=False, device=device, name="fashion-mnist")
    total = len(test_images)
    per_type = round(cfg.anomaly_fraction * total) // len(ANOMALY_TYPES)
    num_normal = total - per_type * len(ANOMALY_TYPES)
    if per_type == 0:
        raise cli.UserError(f"--anomaly-fraction {cfg.anomaly_fraction} leaves no anomaly of some of the "
                            f"{len(ANOMALY_TYPES)} types among {total} images: raise it")
    order = torch.randperm(total, generator=generator).to(device)
    clean = data.to_unit_range(test_images[order])
    parts, kinds = [clean[:num_normal]], ["normal"] * num_normal
    device_generator = torch.Generator(device=device).manual_seed(cfg.seed)
    start = num_normal
    for kind in CORRUPTIONS:
        parts.append(corrupt(clean[start:start + per_type], kind, device_generator))
        kinds += [kind] * per_type
        start += per_type
    pick = torch.randperm(len(fashion), generator=generator)[:per_type].to(device)
    parts.append(data.to_unit_range(fashion[pick]))
    kinds += ["fashion_mnist"] * per_type
    return torch.cat(parts), np.array(kinds)


def calibrate(cfg, model, device):
    """Scores of the normal validation digits (the last 5,000 of MNIST's training set) and the threshold at
    --percentile of them. No test image is involved."""
    val_images, _ = vae.load_validation_split(cfg.data_dir, device)
    val_scores = score_images(model, data.to_unit_range(val_images), seed=cfg.seed)
    return val_scores, float(np.percentile(val_scores[cfg.anomaly_score], cfg.percentile))


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
    except (OSError, ValueError, EOFError) as error:
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

def plot_histograms(path, scores, kinds, threshold, score_name):
    """Normal digits against each anomaly type, on a log axis: the anomalies' scores span two orders of magnitude."""
    bins = np.geomspace(max(scores.min(), 1e-3), scores.max() * 1.01, 80)
    figure, all_axes = plt.subplots(2, 4, figsize=(16, 6.5), sharex=True)
    for axes, kind in zip(all_axes.flat, ANOMALY_TYPES):
        name = kind.replace("_", " ")
        # Each group's share of images per bin: densities would shrink the wide bins of the log axis to nothing.
        for group, colour, label in [("normal", "tab:blue", "normal test digits"), (kind, "tab:red", name)]:
            chosen = scores[kinds == group]
            axes.hist(chosen, bins, weights=np.full(len(chosen), 1 / len(chosen)), alpha=0.6, color=colour,
                      label=label)
        axes.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.0f}")
        axes.set(xscale="log", title=name, xlabel=f"{score_name} score (log scale)",
                 ylabel="share of images per bin")
        axes.legend(fontsize=7)
    figure.suptitle(f"Anomaly scores ({score_name}) of normal MNIST test digits against each anomaly type")
    figure.tight_layout()
    plots.save_figure(figure, path)


def plot_roc(path, scores, kinds, per_type, score_name):
    figure, axes = plt.subplots(figsize=(6.5, 5.5))
    normal = kinds == "normal"
    for kind in ANOMALY_TYPES:
        chosen = normal | (kinds == kind)
        fpr, tpr, _ = roc_curve(kinds[chosen] == kind, scores[chosen])
        axes.plot(fpr, tpr, label=f"{kind.replace('_', ' ')} (AUROC {per_type[kind]['auroc']:.4f})")
    # A log x-axis: at AUROCs near 1 everything that differs happens at false-positive rates below 10%.
    axes.set(xscale="log", xlim=(1 / normal.sum(), 1), ylim=(0, 1.01),
             xlabel="false-positive rate (normal test digits flagged, log scale)",
             ylabel="true-positive rate (anomalies flagged)", title=f"ROC curves by anomaly type ({score_name})")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    plots.save_figure(figure, path)


@torch.no_grad()
def plot_gallery(path, model, images, scores, kinds, threshold, per_row=10):
    """False positives, missed anomalies and typical detections, each row above its reconstructions."""
    normal, flagged = kinds == "normal", scores > threshold
    false_positives = np.flatnonzero(normal & flagged)
    false_positives = false_positives[np.argsort(-scores[false_positives])][:per_row]   # the worst first
    missed = np.flatnonzero(~normal & ~flagged)
    missed = missed[np.argsort(scores[missed])][:per_row]                                # the best hidden first
    # Typical detections: per anomaly type, the detected image with the median score of its type's detections.
    typical = []
    for kind in ANOMALY_TYPES:
        detected = np.flatnonzero((kinds == kind) & flagged)
        if len(detected):
            typical.append(detected[np.argsort(scores[detected])[len(detected) // 2]])
    rows = []
    for label, picks in [("false positives", false_positives), ("missed anomalies", missed),
                         ("typical detections", np.array(typical, dtype=int))]:
        if len(picks) == 0:
            continue
        x = images[torch.as_tensor(picks, device=images.device)]
        rows += [(f"{label}\n({len(picks)} shown)", x),
                 ("reconstruction", torch.sigmoid(model.decode(model.encode(x)[0])))]
    plots.save_labelled_rows(path, rows, "Each row of inputs above the VAE's reconstructions of them "
                                         "(typical detections: one per anomaly type, in table order)")


# ----- the one-class benchmark -----

def one_class_benchmark(cfg, device, out, log=print):
    """Per digit K: a VAE trained on K's training images only, scored on the whole test set (K normal, the other
    nine anomalous): the protocol of Deep SVDD (Ruff et al. 2018) and GeoTrans (Golan & El-Yaniv 2018)."""
    digits = list(range(10)) if cfg.normal_digit == "all" else [int(cfg.normal_digit)]
    train_images, train_labels = data.load_mnist(cfg.data_dir, train=True, device=device)
    test_images, test_labels = data.load_mnist(cfg.data_dir, train=False, device=device)
    recipe = {name: default for name, (default, _) in vae.SETTINGS.items()}
    recipe["epochs"] = cfg.one_class_epochs
    x_test = data.to_unit_range(test_images)
    results = {}
    for digit in digits:
        timer = runs.Timer(device)
        model, _ = vae.train_vae(SimpleNamespace(**recipe, seed=cfg.seed, resume=False),
                                 train_images[train_labels == digit], test_images[test_labels == digit], device,
                                 out / "one_class" / f"digit_{digit}" / "checkpoint.pt", log=lambda _: None)
        scores = score_images(model, x_test, seed=cfg.seed)
        if cfg.iw_samples:
            runs.seed_everything(cfg.seed)
            scores["iw_nll"] = vae.importance_weighted_nll_per_image(model, x_test, cfg.iw_samples).cpu().numpy()
        anomalous = (test_labels != digit).cpu().numpy()
        results[digit] = {f"auroc_{name}": 100 * float(roc_auc_score(anomalous, values))
                          for name, values in scores.items()}
        results[digit]["seconds"] = timer.elapsed()
        log(f"digit {digit}: " + "  ".join(f"{name} {value:.2f}" for name, value in results[digit].items()))
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
    header = ("type", "threshold", "TP", "FP", "TN", "FN", "precision", "recall", "F1", "AUROC", "AUPRC")
    print(f"{header[0]:16s}" + "".join(f"{name:>10s}" for name in header[1:]))
    for name, row in [*per_type.items(), ("overall", overall)]:
        print(f"{name:16s}{row['threshold']:10.1f}{row['tp']:10d}{row['fp']:10d}{row['tn']:10d}{row['fn']:10d}"
              f"{row['precision']:10.4f}{row['recall']:10.4f}{row['f1']:10.4f}{row['auroc']:10.4f}"
              f"{row['auprc']:10.4f}")


def main(argv=None):
    cfg = cli.parse(SETTINGS, __doc__, argv)
    if cfg.anomaly_score not in ANOMALY_SCORES:
        raise cli.UserError(f"--anomaly-score must be one of {', '.join(ANOMALY_SCORES)}, got {cfg.anomaly_score!r}")
    if not 0 < cfg.percentile < 100:
        raise cli.UserError(f"--percentile must be between 0 and 100, got {cfg.percentile}")
    if not 0 < cfg.anomaly_fraction < 1:
        raise cli.UserError(f"--anomaly-fraction must be between 0 and 1, got {cfg.anomaly_fraction}")
    if cfg.normal_digit not in ("", "all", *map(str, range(10))):
        raise cli.UserError(f"--normal-digit must be a digit 0-9 or all, got {cfg.normal_digit!r}")
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

    vae.load_or_train_vae(cfg.vae_checkpoint, cfg.data_dir, device, cfg.seed)
    model, checkpoint = vae.load_vae(cfg.vae_checkpoint, device)  # the checkpoint says which images it trained on
    vae_saw_validation = saw_validation_images(checkpoint)
    val_scores, threshold = calibrate(cfg, model, device)
    if user_images:
        ids, images = user_images
        scores = score_images(model, images.to(device), seed=cfg.seed)[cfg.anomaly_score]
        write_scores(out / "scores.csv", ids, scores, threshold)
        flagged = int((scores > threshold).sum())
        print(f"{flagged} of {len(ids)} images above the threshold {threshold:.1f} ({cfg.anomaly_score}, "
              f"{cfg.percentile}th percentile of {vae.VALIDATION_SIZE} normal validation digits)\n"
              f"wrote {out}/scores.csv")
        return {"threshold": threshold, "num_images": len(ids), "num_anomalies": flagged}

    images, kinds = build_mix(cfg, device, generator)
    all_scores = score_images(model, images, seed=cfg.seed)
    scores, labels = all_scores[cfg.anomaly_score], kinds != "normal"
    normal = ~labels
    per_type = {kind: confusion(scores[normal | (kinds == kind)], labels[normal | (kinds == kind)], threshold)
                for kind in ANOMALY_TYPES}
    overall = confusion(scores, labels, threshold)
    metrics = {
        "anomaly_score": cfg.anomaly_score, "percentile": cfg.percentile, "threshold": threshold,
        "vae_saw_validation": vae_saw_validation,
        "val_false_positive_rate": float((val_scores[cfg.anomaly_score] > threshold).mean()),
        "test_false_positive_rate": overall["fp"] / int(normal.sum()),
        "num_normal": int(normal.sum()), "num_per_anomaly_type": int((kinds == ANOMALY_TYPES[0]).sum()),
        "overall": overall, "per_type": per_type,
        "best_f1": confusion(scores, labels, best_f1_threshold(scores, labels)),
        # Both scores' AUROCs on every run: the numbers behind the choice of the default score.
        "auroc_by_score": {name: {kind: float(roc_auc_score(labels[normal | (kinds == kind)],
                                                            values[normal | (kinds == kind)]))
                                  for kind in ANOMALY_TYPES} for name, values in all_scores.items()},
        "corruptions": CORRUPTIONS,
    }
    plot_histograms(out / "histograms.png", scores, kinds, threshold, cfg.anomaly_score)
    plot_roc(out / "roc.png", scores, kinds, per_type, cfg.anomaly_score)
    plot_gallery(out / "gallery.png", model, images, scores, kinds, threshold)
    metrics["seconds"] = timer.elapsed()
    runs.write_json(out / "metrics.json", metrics)

    print_table(per_type, overall)
    best = metrics["best_f1"]
    print(f"threshold {threshold:.1f} = {cfg.percentile}th percentile of {vae.VALIDATION_SIZE} normal validation "
          f"digits ({cfg.anomaly_score}): {metrics['test_false_positive_rate']:.2%} of normal test digits flagged, "
          f"F1 {overall['f1']:.4f}; the best F1 in hindsight, {best['f1']:.4f}, is at {best['threshold']:.1f}")
    print(f"{metrics['seconds']:.1f} s\nwrote {out}/")
    return metrics


if __name__ == "__main__":
    cli.run(main)
