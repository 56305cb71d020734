"""The report of a run_all.py run: report.md and report.html in the run folder, one section per experiment.

Each section says in two sentences what the experiment shows, gives its headline numbers (from its metrics.json),
its figures, the command that made them and the stage's time; the report ends with the machine, the versions, the
date and the git commit. report.md links the figures by their paths relative to it; report.html embeds them (base64
PNG), so that one file opens in a browser offline and can be sent on its own.
"""
import base64
import html
import json
import os
import platform
import subprocess
from datetime import datetime
from pathlib import Path

import matplotlib
import numpy as np
import sklearn
import torch
import torchvision

from common import data, fid, files, plots

REPO = Path(__file__).resolve().parent

TITLES = {
    "vae_mnist": "A variational autoencoder on MNIST",
    "vae_anomaly_detection": "Anomaly detection with the VAE",
    "vae_latent_space_visualization": "The VAE's latent space in 2-D (t-SNE)",
    "gan_mnist": "A GAN on MNIST",
    "latent_interpolation": "Walking through the GAN's latent space",
    "dcgan_cifar10": "A DCGAN on CIFAR-10",
}

SUMMARIES = {
    "vae_mnist": "The VAE learns to compress each MNIST digit into a 32-dimensional Gaussian code and to draw it back "
                 "from it: the reconstructions show what the code keeps, and the samples, decoded from random codes, "
                 "show that it has learned what digits look like. Its loss is the negative ELBO, the reconstruction "
                 "error plus the KL term that keeps the codes near the prior; the curves follow both over the epochs "
                 "on the training and the test digits.",
    "vae_anomaly_detection": "The trained VAE scores every image by how badly it explains it, and a threshold set on "
                             "held-out normal training digits alone flags noisy, corrupted, moved and foreign "
                             "(Fashion-MNIST) images among normal test digits. The assignment's detector, the VAE's "
                             "reconstruction error, comes first, beside the VAE's other likelihood-based scores and "
                             "the default score, which adds a check of MNIST's size and centring that uses no VAE. "
                             "The histograms show the normal digits' scores against the anomalies' with the "
                             "threshold between them; the true and false positives count what it catches and what "
                             "it flags wrongly.",
    "vae_latent_space_visualization": "The VAE's encoder maps MNIST test digits to their latent means, which t-SNE "
                                      "lays out in two dimensions, coloured by digit, beside a linear PCA "
                                      "projection. Separate clusters, though the VAE never saw a label, show that "
                                      "its latent space is organised by digit; the nearest-neighbour accuracy and "
                                      "silhouette measure how well.",
    "gan_mnist": "A fully connected generator learns to draw MNIST digits from noise by playing against a "
                 "discriminator: the loss curves follow the game, and the snapshots of the same 64 noise vectors "
                 "after each epoch show blobs turning into digits. A classifier trained on MNIST judges the samples: "
                 "the Frechet distance in its features (lower is better) and the rarest digit's share (10% when "
                 "every digit is drawn equally often, near 0 under mode collapse).",
    "latent_interpolation": "Paths between two latent vectors of the trained GAN, a straight line (lerp) and a "
                            "great circle (slerp), turn one digit into another through images that stay digit-like. "
                            "In 64 dimensions the straight line dips to a norm the generator never saw in "
                            "training while slerp keeps it, which the norm plot shows.",
    "dcgan_cifar10": "A convolutional GAN (DCGAN) learns to generate 32 x 32 colour images of CIFAR-10's ten "
                     "classes, shown beside real test images. Its samples are judged in the features of a CIFAR-10 "
                     "classifier as the MNIST GAN's are: the Frechet distance, and the share of the class it draws "
                     "least often.",
}

