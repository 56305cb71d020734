"""Anomaly detection with the VAE: corrupted, moved and foreign images against clean MNIST, a calibrated threshold.

Scores every image by how badly vae_mnist.py's VAE and MNIST's own conventions explain it. The default, combined,
is the largest of three standardised scores: the image's -log p under a grey-level model built on the VAE's
reconstruction, the same inside the strokes only, and its distance from MNIST's size and centring; the others
(the reconstruction error, the negative ELBO, relative_error for the one-class benchmark, an input-complexity
correction, the importance-weighted likelihood) stay behind --anomaly-score. The threshold is a percentile of the
scores of held-out *normal* images, the last 5,000 of MNIST's training set, which vae_mnist.py does not train on;
the test set never sets it. The evaluation mix holds normal MNIST test digits, corrupted versions of other test
digits (the seven original corruption types and MNIST-C's fifteen, common/corruptions.py) and Fashion-MNIST test
images, in two groups: every choice was made on DEVELOPMENT, and HELD_OUT is only reported. The report gives confusion
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
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import to_rgba
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from sklearn.metrics import roc_auc_score, roc_curve

from common import anomaly_scores, cli, data, devices, distributed, files, plots, progress, run_folder, seeds, vae
from common.anomaly_scores import ANOMALY_SCORES, best_f1_threshold, confusion
from common.corruptions import corrupt, describe, group_of, parse_corruptions

SETTINGS = {
    # Shared with the other scripts (common/cli.py, vae.py): --data-dir, --out-dir, --device auto, --seed 0,
    # --overwrite, --vae-checkpoint outputs/vae_mnist/checkpoint.pt.
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
GREY_LEVEL_DIGITS = 10_000  # training digits the grey-level model is counted on (7.8 million pixels)


# ----- the threshold, the evaluation mix and the benchmark -----

def calibrate(cfg, model, device):
    """Fit what the scores need on normal digits only, and set the threshold. No test image is involved.

    The grey-level model is counted on the first GREY_LEVEL_DIGITS digits of the training split, which the VAE was
    trained on; the normal validation digits (the last 5,000 of MNIST's training set, never trained on) standardise
    the parts of ``combined`` and give the threshold, the --percentile of their scores. Returns a namespace with
    ``scores(images)`` (every score of every image), ``validation_scores`` and ``threshold``.
    """
    train_images, _ = vae.load_training_split(cfg.data_dir, device, GREY_LEVEL_DIGITS)
    grey_levels = anomaly_scores.fit_grey_levels(model, data.to_unit_range(train_images))
    val_images, _ = vae.load_validation_split(cfg.data_dir, device)
    raw_validation = anomaly_scores.score_images(model, data.to_unit_range(val_images), grey_levels, seed=cfg.seed,
                                                 iw_samples=cfg.iw_samples)

    def scores(images):
        return anomaly_scores.combine(anomaly_scores.score_images(model, images, grey_levels, seed=cfg.seed,
                                                                  iw_samples=cfg.iw_samples), raw_validation)
    validation_scores = anomaly_scores.combine(raw_validation, raw_validation)
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


# ----- counting what the threshold flags -----

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


def evaluate(cfg, types, all_scores, kinds, detector, vae_saw_validation):
    """metrics.json's numbers: the counts at the threshold overall and per type (the normal digits against each
    type), the best F1 in hindsight, and every score's AUROC per type."""
    scores, labels = all_scores[cfg.anomaly_score], kinds != "normal"
    normal, threshold = ~labels, detector.threshold
    per_type = {kind: {**confusion(scores[normal | (kinds == kind)], labels[normal | (kinds == kind)], threshold),
                       "group": group_of(kind)} for kind in types}
    overall = confusion(scores, labels, threshold)
    # Every score's AUROC per type on every run: the numbers behind the choice of the default score.
    auroc_by_score = {name: {kind: float(roc_auc_score(labels[normal | (kinds == kind)],
                                                       values[normal | (kinds == kind)])) for kind in types}
                      for name, values in all_scores.items()}
    return {
        "anomaly_score": cfg.anomaly_score, "percentile": cfg.percentile, "threshold": threshold,
        "benchmark": cfg.benchmark, "vae_saw_validation": vae_saw_validation,
        "val_false_positive_rate": float((detector.validation_scores[cfg.anomaly_score] > threshold).mean()),
        "test_false_positive_rate": overall["fp"] / int(normal.sum()),
        "num_normal": int(normal.sum()), "num_per_anomaly_type": int((kinds == types[0]).sum()),
        "groups": summarise_groups({kind: row["auroc"] for kind, row in per_type.items()}),
        "overall": overall, "per_type": per_type,
        "best_f1": confusion(scores, labels, best_f1_threshold(scores, labels)),
        "auroc_by_score": auroc_by_score,
        "groups_by_score": {name: summarise_groups(aurocs) for name, aurocs in auroc_by_score.items()},
        "corruptions": {kind: describe(kind) for kind in types},
    }


# ----- figures -----

