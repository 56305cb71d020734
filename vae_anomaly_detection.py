"""Anomaly detection with the VAE: corrupted, moved and foreign images against clean MNIST, with a threshold.

The assignment's detector first: vae_mnist.py's VAE scores every image by its reconstruction error, and a threshold on
it, a percentile of the scores of normal digits, calls an image anomalous. Beside it, every run reports the VAE's
negative ELBO, ``likelihood`` (the reconstruction error and a grey-level model of the VAE's reconstruction, no other
feature) and the default ``combined``, which adds ``geometry``, a check of MNIST's size and centring that uses no VAE
(DETECTORS; the other scores stay behind --anomaly-score). Each detector's threshold is the --percentile of its scores
on the validation digits: 10,000 of MNIST's training images, drawn at random once and for all, which vae_mnist.py does
not train on. They set everything; MNIST's test file never does. The evaluation mix holds normal test digits, corrupted
versions of other test digits (the seven original corruption types and MNIST-C's fifteen, common/corruptions.py) and
Fashion-MNIST test images, in two groups of types: choices are made on DEVELOPMENT, on the same mix built from the
validation digits (--evaluate-on development), and HELD_OUT is reported. The report gives, per detector, the confusion
counts at its threshold, precision, recall and AUROC, the false-positive rate against the 95% interval of its promise,
and recall and AUROC per type.

    python vae_anomaly_detection.py                          # CPU: about 25 s once vae_mnist.py has run
    python vae_anomaly_detection.py --device cuda            # GPU: seconds
    python vae_anomaly_detection.py --benchmark mnist-c      # MNIST-C's protocol: every type on all test digits
    python vae_anomaly_detection.py --corruptions held_out   # a mix of the held-out types only
    python vae_anomaly_detection.py --evaluate-on development  # the development mix, of validation digits
    python vae_anomaly_detection.py --score my_digits.npz    # scores.csv for your own images (or a folder of PNGs)
    python vae_anomaly_detection.py --normal-digit all       # one-class benchmark: ten VAEs, each on one digit

Writes to outputs/vae_anomaly_detection/: detectors.png, histograms_reconstruction.png, histograms.png, roc.png,
gallery.png, metrics.json, config.json; with --benchmark, benchmark.json and the same figures but the gallery; with
--score, scores.csv; with --normal-digit, one_class.json and a checkpoint per digit under one_class/.
"""
import csv
import math
from types import SimpleNamespace
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.colors import to_rgba
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve
from torch import nn
from torchvision import io

from common import cli, data, devices, distributed, files, plots, progress, run_folder, seeds, vae
from common.corruptions import corrupt, describe, group_of, parse_corruptions
from common.image_operations import gaussian_blur