# What the report shows of each script's outputs, in its folder: (file, caption). run_all.py counts a stage done only
# when all of its figures are there.
FIGURES = {
    "vae_mnist": [("reconstructions.png", "Test digits and their reconstructions"),
                  ("samples.png", "New digits decoded from z ~ N(0, I)"),
                  ("elbo.png", "Negative ELBO per epoch, training and test"),
                  ("kl.png", "The KL term per epoch")],
    "vae_anomaly_detection": [("detectors.png", "The detectors side by side, normal test digits against all "
                                                "anomalies: the VAE's reconstruction error (the assignment's) first; "
                                                "the dashed line is each one's threshold, its TP and FP in the "
                                                "panel's title"),
                              ("histograms_reconstruction.png", "The reconstruction error of normal test digits "
                                                                "against each anomaly type, with its threshold"),
                              ("histograms.png", "The default score of normal test digits against each anomaly type; "
                                                 "the dashed line is the threshold"),
                              ("roc.png", "ROC curve of each anomaly type"),
                              ("gallery.png", "The highest-scoring normal digits and the best-hidden anomalies, with "
                                              "reconstructions and per-pixel error maps")],
    "vae_latent_space_visualization": [("tsne.png", "t-SNE of the latent means, coloured by digit"),
                                       ("tsne_vs_pca.png", "The same latents: t-SNE beside PCA")],
    "gan_mnist": [("losses.png", "Discriminator and generator losses"),
                  ("progress.png", "The same noise vectors after each epoch"),
                  ("samples.png", "100 samples of the final generator"),
                  ("quality.png", "Sample quality over training")],
    "latent_interpolation": [("grid.png", "The interpolation strips: each pair by lerp and by slerp"),
                             ("norms.png", "The latent norm along each path")],
    "dcgan_cifar10": [("real_vs_generated.png", "Real CIFAR-10 test images beside generated ones"),
                      ("progress.png", "The same noise vectors after each epoch"),
                      ("losses.png", "Discriminator and generator losses"),
                      ("quality.png", "Sample quality over training")],
}

QUICK_NOTE = ("This is a quick run (run_all.py --quick): fewer epochs and images than the scripts' defaults (each "
              "section gives its command). Its GAN and DCGAN quality numbers come from classifiers trained on a "
              "subset of the data (their test accuracy is listed), so they compare with other quick runs only, not "
              "with BENCHMARKS.md.")


# ----- headline numbers: one small function per experiment, (label, value) rows from its metrics.json -----

def vae_numbers(metrics):
    return [("test -ELBO (nats per image)", f"{metrics['test_loss']:.2f}"),
            ("reconstruction + KL", f"{metrics['test_reconstruction']:.2f} + {metrics['test_kl']:.2f}"),
            (f"importance-weighted -log p(x) ({metrics['iw_samples']} samples)", f"{metrics['iw_nll']:.2f}"),
            ("active latent units", f"{metrics['active_units']} of {metrics['latent_dim']}"),
            ("epochs", f"{metrics['epochs']}")]


def anomaly_numbers(metrics):
    overall = metrics["overall"]
    rows = [("AUROC, all anomaly types", f"{overall['auroc']:.4f}"),
            (f"threshold ({metrics['anomaly_score']} score, {metrics['percentile']:g}th percentile of normal "
             f"validation digits)", f"{metrics['threshold']:.3g}"),
            ("true positives (anomalies flagged)", f"{overall['tp']} of {overall['tp'] + overall['fn']}"),
            ("false positives (normal digits flagged)", f"{overall['fp']} of {overall['fp'] + overall['tn']}"),
            ("precision, recall, F1", f"{overall['precision']:.3f}, {overall['recall']:.3f}, {overall['f1']:.3f}")]
    rows += [(f"mean AUROC, {group.replace('_', '-')} types (lowest: {summary['weakest'].replace('_', ' ')})",
              f"{summary['mean_auroc']:.4f} ({summary['min_auroc']:.4f})")
             for group, summary in metrics["groups"].items()]
    # Each detector at its own threshold, the assignment's reconstruction error first.
    rows += [(f"{name}: TP, FP, recall, AUROC", f"{row['tp']} of {row['tp'] + row['fn']}, {row['fp']} of "
                                                f"{row['fp'] + row['tn']}, {row['recall']:.3f}, {row['auroc']:.4f}")
             for name, row in metrics.get("detectors", {}).items()]
    return rows


def tsne_numbers(metrics):
    return [("10-NN accuracy: t-SNE map, latent space, PCA map",
             f"{metrics['knn_accuracy_tsne']:.3f}, {metrics['knn_accuracy_latent']:.3f}, "
             f"{metrics['knn_accuracy_pca']:.3f}"),
            ("silhouette: t-SNE map, latent space", f"{metrics['silhouette_tsne']:.3f}, "
                                                    f"{metrics['silhouette_latent']:.3f}"),
            ("trustworthiness of the t-SNE map", f"{metrics['trustworthiness_tsne']:.3f}"),
            ("test digits embedded", f"{metrics['num_points']:,}")]


def rarest(shares, names):
    index = int(np.argmin(shares))
    return f"{names[index]} ({100 * shares[index]:.1f}%)"


