"""Anomaly scores of MNIST digits under a trained VAE, one small function per score in the SCORES table, one value
per image, higher = more anomalous, from a ``Batch`` (x_hat below: the sigmoid of its logits, the pixel means); and
the counts that judge a threshold on a score.
"""
import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score
from torchvision import io

from common import data, seeds, vae
from common.image_operations import gaussian_blur

INK_OFFSET = 10.0  # relative_error's denominator is the image's ink (sum of pixel values, ~100 for a digit) + this
RESIDUAL_BLUR = 1.0  # relative_error smooths the residual x - x_hat with a Gaussian of this standard deviation (pixels)
GREY_LEVELS = 256  # the grey-level model's values: MNIST's 8-bit levels
CONTEXT_BINS = (16, 8)  # the grey-level model's context: a pixel's darkest neighbour, the decoder's mean there
# The combinations (``combine``): likelihood, the VAE's reconstruction error and the grey-level model alone; combined
# adds geometry, MNIST's size and centring, a check that uses no VAE.
COMBINATIONS = {"likelihood": ("reconstruction", "grey_levels", "stroke_texture"),
                "combined": ("reconstruction", "geometry", "grey_levels", "stroke_texture")}
SCALE_PERCENTILE = 99  # combine maps each part's median on the validation digits to 0 and this percentile to 1


class Batch(NamedTuple):
    model: nn.Module
    x: torch.Tensor            # n x 1 x 28 x 28 in [0, 1]
    logits: torch.Tensor       # the decoder's at z = mu(x)
    grey_levels: torch.Tensor  # fit_grey_levels' table


# ----- the grey-level model -----

def neighbour_minimum(x):
    """Per pixel, the darkest of its four neighbours (black beyond the border)."""
    padded = F.pad(x, (1, 1, 1, 1))
    return torch.stack([padded[..., :-2, 1:-1], padded[..., 2:, 1:-1],
                        padded[..., 1:-1, :-2], padded[..., 1:-1, 2:]]).amin(0)


def grey_level_context(x, logits):
    """Each pixel's context for the grey-level model, as one index: its darkest neighbour and the decoder's mean."""
    darkest = (neighbour_minimum(x) * CONTEXT_BINS[0]).long().clamp(max=CONTEXT_BINS[0] - 1)
    mean = (torch.sigmoid(logits) * CONTEXT_BINS[1]).long().clamp(max=CONTEXT_BINS[1] - 1)
    return darkest * CONTEXT_BINS[1] + mean


def grey_level(x):
    return (x * (GREY_LEVELS - 1)).round().long()


def pixel_nll(x, logits, grey_levels):
    """-log p(x_ij | context) per pixel under the grey-level model, in nats (n x 1 x 28 x 28)."""
    return -grey_levels[grey_level_context(x, logits), grey_level(x)]


@torch.no_grad()
def fit_grey_levels(model, images, batch_size=1000):
    """log p(grey level | context) for every context, counted (add-0.01 smoothing) on the normal digits ``images``.
    The Bernoulli decoder is blind to noise that keeps the strokes' shape: grey is as likely inside a stroke, where a
    clean digit is white, as at its anti-aliased edge. A categorical over the 256 levels (PixelCNN's output, van den
    Oord et al. 2016) given each pixel's context sees it: inside a stroke every neighbour is bright."""
    cells = math.prod(CONTEXT_BINS) * GREY_LEVELS
    counts = torch.zeros(cells, device=images.device)
    for x in images.split(batch_size):
        logits = model.decode(model.encode(x)[0])
        counts += torch.bincount((grey_level_context(x, logits) * GREY_LEVELS + grey_level(x)).flatten(),
                                 minlength=cells)
    counts = counts.view(-1, GREY_LEVELS) + 0.01
    return (counts / counts.sum(1, keepdim=True)).log()


# ----- the scores -----

def reconstruction(batch):
    """-log p(x | z = mu(x)) under the Bernoulli decoder, in nats."""
    return F.binary_cross_entropy_with_logits(batch.logits, batch.x, reduction="none").flatten(1).sum(1)


def elbo(batch):
    """The negative ELBO for one z ~ q(z|x)."""
    sampled_reconstruction, kl = vae.negative_elbo(batch.model, batch.x)
    return sampled_reconstruction + kl


def relative_error(batch):
    """|blur(x - x_hat)|^2 / (sum(x) + INK_OFFSET), the one-class score. Likelihoods favour simple images (a VAE of
    eights gives a one a lower -log p(x) than most eights): dividing by the ink removes most of that. The blur
    discounts what every reconstruction gets slightly wrong, the strokes' exact edges, not a wrong digit's strokes."""
    x = batch.x
    smoothed_error = gaussian_blur(torch.sigmoid(batch.logits) - x, RESIDUAL_BLUR).pow(2).flatten(1).sum(1)
    return smoothed_error / (x.flatten(1).sum(1) + INK_OFFSET)