SETTINGS = {
    # Shared with the other scripts (common/cli.py, vae.py): --data-dir, --out-dir, --device auto, --seed 0,
    # --overwrite, --vae-checkpoint outputs/vae_mnist/checkpoint.pt.
    **cli.BASE_SETTINGS,
    **vae.CHECKPOINT_SETTINGS,
    # --anomaly-score's choices: COMBINATIONS, SCORES and iw_nll, written out since those two come further down.
    "anomaly_score": ("combined", "the score the per-type table, the gallery and --score use (score_images; iw_nll "
                                  "needs --iw-samples); combined has the best mean and lowest AUROC on the "
                                  "development mix (BENCHMARKS.md); DETECTORS are reported beside it",
                      ("likelihood", "combined", "reconstruction", "elbo", "relative_error",
                       "grey_levels", "stroke_texture", "geometry", "complexity", "iw_nll")),
    "percentile": (99.0, "threshold = this percentile of the normal validation digits' scores, so about "
                         "(100 - it)%% of normal digits get flagged", "(0, 100)"),
    "evaluate_on": ("test", "test: the reported numbers, on MNIST's test digits and Fashion-MNIST's test images; "
                            "development: the same mix of the validation digits and Fashion-MNIST training images, "
                            "where every choice is made", ("test", "development")),
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
GREY_LEVEL_DIGITS = 10_000  # training digits the grey-level model is counted on (7.8 million pixels)
# The detectors every run reports side by side, the assignment's first, and what each uses: what the VAE alone does,
# and what each addition buys.
DETECTORS = {
    "reconstruction": "the VAE alone: -log p(x | z = mu(x)) under its Bernoulli decoder (the assignment's detector)",
    "elbo": "the VAE alone: its negative ELBO, the reconstruction error plus the KL term",
    "likelihood": "the VAE: its reconstruction error and a grey-level model of its reconstruction counted on "
                  "training digits; no other feature",
    "combined": "likelihood and geometry, MNIST's size and centring, a check that uses no VAE",
}


# ----- the anomaly scores -----
# One small function per score in the SCORES table, one value per image, higher = more anomalous, from a ``Batch``
# (x_hat below: the sigmoid of its logits, the pixel means).

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


# ----- the grey-level model, part of grey_levels and stroke_texture -----

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


# ----- the threshold, the evaluation mix and the benchmark -----

def saw_validation_split(checkpoint, log=print):
    """Whether the checkpoint's VAE may have been trained on validation digits, with a warning if so: seen digits
    score lower than unseen ones, so a percentile of their scores is too low a threshold."""
    train_examples = checkpoint.get("train_examples")
    if train_examples is not None and train_examples <= vae.MNIST_TRAINING_IMAGES - vae.VALIDATION_SIZE:
        return False
    log(f"warning: this VAE was trained on {train_examples or 'all 60,000'} MNIST training images, more than the "
        f"{vae.MNIST_TRAINING_IMAGES - vae.VALIDATION_SIZE:,} outside the validation split, so it saw validation "
        f"digits and the threshold comes out too low; retrain it with vae_mnist.py, which holds them out")
    return True


def calibrate(cfg, model, device):
    """Fit what the scores need on normal digits of MNIST's training file only, and set the thresholds. No test image
    is involved.

    The grey-level model is counted on the first GREY_LEVEL_DIGITS digits of the training split, which the VAE was
    trained on; the normal validation digits (vae.split_indices: 10,000 training images drawn at random, never trained
    on) standardise the parts of the combinations and give each score's threshold, the --percentile of their scores.
    Returns a namespace with ``scores(images)`` (every score of every image), ``validation_scores``, ``thresholds``
    (per score) and ``threshold`` (--anomaly-score's).
    """
    train_images, _ = vae.load_split("training", cfg.data_dir, device, GREY_LEVEL_DIGITS)
    grey_levels = fit_grey_levels(model, data.to_unit_range(train_images))
    val_images, _ = vae.load_split("validation", cfg.data_dir, device)
    raw_validation = score_images(model, data.to_unit_range(val_images), grey_levels, seed=cfg.seed,
                                                 iw_samples=cfg.iw_samples)

    def scores(images):
        return combine(score_images(model, images, grey_levels, seed=cfg.seed,
                                                                  iw_samples=cfg.iw_samples), raw_validation)
    validation_scores = combine(raw_validation, raw_validation)
    thresholds = {name: float(np.percentile(values, cfg.percentile)) for name, values in validation_scores.items()}
    return SimpleNamespace(scores=scores, grey_levels=grey_levels, validation_scores=validation_scores,
                           thresholds=thresholds, threshold=thresholds[cfg.anomaly_score])


def evaluation_images(cfg, device, fashion=False):
    """The clean digits of the evaluation, uint8: MNIST's 10,000 test digits (--evaluate-on test), or the 10,000
    validation digits (development), which set the threshold too. With ``fashion``, also as many Fashion-MNIST images:
    its test images, or the first of its training images."""
    development = cfg.evaluate_on == "development"
    digits = (vae.load_split("validation", cfg.data_dir, device) if development else
              data.load_mnist(cfg.data_dir, train=False, device=device))[0]
    if not fashion:
        return digits, None
    foreign, _ = data.load_mnist(cfg.data_dir, train=development, device=device, name="fashion-mnist",
                                 limit=len(digits))
    return digits, foreign


def build_mix(cfg, types, device, generator):
    """Normal digits, corrupted *other* digits and Fashion-MNIST images (evaluation_images), as floats in [0, 1]: the
    anomalies split evenly over ``types``.

    Returns (images, kinds), where kinds[i] is "normal" or one of ``types``.
    """
    digits, fashion = evaluation_images(cfg, device, fashion="fashion_mnist" in types)
    total = len(digits)
    per_type = round(cfg.anomaly_fraction * total) // len(types)
    num_normal = total - per_type * len(types)
    if per_type == 0:
        raise cli.UserError(f"--anomaly-fraction {cfg.anomaly_fraction} leaves no anomaly of some of the "
                            f"{len(types)} types among {total} images: raise it")
    order = torch.randperm(total, generator=generator).to(device)
    clean = data.to_unit_range(digits[order])
    parts, kinds = [clean[:num_normal]], ["normal"] * num_normal
    device_generator = torch.Generator(device=device).manual_seed(cfg.seed)
    start = num_normal
    for kind in types:
        if kind == "fashion_mnist":
            pick = torch.randperm(len(fashion), generator=generator)[:per_type].to(device)
            parts.append(data.to_unit_range(fashion[pick]))
        else:
            parts.append(corrupt(clean[start:start + per_type], kind, device_generator))
            start += per_type
        kinds += [kind] * per_type
    return torch.cat(parts), np.array(kinds)


def benchmark_scores(cfg, types, detector, device):
    """MNIST-C's protocol: each type applied to all 10,000 digits of evaluation_images (Fashion-MNIST: 10,000 of its
    images), scored against the 10,000 clean ones. Returns (scores, kinds) as for the mix; the images are not kept."""
    digits, fashion = evaluation_images(cfg, device, fashion="fashion_mnist" in types)
    clean = data.to_unit_range(digits)
    device_generator = torch.Generator(device=device).manual_seed(cfg.seed)
    parts, kinds = [detector.scores(clean)], ["normal"] * len(clean)
    for kind in types:
        images = data.to_unit_range(fashion) if kind == "fashion_mnist" else corrupt(clean, kind, device_generator)
        parts.append(detector.scores(images))
        kinds += [kind] * len(images)
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}, np.array(kinds)