def inception_numbers(metrics):
    """The standard FID and KID where the run measured them; else why not, and how to get them."""
    if "fid_inception" not in metrics:
        why = ("not measured in this run (--quick or --fid none): python run_all.py --fid inception adds them"
               if fid.packaged_weights() else f"not measured: the network is not installed; {fid.INSTALL}")
        return [("standard FID and KID (Inception-v3)", why)]
    protocol = f"{metrics['fid_generated_images']:,} samples against {metrics['fid_reference']}"
    return [(f"FID (Inception-v3), {protocol}", f"{metrics['fid_inception']:.2f}"),
            ("KID x 10^3 (Inception-v3), its standard error",
             f"{1e3 * metrics['kid_inception']:.2f} ({1e3 * metrics['kid_inception_standard_error']:.2f})")]


def gan_numbers(metrics, names=tuple(str(digit) for digit in range(10))):
    return [*inception_numbers(metrics),
            ("Frechet distance to the test images (classifier features)", f"{metrics['frechet_distance']:.1f}"),
            ("inception score (classifier-based)", f"{metrics['inception_score']:.2f}"),
            ("rarest class among the samples", rarest(metrics["class_shares"], names)),
            ("judging classifier (weights' SHA-256, test accuracy)",
             f"{metrics['classifier']['weights_sha256']}, {metrics['classifier']['test_accuracy']:.4f}"),
            ("epochs", f"{metrics['epochs']}")]


def interpolation_numbers(metrics):
    rows = [("lowest |z| along a path / endpoint |z|: lerp, slerp",
             f"{metrics['lerp_min_norm_ratio']:.2f}, {metrics['slerp_min_norm_ratio']:.2f}"),
            ("mean pixel step between neighbouring images: lerp, slerp",
             f"{metrics['lerp_mean_step']:.2f}, {metrics['slerp_mean_step']:.2f}")]
    if "lerp_label_changes" in metrics:
        rows.append(("predicted-class changes per path: lerp, slerp",
                     f"{metrics['lerp_label_changes']}, {metrics['slerp_label_changes']}"))
    return rows + [("pairs (classes)", ", ".join(f"{a} to {b}" for a, b in metrics["pairs"]))]


def dcgan_numbers(metrics):
    rows = gan_numbers(metrics, data.CIFAR10_CLASSES)
    return rows[:-1] + [("epochs (samples from epoch)", f"{metrics['epochs']} ({metrics['sampled_epoch']})"),
                        ("seconds per training epoch", f"{metrics['seconds_per_epoch']:.0f}")]


NUMBERS = {"vae_mnist": vae_numbers, "vae_anomaly_detection": anomaly_numbers,
           "vae_latent_space_visualization": tsne_numbers, "gan_mnist": gan_numbers,
           "latent_interpolation": interpolation_numbers, "dcgan_cifar10": dcgan_numbers}


# ----- the machine and the versions -----

def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit():
    try:
        result = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=REPO,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (git not available)"
    return result.stdout.strip() if result.returncode == 0 else "unknown (not a git checkout)"


def machine():
    """(label, value) rows: where and with what the report was made."""
    gpu = ", ".join(torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())) or "none"
    return [("CPU", f"{cpu_model()}, {os.cpu_count()} logical cores"), ("GPU", gpu),
            ("platform", platform.platform()),
            ("versions", f"Python {platform.python_version()}, torch {torch.__version__}, torchvision "
                         f"{torchvision.__version__}, numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
                         f"matplotlib {matplotlib.__version__}"),
            ("git commit", git_commit()), ("report written", datetime.now().isoformat(timespec="seconds"))]


# ----- the report -----

def stage_time(record):
    if record is None:
        return "not recorded (run outside run_all.py)"
    resumed = ", resumed" if record.get("resumed") else ""
    return (f"{record['wall_seconds']:.1f} s wall clock, {record['cpu_seconds']:.0f} s CPU (finished "
            f"{record['finished']}{resumed})")


def sections(root, stages):
    """Everything the report says about each experiment, for both renderings."""
    result = []
    for name, title in TITLES.items():
        metrics = json.loads((root / name / "metrics.json").read_text())
        result.append({"name": name, "title": title, "summary": SUMMARIES[name], "numbers": NUMBERS[name](metrics),
                       "figures": [(f"{name}/{file}", caption) for file, caption in FIGURES[name]],
                       "time": stage_time(stages.get(name)),
                       "command": (stages.get(name) or {}).get("command", "")})
    return result