def plot_histograms(path, scores, kinds, metrics):
    """Normal digits against each anomaly type, one panel per type, the development types first. The axis is linear
    near 0 and logarithmic beyond (arcsinh spacing): scores like ``combined`` can be negative, and the anomalies'
    span orders of magnitude."""
    per_type, threshold, score_name = metrics["per_type"], metrics["threshold"], metrics["anomaly_score"]
    types = sorted(per_type, key=lambda kind: group_of(kind) == "held_out")
    bins = np.sinh(np.linspace(np.arcsinh(scores.min()), np.arcsinh(scores.max() * 1.01), 80))
    rows = -(-len(types) // 4)
    # Constrained layout leaves room for the title, the shared legend and the axis labels around the panels.
    figure, all_axes = plt.subplots(rows, 4, figsize=(16, 2.6 * rows + 1.2), sharex=True, squeeze=False,
                                    layout="constrained")
    for axes in all_axes.flat[len(types):]:
        axes.remove()
    colours = ("tab:blue", "tab:red")  # normal digits, the panel's anomalies
    for axes, kind in zip(all_axes.flat, types):
        for chosen, colour in zip([scores[kinds == "normal"], scores[kinds == kind]], colours):
            # Each group's share of images per bin (densities would shrink the wide bins of the log axis to nothing),
            # filled see-through and outlined, so that where the two overlap both stay visible.
            axes.hist(chosen, bins, weights=np.full(len(chosen), 1 / len(chosen)), histtype="stepfilled",
                      facecolor=to_rgba(colour, 0.35), edgecolor=colour, linewidth=1)
        axes.axvline(threshold, color="black", linestyle="--", linewidth=1)
        axes.set_xscale("symlog", linthresh=1)
        axes.set_title(f"{kind.replace('_', ' ')} ({group_of(kind).replace('_', '-')}): AUROC "
                       f"{per_type[kind]['auroc']:.4f}", fontsize=10)
        axes.tick_params(labelbottom=True, labelsize=8)
    # One legend for every panel, above them, under the figure's title: inside the panels it would cover the bars.
    handles = [Patch(facecolor=to_rgba(colour, 0.35), edgecolor=colour) for colour in colours] + \
        [Line2D([], [], color="black", linestyle="--")]
    figure.legend(handles, ["normal test digits", "the panel's anomaly type", f"threshold {threshold:.3g}"],
                  loc="outside upper center", ncol=3, frameon=False, title_fontsize="large",
                  title=f"Anomaly scores ({score_name}) of normal MNIST test digits against each anomaly type")
    figure.supxlabel(f"{score_name} score (log scale beyond +-1)")
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
        if metrics["test_false_positive_rate"]:  # where the detector works: what the threshold flags
            axes.axvline(metrics["test_false_positive_rate"], color="black", linestyle="--", linewidth=0.8,
                         label="the threshold")
        # A log x-axis: at AUROCs near 1 everything that differs happens at false-positive rates below 10%.
        axes.set(xscale="log", xlim=(1 / normal.sum(), 1), ylim=(0, 1.01),
                 xlabel="false-positive rate (normal test digits flagged, log scale)",
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
                ("-log p per pixel\n(grey-level model)", anomaly_scores.pixel_nll(x, logits, grey_levels), "magma",
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
          f"{cfg.percentile}th percentile of {vae.VALIDATION_SIZE} normal validation digits)\nwrote {out}/scores.csv")
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
        scores = anomaly_scores.score_images(model, x_test, anomaly_scores.fit_grey_levels(model, normal_train),
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
    best, overall = metrics["best_f1"], metrics["overall"]
    print(f"\nthreshold {metrics['threshold']:.3g} = {metrics['percentile']}th percentile of {vae.VALIDATION_SIZE} "
          f"normal validation digits ({metrics['anomaly_score']}): {metrics['test_false_positive_rate']:.2%} of "
          f"normal test digits flagged, F1 {overall['f1']:.4f}; the best F1 in hindsight, {best['f1']:.4f}, is at "
          f"{best['threshold']:.3g}")
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
    out = run_folder.open_run(__file__, cfg, device)  # the folder checked and claimed; nothing is written before the checks
    if not cfg.normal_digit:
        model, checkpoint = vae.load_or_train_vae(cfg.vae_checkpoint, cfg.data_dir, device, cfg.seed)
    generator = seeds.seed_everything(cfg.seed)
    run_folder.start_record()
    if cfg.normal_digit:
        return one_class_benchmark(cfg, device, out)
    if not distributed.is_main():
        return None  # under torchrun: the other processes' part was training the VAE, if it was absent

    timer = progress.Timer(device)
    vae_saw_validation = vae.saw_validation_split(checkpoint)
    # (1) The threshold, from normal validation digits only.
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
    # (4) The figures.
    scores = all_scores[cfg.anomaly_score]
    plot_histograms(out / "histograms.png", scores, kinds, metrics)
    plot_roc(out / "roc.png", scores, kinds, metrics)
    if not cfg.benchmark:
        weakest = (metrics["groups"].get("held_out") or metrics["groups"]["development"])["weakest"]
        plot_gallery(out / "gallery.png", model, detector.grey_levels, images, scores, kinds, detector.threshold,
                     weakest)
    metrics["seconds"] = timer.elapsed()
    files.write_json(out / ("benchmark.json" if cfg.benchmark else "metrics.json"), metrics)
    print_report(metrics)
    print(f"{metrics['seconds']:.1f} s\nwrote {out}/")
    return metrics


if __name__ == "__main__":
    cli.run(main)