# ----- counting what the threshold flags -----

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


def false_positive_rate(fp, num_normal, percentile):
    """The share of normal digits flagged against the promise of the --percentile, (100 - it)%: the 95% interval a
    count of ``num_normal`` Binomial draws at that rate falls in, and whether it does."""
    promised = (100 - percentile) / 100
    low, high = binomial_interval(num_normal, promised)
    return {"observed": fp / num_normal, "promised": promised, "interval": [low / num_normal, high / num_normal],
            "num_normal": num_normal, "inside": low <= fp <= high}


def judge(scores, kinds, types, threshold):
    """The counts at ``threshold`` over the whole mix, and per type (the normal digits against that type)."""
    labels = kinds != "normal"
    per_type = {kind: {**confusion(scores[~labels | (kinds == kind)], labels[~labels | (kinds == kind)], threshold),
                       "group": group_of(kind)} for kind in types}
    return confusion(scores, labels, threshold), per_type


def evaluate(cfg, types, all_scores, kinds, detector, vae_saw_validation):
    """metrics.json's numbers: for each of DETECTORS (and --anomaly-score) its counts at its threshold overall, its
    false-positive rate against the promise, its recall and AUROC per type; for --anomaly-score the counts per type
    and the best F1 in hindsight; every score's AUROC per type."""
    scores, labels = all_scores[cfg.anomaly_score], kinds != "normal"
    normal, num_normal = ~labels, int((~labels).sum())
    overall, per_type = judge(scores, kinds, types, detector.threshold)
    detectors = {}
    for name in dict.fromkeys([*DETECTORS, cfg.anomaly_score]):
        name_overall, name_per_type = judge(all_scores[name], kinds, types, detector.thresholds[name])
        detectors[name] = {
            "uses": DETECTORS.get(name, "see docs/vae_anomaly_detection.md"), **name_overall,
            "false_positive_rate": false_positive_rate(name_overall["fp"], num_normal, cfg.percentile),
            "val_false_positive_rate": float((detector.validation_scores[name] > detector.thresholds[name]).mean()),
            "recall_by_type": {kind: row["recall"] for kind, row in name_per_type.items()},
            "groups": summarise_groups({kind: row["auroc"] for kind, row in name_per_type.items()})}
    # Every score's AUROC per type on every run: the numbers behind the choice of the default score.
    auroc_by_score = {name: {kind: float(roc_auc_score(labels[normal | (kinds == kind)],
                                                       values[normal | (kinds == kind)])) for kind in types}
                      for name, values in all_scores.items()}
    return {
        "anomaly_score": cfg.anomaly_score, "percentile": cfg.percentile, "threshold": detector.threshold,
        "evaluate_on": cfg.evaluate_on, "benchmark": cfg.benchmark, "vae_saw_validation": vae_saw_validation,
        "val_false_positive_rate": detectors[cfg.anomaly_score]["val_false_positive_rate"],
        "false_positive_rate": detectors[cfg.anomaly_score]["false_positive_rate"],
        "num_normal": num_normal, "num_per_anomaly_type": int((kinds == types[0]).sum()),
        "detectors": detectors,
        "groups": summarise_groups({kind: row["auroc"] for kind, row in per_type.items()}),
        "overall": overall, "per_type": per_type,
        "best_f1": confusion(scores, labels, best_f1_threshold(scores, labels)),
        "auroc_by_score": auroc_by_score,
        "groups_by_score": {name: summarise_groups(aurocs) for name, aurocs in auroc_by_score.items()},
        "corruptions": {kind: "Fashion-MNIST training images" if kind == "fashion_mnist" and
                        cfg.evaluate_on == "development" else describe(kind) for kind in types},
    }