def times_table(stages):
    rows = [(name, stage_time(record)) for name, record in stages.items()]
    recorded = [record for record in stages.values() if record]
    return rows + [("all stages", f"{sum(record['wall_seconds'] for record in recorded):.1f} s wall clock, "
                                  f"{sum(record['cpu_seconds'] for record in recorded):.0f} s CPU")]


def markdown(title, note, parts, times, about):
    lines = [f"# {title}", "", *([note, ""] if note else [])]
    for part in parts:
        lines += [f"## {part['title']} (`{part['name']}.py`)", "", part["summary"], "", "| number | value |",
                  "| --- | --- |", *[f"| {label} | {value} |" for label, value in part["numbers"]], ""]
        for path, caption in part["figures"]:
            lines += [f"![{caption}]({path})", "", f"*{caption}* (`{path}`)", ""]
        lines += [f"Time: {part['time']}.", ""]
        if part["command"]:
            lines += [f"Command: `{part['command']}`", ""]
    lines += ["## Time per stage", "", "| stage | time |", "| --- | --- |",
              *[f"| {name} | {value} |" for name, value in times], "",
              "## Machine and versions", "", "| | |", "| --- | --- |",
              *[f"| {label} | {value} |" for label, value in about], ""]
    return "\n".join(lines)


SCREEN_DPI = 100  # matplotlib's own figure.dpi: a 6 x 4 inch plot is 600 x 400 pixels on a screen
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h2 { border-top: 1px solid #ccc; padding-top: 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
figure { display: inline-block; vertical-align: top; margin: 0.5em 1em 0.5em 0; max-width: 100%; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption, .time { color: #555; font-size: 0.9em; }
code { background: #f4f4f4; padding: 0 0.2em; word-break: break-all; }
.note { background: #fff6d6; padding: 0.6em 1em; border-left: 4px solid #e0b000; }
"""


def html_table(rows):
    return "<table>" + "".join(f"<tr><td>{html.escape(label)}</td><td>{html.escape(value)}</td></tr>"
                               for label, value in rows) + "</table>"


def screen_width(png):
    """The width to show a figure at: plots.DPI pixels an inch are for print, and would make a loss curve fill the
    page; SCREEN_DPI is the size matplotlib draws for a screen (the figure's own inches). The width is read from the
    PNG header (bytes 16-19 of the IHDR chunk)."""
    return round(int.from_bytes(png[16:20], "big") * SCREEN_DPI / plots.DPI)


def html_document(title, note, parts, times, about, root):
    body = [f"<h1>{html.escape(title)}</h1>"]
    if note:
        body.append(f'<p class="note">{html.escape(note)}</p>')
    for part in parts:
        body += [f'<h2 id="{part["name"]}">{html.escape(part["title"])} (<code>{part["name"]}.py</code>)</h2>',
                 f"<p>{html.escape(part['summary'])}</p>", html_table(part["numbers"])]
        for path, caption in part["figures"]:
            image = (root / path).read_bytes()
            encoded = base64.b64encode(image).decode("ascii")
            body.append(f'<figure><img src="data:image/png;base64,{encoded}" width="{screen_width(image)}" '
                        f'alt="{html.escape(caption)}"><figcaption>{html.escape(caption)} '
                        f"(<code>{html.escape(path)}</code>)</figcaption></figure>")
        body.append(f'<p class="time">Time: {html.escape(part["time"])}.</p>')
        if part["command"]:
            body.append(f'<p class="time">Command: <code>{html.escape(part["command"])}</code></p>')
    body += ["<h2>Time per stage</h2>", html_table(times), "<h2>Machine and versions</h2>", html_table(about)]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(root, stages, quick):
    """report.md and report.html in ``root`` from the scripts' folders in it; ``stages`` maps each stage to its
    record in run_all.json (command, times). Returns the two paths."""
    root = Path(root)
    title = "Generative models: " + ("quick run" if quick else "default run") + " of the six experiments"
    note = QUICK_NOTE if quick else ""
    parts, times, about = sections(root, stages), times_table(stages), machine()
    paths = root / "report.md", root / "report.html"
    write_text(paths[0], markdown(title, note, parts, times, about))
    write_text(paths[1], html_document(title, note, parts, times, about, root))
    return paths


def write_text(path, text):
    files.atomic_write(path, lambda temporary: Path(temporary).write_text(text))