def grey_level_nll(batch):
    """-log p(x) under the grey-level model per unit of ink (pixels above 0.1), so that a digit with many strokes is
    not suspect for its edges alone."""
    ink = (batch.x > 0.1).flatten(1).sum(1)
    return pixel_nll(batch.x, batch.logits, batch.grey_levels).flatten(1).sum(1) / (ink + INK_OFFSET)


def stroke_texture(batch):
    """The grey-level model's -log p per pixel inside the strokes (all four neighbours above 0.5): shot noise."""
    inside = neighbour_minimum(batch.x) > 0.5
    return ((pixel_nll(batch.x, batch.logits, batch.grey_levels) * inside).flatten(1).sum(1) /
            (inside.flatten(1).sum(1) + INK_OFFSET))


def geometry(batch):
    """How far each image is from MNIST's normalisation (LeCun et al. 1998: scaled to fit a 20 x 20 box, centre of mass
    at pixel (14, 14)), in pixels: |the longer side of the ink's bounding box - 20| + the centre's distance."""
    x = batch.x
    ink = x[:, 0] > 0.25                                                                 # n x 28 x 28
    position = torch.arange(28, device=x.device)

    def extent(lit):  # n x 28: rows (or columns) holding ink -> how many from the first to the last, 0 if none
        first = torch.where(lit, position, 28).amin(1)
        return (torch.where(lit, position, -1).amax(1) - first + 1).clamp(min=0)

    side = torch.maximum(extent(ink.any(2)), extent(ink.any(1)))
    mass = x.sum((1, 2, 3)).clamp(min=1e-6)
    centre = torch.stack([(x.sum((1, 3)) * position).sum(1), (x.sum((1, 2)) * position).sum(1)], dim=1)
    return (side - 20).abs() + (centre / mass[:, None] - 14.0).norm(dim=1)


def complexity(batch):
    """Reconstruction in bits minus the length in bits of the image as a PNG at the strongest compression: Serra et
    al.'s (2020) correction of a likelihood for how simple an image is."""
    png_bits = [8.0 * len(io.encode_png(image, compression_level=9)) for image in data.to_uint8(batch.x)]
    return reconstruction(batch) / math.log(2) - torch.tensor(png_bits, device=batch.x.device)


SCORES = {"reconstruction": reconstruction, "elbo": elbo, "relative_error": relative_error,
          "grey_levels": grey_level_nll, "stroke_texture": stroke_texture, "geometry": geometry,
          "complexity": complexity}
ANOMALY_SCORES = (*COMBINATIONS, *SCORES)  # what --anomaly-score chooses from, with iw_nll


@torch.no_grad()
def score_images(model, images, grey_levels, batch_size=1000, seed=0, iw_samples=0):
    """Every score of SCORES for float ``images`` in [0, 1], as numpy arrays; with ``iw_samples``, also iw_nll, the
    importance-weighted -log p(x). The samples are seeded, so the same images always get the same scores."""
    model.eval()
    seeds.seed_everything(seed)
    scores = {name: [] for name in SCORES}
    for x in images.split(batch_size):
        batch = Batch(model, x, model.decode(model.encode(x)[0]), grey_levels)
        for name, score in SCORES.items():
            scores[name].append(score(batch))
    scores = {name: torch.cat(values).cpu().numpy() for name, values in scores.items()}
    if iw_samples:
        seeds.seed_everything(seed)
        scores["iw_nll"] = vae.importance_weighted_nll_per_image(model, images, iw_samples).cpu().numpy()
    return scores


def combine(scores, validation_scores):
    """Add the COMBINATIONS to ``scores``: each the largest of its parts, each rescaled so that its median over the
    normal validation digits (``validation_scores``) is 0 and its SCALE_PERCENTILE-th percentile 1. Scaled so, every
    part flags a like share of the normal digits; scaled by the standard deviation, the part with the heaviest upper
    tail would own the threshold (BENCHMARKS.md, "Anomaly score choices")."""
    scaled = {}
    for name in set().union(*COMBINATIONS.values()):
        median, top = np.percentile(validation_scores[name], [50, SCALE_PERCENTILE])
        scaled[name] = (scores[name] - median) / (top - median)
    return {**{combination: np.maximum.reduce([scaled[name] for name in parts])
               for combination, parts in COMBINATIONS.items()}, **scores}


# ----- judging a threshold -----

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


def binomial_interval(n, rate, level=0.95):
    """The central ``level`` interval (low, high) of a Binomial(n, rate) count: how many of n normal digits a
    threshold that keeps its promise of ``rate`` flags, but for chance."""
    k = np.arange(n + 1)
    log_choose = np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in k])
    pmf = np.exp(log_choose + k * math.log(rate) + (n - k) * math.log1p(-rate))  # 0 < rate < 1, as --percentile
    cdf, tail = np.cumsum(pmf), (1 - level) / 2
    # low: the first k whose P(K <= k) reaches the tail, so that P(K < low) < tail; high: the first k whose
    # P(K <= k) reaches 1 - tail, so that P(K > high) <= tail (a hair of slack for the sum's rounding).
    return int(np.searchsorted(cdf, tail * (1 - 1e-9))), int(min(np.searchsorted(cdf, (1 - tail) * (1 - 1e-12)), n))