# ----- figures -----

def normal_digits(metrics):
    return "normal test digits" if metrics["evaluate_on"] == "test" else "normal validation digits"


COLOURS = ("tab:blue", "tab:red")  # normal digits, anomalies


def log_bins(scores, threshold):
    """80 bins, linear near 0 and logarithmic beyond (arcsinh spacing): scores like ``combined`` can be negative, and
    the anomalies' span orders of magnitude. They end at a thousand times the threshold at most: the negative ELBO of
    some anomalies runs to 10^20 nats, which would squeeze every other score into one bin."""
    top = min(scores.max(), 1000 * abs(threshold))
    return np.sinh(np.linspace(np.arcsinh(scores.min()), np.arcsinh(top + 0.01 * abs(top)), 80))


def histogram_pair(axes, normal, anomalous, bins, threshold):
    """Normal against anomalous scores, each group's share of images per bin (densities would shrink the wide bins of
    the log axis to nothing), filled see-through and outlined, so that where the two overlap both stay visible.
    Scores beyond the last bin are counted in it."""
    for chosen, colour in zip([normal, anomalous], COLOURS):
        axes.hist(np.clip(chosen, bins[0], bins[-1]), bins, weights=np.full(len(chosen), 1 / len(chosen)),
                  histtype="stepfilled", facecolor=to_rgba(colour, 0.35), edgecolor=colour, linewidth=1)
    axes.axvline(threshold, color="black", linestyle="--", linewidth=1)
    axes.set_xscale("symlog", linthresh=1)
    axes.set_xlim(bins[0], bins[-1])


def axis_label(score_name):
    if score_name in ("reconstruction", "elbo"):
        return f"{score_name}: -log p in nats (log scale)"
    if score_name in COMBINATIONS:
        return f"{score_name}: 1 = the validation digits' 99th percentile (log scale beyond +-1)"
    return f"{score_name} score (log scale beyond +-1)"


# Each detector's panel title in detectors.png: what it is, and what it uses.
PANEL_TITLES = {"reconstruction": "reconstruction error (the assignment's): uses the VAE only",
                "elbo": "negative ELBO: uses the VAE only",
                "likelihood": "likelihood = reconstruction + grey-level model: the VAE, no hand-made feature",
                "combined": "combined = likelihood + geometry, which uses no VAE"}


def plot_detectors(path, all_scores, kinds, metrics):
    """The DETECTORS side by side: each one's scores of the normal digits against all anomalies pooled, its threshold
    and what the threshold decides (TP, FP, FN, recall), the assignment's reconstruction error first."""
    detectors = metrics["detectors"]
    columns = 2
    rows = -(-len(detectors) // columns)
    figure, all_axes = plt.subplots(rows, columns, figsize=(6 * columns, 4 * rows + 0.8), squeeze=False,
                                    layout="constrained")
    for axes in all_axes.flat[len(detectors):]:
        axes.remove()
    normal = kinds == "normal"
    for axes, (name, row) in zip(all_axes.flat, detectors.items()):
        scores = all_scores[name]
        histogram_pair(axes, scores[normal], scores[~normal], log_bins(scores, row["threshold"]), row["threshold"])
        default = " (the default)" if name == metrics["anomaly_score"] else ""
        # What the threshold decides goes in the title: inside the axes a box would cover some type's peak.
        axes.set_title(f"{PANEL_TITLES.get(name, name)}{default}\nthreshold {row['threshold']:.3g}: TP {row['tp']}, "
                       f"FN {row['fn']} (recall {row['recall']:.3f}); FP {row['fp']} of {row['fp'] + row['tn']} "
                       f"({row['false_positive_rate']['observed']:.2%}); AUROC {row['auroc']:.4f}", fontsize=9)
        beyond = "; the last bin holds all beyond" if scores.max() > axes.get_xlim()[1] else ""
        axes.set_xlabel(axis_label(name) + beyond, fontsize=9)
        axes.set_ylabel("share of images per bin", fontsize=9)
        axes.tick_params(labelsize=8)
    handles = [Patch(facecolor=to_rgba(colour, 0.35), edgecolor=colour) for colour in COLOURS] + \
        [Line2D([], [], color="black", linestyle="--")]
    figure.legend(handles, [normal_digits(metrics), "anomalies, every type",
                            f"threshold: {metrics['percentile']:g}th percentile of the validation digits"],
                  loc="outside upper center", ncol=3, frameon=False, title_fontsize="large",
                  title="The detectors side by side: the VAE's reconstruction error, then what each addition buys")
    plots.save_figure(figure, path)


def plot_histograms(path, scores, kinds, metrics, score_name):
    """One score's histograms: normal digits against each anomaly type, one panel per type, the development types
    first, each panel's title with its recall at the threshold and its AUROC."""
    row = metrics["detectors"][score_name]
    threshold, recall, auroc = row["threshold"], row["recall_by_type"], metrics["auroc_by_score"][score_name]
    types = sorted(recall, key=lambda kind: group_of(kind) == "held_out")
    bins = log_bins(scores, threshold)
    rows = -(-len(types) // 4)
    # Constrained layout leaves room for the title, the shared legend and the axis labels around the panels.
    figure, all_axes = plt.subplots(rows, 4, figsize=(16, 2.9 * rows + 1.2), sharex=True, squeeze=False,
                                    layout="constrained")
    for axes in all_axes.flat[len(types):]:
        axes.remove()
    for axes, kind in zip(all_axes.flat, types):
        histogram_pair(axes, scores[kinds == "normal"], scores[kinds == kind], bins, threshold)
        axes.set_title(f"{kind.replace('_', ' ')} ({group_of(kind).replace('_', '-')})\nrecall {recall[kind]:.3f} "
                       f"at the threshold, AUROC {auroc[kind]:.4f}", fontsize=10)
        axes.tick_params(labelbottom=True, labelsize=8)
    # One legend for every panel, above them, under the figure's title: inside the panels it would cover the bars.
    handles = [Patch(facecolor=to_rgba(colour, 0.35), edgecolor=colour) for colour in COLOURS] + \
        [Line2D([], [], color="black", linestyle="--")]
    figure.legend(handles, [normal_digits(metrics), "the panel's anomaly type", f"threshold {threshold:.3g}"],
                  loc="outside upper center", ncol=3, frameon=False, title_fontsize="large",
                  title=f"Anomaly scores ({score_name}) of {normal_digits(metrics)} against each anomaly type")
    figure.supxlabel(axis_label(score_name))
    figure.supylabel("share of images per bin")
    plots.save_figure(figure, path)


def plot_roc(path, scores, kinds, metrics):
    """One panel per group of types, so that the held-out curves are read apart from the ones tuned on. In each the
    weakest type comes first, every curve has its own colour and line style, and the legend sits beneath the axes."""
    per_type, score_name = metrics["per_type"], metrics["anomaly_score"]
    groups = list(metrics["groups"])
    figure, all_axes = plt.subplots(1, len(groups), figsize=(6.5 * len(groups), 7.5), squeeze=False)
    normal = kinds == "normal"
    for axes, group in zip(all_axes[0], groups):
        in_group = sorted((kind for kind in per_type if group_of(kind) == group),
                          key=lambda kind: per_type[kind]["auroc"])
        for index, kind in enumerate(in_group):
            chosen = normal | (kinds == kind)
            fpr, tpr, _ = roc_curve(kinds[chosen] == kind, scores[chosen])
            # tab10's ten distinct colours solid, then again dashed: no two curves alike.
            axes.plot(fpr, tpr, color=plt.cm.tab10(index % 10), linestyle=("-", "--", ":")[index // 10 % 3],
                      linewidth=1.5, label=f"{kind.replace('_', ' ')} (AUROC {per_type[kind]['auroc']:.4f})")
        if metrics["false_positive_rate"]["observed"]:  # where the detector works: what the threshold flags
            axes.axvline(metrics["false_positive_rate"]["observed"], color="black", linestyle="--", linewidth=0.8,
                         label="the threshold")
        # A log x-axis: at AUROCs near 1 everything that differs happens at false-positive rates below 10%.
        axes.set(xscale="log", xlim=(1 / normal.sum(), 1), ylim=(0, 1.01),
                 xlabel=f"false-positive rate ({normal_digits(metrics)} flagged, log scale)",
                 ylabel="true-positive rate (anomalies flagged)",
                 title=f"{group.replace('_', '-')} types ({score_name})")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
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
        picked_scores = ", ".join(f"{score:.3g}" for score in scores[picks])
        rows = [(f"{label}\nscores {picked_scores}", x, "gray", 1.0),
                ("reconstruction", torch.sigmoid(logits), "gray", 1.0),
                ("-log p per pixel\n(grey-level model)", pixel_nll(x, logits, grey_levels), "magma",
                 error_top)]
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


# ----- the other modes: the user's own images, the one-class benchmark -----

def score_user_images(cfg, detector, ids, images, out):
    """scores.csv: each of the user's images, its score and whether it is above the threshold."""
    scores = detector.scores(images)[cfg.anomaly_score]

    def write(temporary):
        with open(temporary, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["id", "score", "is_anomaly"])
            writer.writerows((name, f"{score:.4f}", int(score > detector.threshold))
                             for name, score in zip(ids, scores))
    files.atomic_write(out / "scores.csv", write)
    flagged = int((scores > detector.threshold).sum())
    print(f"{flagged} of {len(ids)} images above the threshold {detector.threshold:.3g} ({cfg.anomaly_score}, "
          f"{cfg.percentile}th percentile of {vae.VALIDATION_SIZE:,} normal validation digits)\nwrote {out}/scores.csv")
    return {"threshold": detector.threshold, "num_images": len(ids), "num_anomalies": flagged}


def one_class_benchmark(cfg, device, out, log=print):
    """Per digit K: a VAE trained on K's training images only, scored on the whole test set (K normal, the other
    nine anomalous): the protocol of Deep SVDD (Ruff et al. 2018) and GeoTrans (Golan & El-Yaniv 2018)."""
    digits = list(range(10)) if cfg.normal_digit == "all" else [int(cfg.normal_digit)]
    train_images, train_labels = data.load_mnist(cfg.data_dir, train=True, device=device)
    test_images, test_labels = data.load_mnist(cfg.data_dir, train=False, device=device)
    x_test = data.to_unit_range(test_images)
    results = {}
    for digit in digits:
        timer = progress.Timer(device)
        folder = out / "one_class" / f"digit_{digit}"
        flags = ["--digit", digit, "--epochs", cfg.one_class_epochs, "--out-dir", folder, "--device", device.type,
                 "--seed", cfg.seed, "--overwrite", *(["--data-dir", cfg.data_dir] if cfg.data_dir else [])]
        distributed.from_main(cli.run_script, "vae_mnist.py", *flags)
        model, _ = vae.load_vae(folder / "checkpoint.pt", device) if distributed.is_main() else (None, None)
        if not distributed.is_main():
            continue  # under torchrun the other processes help train; rank 0 scores
        normal_train = data.to_unit_range(train_images[train_labels == digit][:GREY_LEVEL_DIGITS])
        scores = score_images(model, x_test, fit_grey_levels(model, normal_train),
                                             seed=cfg.seed, iw_samples=cfg.iw_samples)
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
    files.write_json(out / "one_class.json", summary)
    print(f"{'digit':>6s}" + "".join(f"{name:>22s}" for name in columns))
    for digit, row in results.items():
        print(f"{digit:>6d}" + "".join(f"{row[name]:22.2f}" for name in columns))
    print(f"{'mean':>6s}" + "".join(f"{summary['mean'][name]:22.2f}" for name in columns) + f"\nwrote {out}/")
    return summary


# ----- main -----

def print_report(metrics):
    normal = normal_digits(metrics)
    print(f"detectors at the {metrics['percentile']:g}th percentile of {vae.VALIDATION_SIZE:,} normal validation "
          f"digits; FP rate: of the {metrics['num_normal']:,} {normal}, with the 95% interval of its promise")
    header = ("detector", "threshold", "TP", "FP", "TN", "FN", "precision", "recall", "AUROC", "FP rate", "interval")
    print(f"{header[0]:16s}" + "".join(f"{name:>10s}" for name in header[1:]) + "   uses")
    for name, row in metrics["detectors"].items():
        rate = row["false_positive_rate"]
        print(f"{name:16s}{row['threshold']:10.3g}{row['tp']:10d}{row['fp']:10d}{row['tn']:10d}{row['fn']:10d}"
              f"{row['precision']:10.4f}{row['recall']:10.4f}{row['auroc']:10.4f}{rate['observed']:10.2%}"
              f"{rate['interval'][0]:6.2%}-{rate['interval'][1]:.2%}   {row['uses']}")
    print(f"\nrecall at the threshold per type, by detector:\n{'type':16s}{'group':>12s}" +
          "".join(f"{name:>16s}" for name in metrics["detectors"]))
    for kind in metrics["per_type"]:
        print(f"{kind:16s}{group_of(kind):>12s}" +
              "".join(f"{row['recall_by_type'][kind]:16.3f}" for row in metrics["detectors"].values()))

    print(f"\n{metrics['anomaly_score']}, per type:")
    header = ("type", "group", "threshold", "TP", "FP", "TN", "FN", "precision", "recall", "F1", "AUROC", "AUPRC")
    print(f"{header[0]:16s}{header[1]:>12s}" + "".join(f"{name:>10s}" for name in header[2:]))
    for name, row in [*metrics["per_type"].items(), ("overall", metrics["overall"])]:
        print(f"{name:16s}{row.get('group', ''):>12s}{row['threshold']:10.3g}{row['tp']:10d}{row['fp']:10d}"
              f"{row['tn']:10d}{row['fn']:10d}{row['precision']:10.4f}{row['recall']:10.4f}{row['f1']:10.4f}"
              f"{row['auroc']:10.4f}{row['auprc']:10.4f}")
    groups = metrics["groups"]
    print(f"\nmean (lowest) AUROC per group of types, by score:\n{'score':16s}" +
          "".join(f"{group:>24s}" for group in groups))
    for name, summary in metrics["groups_by_score"].items():
        print(f"{name:16s}" + "".join(f"{summary[group]['mean_auroc']:12.4f} ({summary[group]['min_auroc']:.4f})"
                                      for group in groups))
    best, overall, rate = metrics["best_f1"], metrics["overall"], metrics["false_positive_rate"]
    print(f"\nthreshold {metrics['threshold']:.3g} = {metrics['percentile']}th percentile of {vae.VALIDATION_SIZE:,} "
          f"normal validation digits ({metrics['anomaly_score']}): {rate['observed']:.2%} of {normal} flagged "
          f"(95% interval of {rate['promised']:.0%}: {rate['interval'][0]:.2%} to {rate['interval'][1]:.2%}), F1 "
          f"{overall['f1']:.4f}; the best F1 in hindsight, {best['f1']:.4f}, is at {best['threshold']:.3g}")
    for group, summary in groups.items():
        print(f"{group}: mean AUROC {summary['mean_auroc']:.4f} over {summary['types']} types, lowest "
              f"{summary['min_auroc']:.4f} ({summary['weakest']})")


def main(argv=None):
    cfg = cli.parse(SETTINGS, __doc__, argv)
    if cfg.anomaly_score == "iw_nll" and not cfg.iw_samples:
        raise cli.UserError("--anomaly-score iw_nll needs --iw-samples N (N >= 1)")
    types = parse_corruptions(cfg.corruptions)
    user_images = data.load_user_images(cfg.score) if cfg.score else None  # bad input stops here, before any work
    device = devices.pick_device(cfg.device)
    out = run_folder.open_run(__file__, cfg, device)  # checked and claimed; nothing written before the checks
    if not cfg.normal_digit:
        model, checkpoint = vae.load_or_train_vae(cfg.vae_checkpoint, cfg.data_dir, device, cfg.seed)
    generator = seeds.seed_everything(cfg.seed)
    run_folder.start_record()
    if cfg.normal_digit:
        return one_class_benchmark(cfg, device, out)
    if not distributed.is_main():
        return None  # under torchrun: the other processes' part was training the VAE, if it was absent

    timer = progress.Timer(device)
    vae_saw_validation = saw_validation_split(checkpoint)
    # (1) The thresholds, from normal validation digits only.
    detector = calibrate(cfg, model, device)
    if user_images:
        ids, images = user_images
        return score_user_images(cfg, detector, ids, images.to(device), out)
    # (2) Score the evaluation mix (or, for MNIST-C's protocol, every type on every test digit).
    if cfg.benchmark:
        all_scores, kinds = benchmark_scores(cfg, types, detector, device)
    else:
        images, kinds = build_mix(cfg, types, device, generator)
        all_scores = detector.scores(images)
    # (3) Count what the threshold flags, per type and overall.
    metrics = evaluate(cfg, types, all_scores, kinds, detector, vae_saw_validation)
    # (4) The figures: the detectors side by side, the assignment's reconstruction error per type, the chosen score's.
    scores = all_scores[cfg.anomaly_score]
    plot_detectors(out / "detectors.png", all_scores, kinds, metrics)
    plot_histograms(out / "histograms_reconstruction.png", all_scores["reconstruction"], kinds, metrics,
                    "reconstruction")
    plot_histograms(out / "histograms.png", scores, kinds, metrics, cfg.anomaly_score)
    plot_roc(out / "roc.png", scores, kinds, metrics)
    if not cfg.benchmark:
        # The type whose images pass the threshold most often, held-out if any: what a user would miss.
        pool = [kind for kind in types if group_of(kind) == "held_out"] or list(types)
        weakest = min(pool, key=lambda kind: metrics["per_type"][kind]["recall"])
        plot_gallery(out / "gallery.png", model, detector.grey_levels, images, scores, kinds, detector.threshold,
                     weakest)
    metrics["seconds"] = timer.elapsed()
    files.write_json(out / ("benchmark.json" if cfg.benchmark else "metrics.json"), metrics)
    print_report(metrics)
    print(f"{metrics['seconds']:.1f} s\nwrote {out}/")
    return metrics


if __name__ == "__main__":
    cli.run(main)
