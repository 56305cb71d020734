"""The VAE's latent space in two dimensions: t-SNE and PCA maps of MNIST test digits, coloured by digit.

Encodes test images with the encoder of vae_mnist.py's VAE (the posterior mean, mu(x)), embeds the latents in 2-D with
t-SNE (van der Maaten & Hinton 2008) and, for contrast, with PCA, and measures how well the digits separate: 10-nearest-
neighbour accuracy and silhouette score in the latent space and in each map, and the trustworthiness of each map
(how many of a point's neighbours in 2-D are its neighbours in the latent space too).

    python vae_latent_space_visualization.py                 # CPU: under a minute once vae_mnist.py has run
    python vae_latent_space_visualization.py --device cuda   # the encoder on the GPU; t-SNE stays on the CPU
    python vae_mnist.py --latent-dim 2 --out-dir outputs/vae_2d && \\
        python vae_latent_space_visualization.py --vae-checkpoint outputs/vae_2d/checkpoint.pt   # + the raw plane

Writes to outputs/vae_latent_space_visualization/: tsne.png, tsne_vs_pca.png (and, for a 2-D latent, latent_2d.png and
latent_manifold.png), embedding.csv (index in the MNIST test set, x, y, label), metrics.json and config.json.
"""
import csv
import os

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import patheffects
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE, trustworthiness
from sklearn.metrics import silhouette_score
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from common import cli, data, devices, distributed, files, plots, progress, run_folder, seeds, vae

NEIGHBOURS = 10            # k of the k-NN accuracy and of trustworthiness
# Trustworthiness compares each point's k nearest neighbours and needs more than 2k points.
MIN_POINTS = 2 * NEIGHBOURS + 1

SETTINGS = {
    # Shared with the other scripts (common/cli.py, vae.py): --data-dir, --out-dir, --device auto, --seed 0,
    # --overwrite, --vae-checkpoint outputs/vae_mnist/checkpoint.pt.
    **cli.BASE_SETTINGS,
    **vae.CHECKPOINT_SETTINGS,
    "num_points": (10_000, "MNIST test images to encode and embed (a seeded random subset when fewer than 10,000)",
                   f"[{MIN_POINTS}, 10000]"),
    "perplexity": (30.0, "t-SNE's effective number of neighbours per point (5-50 is usual)", "(0, inf)"),
    "tsne_iterations": (500, "t-SNE gradient steps, the first 250 with early exaggeration; 500 match 1000 in "
                             "10-NN accuracy and trustworthiness here at half the time (BENCHMARKS.md)", "[300, inf)"),
    "tsne_backend": ("auto", "auto | sklearn | opentsne: auto takes openTSNE's FFT-accelerated t-SNE when it is "
                             "installed (pip install openTSNE; 1.7x faster here), else scikit-learn's Barnes-Hut",
                     ("auto", "sklearn", "opentsne")),
    "metric_points": (5000, "points used for trustworthiness and silhouette, which need all pairwise distances",
                      f"[{MIN_POINTS}, 10000]"),
}
FOLDS = 5                  # of the cross-validated k-NN accuracy
EARLY_EXAGGERATION_STEPS = 250  # scikit-learn's fixed length of the early-exaggeration phase


@torch.no_grad()
def encode(model, images, batch_size=1000):
    """Posterior means mu(x) of uint8 ``images``, as a float32 numpy array."""
    return torch.cat([model.encode(data.to_unit_range(batch))[0] for batch in images.split(batch_size)]).cpu().numpy()


def pick_backend(name):
    try:
        import openTSNE  # noqa: F401  (optional: only its presence is checked here)
        installed = True
    except ImportError:
        installed = False
    if name == "opentsne" and not installed:
        raise cli.UserError("--tsne-backend opentsne needs the openTSNE package: pip install openTSNE")
    return "opentsne" if name == "opentsne" or (name == "auto" and installed) else "sklearn"


def tsne(latents, backend, perplexity, iterations, seed):
    """2-D t-SNE embedding; both backends start from the PCA projection (stable, global structure kept) and use
    every core for the gradient."""
    threads = os.cpu_count() or 1
    if backend == "opentsne":
        from openTSNE import TSNE as OpenTSNE
        return np.asarray(OpenTSNE(perplexity=perplexity, early_exaggeration_iter=EARLY_EXAGGERATION_STEPS,
                                   n_iter=iterations - EARLY_EXAGGERATION_STEPS, initialization="pca",
                                   n_jobs=threads, random_state=seed).fit(latents))
    return TSNE(perplexity=perplexity, max_iter=iterations, init="pca", learning_rate="auto", n_jobs=threads,
                random_state=seed).fit_transform(latents)


def separation(points, labels, subset, seed):
    """How well ``labels`` separate among ``points``: 5-fold cross-validated 10-NN accuracy over all points, and the
    silhouette score (needs all pairwise distances) over the ``subset`` of them.

    The folds keep each digit's share where every digit has a member for every fold; a few hundred points or fewer
    may not, and are split into folds at random."""
    stratified = np.unique(labels, return_counts=True)[1].min() >= FOLDS
    folds = (StratifiedKFold if stratified else KFold)(n_splits=FOLDS, shuffle=True, random_state=seed)
    accuracy = cross_val_score(KNeighborsClassifier(NEIGHBOURS), points, labels, cv=folds).mean()
    return float(accuracy), float(silhouette_score(points[subset], labels[subset]))


def scatter(axes, points, labels, title):
    """Points coloured by digit, small and translucent so 10,000 of them stay readable; each digit's label at its
    cluster's centre (the median, which an outlying few do not drag away), moved apart from labels it would cover."""
    colours = plt.get_cmap("tab10")
    texts, centres = [], []
    for digit in range(10):
        members = points[labels == digit]
        axes.scatter(members[:, 0], members[:, 1], s=2, alpha=0.5, color=colours(digit), label=str(digit),
                     linewidths=0, rasterized=True)
        if len(members):
            centres.append(np.median(members, axis=0))
            texts.append(axes.text(*centres[-1], str(digit), fontsize=14, fontweight="bold", ha="center",
                                   va="center", color=colours(digit),
                                   path_effects=[patheffects.withStroke(linewidth=3, foreground="white")]))
    separate_labels(axes, texts, np.array(centres))
    axes.set_title(title)
    axes.legend(title="digit", markerscale=5, loc="center left", bbox_to_anchor=(1, 0.5), frameon=False)


def separate_labels(axes, texts, centres, margin=2, rounds=100):
    """Push apart the centred ``texts`` whose boxes overlap (clusters whose centres lie close, as in a PCA map), pair
    by pair along the direction in which they overlap least, until none do; a label moved off its cluster's centre
    gets a thin line back to it. Works in pixels, so it needs the axes' final size and limits."""
    axes.figure.canvas.draw()
    boxes = [text.get_window_extent() for text in texts]
    sizes = np.array([(box.width, box.height) for box in boxes])
    start = axes.transData.transform(centres)
    positions = start.copy()
    for _ in range(rounds):
        moved = False
        for i in range(len(texts)):
            for j in range(i + 1, len(texts)):
                overlap = (sizes[i] + sizes[j]) / 2 + margin - np.abs(positions[i] - positions[j])
                if (overlap > 0).all():
                    way = np.argmin(overlap)
                    sign = 1.0 if positions[i, way] >= positions[j, way] else -1.0
                    positions[i, way] += sign * overlap[way] / 2
                    positions[j, way] -= sign * overlap[way] / 2
                    moved = True
        if not moved:
            break
    to_data = axes.transData.inverted()
    for text, centre, position, before, size in zip(texts, centres, positions, start, sizes):
        text.set_position(to_data.transform(position))
        if (np.abs(position - before) > size / 2).any():  # the label no longer covers its centre
            axes.plot(*zip(centre, to_data.transform(position)), color=text.get_color(), linewidth=0.8,
                      scalex=False, scaley=False)


def plot_maps(out, embedding, pca, latents, labels, metrics):
    figure, axes = plt.subplots(figsize=(8, 7))
    scatter(axes, embedding, labels, f"t-SNE of the VAE's latent means ({len(labels):,} MNIST test digits)\n"
                                     f"10-NN accuracy {metrics['knn_accuracy_tsne']:.3f}, "
                                     f"trustworthiness {metrics['trustworthiness_tsne']:.3f}")
    axes.set(xlabel="t-SNE 1", ylabel="t-SNE 2")
    plots.save_figure(figure, out / "tsne.png")

    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 6))
    scatter(left, embedding, labels, f"t-SNE: 10-NN accuracy {metrics['knn_accuracy_tsne']:.3f}")
    left.set(xlabel="t-SNE 1", ylabel="t-SNE 2")
    left.get_legend().remove()
    scatter(right, pca, labels, f"PCA: 10-NN accuracy {metrics['knn_accuracy_pca']:.3f}")
    right.set(xlabel=f"PC 1 ({metrics['pca_explained_variance'][0]:.0%} of variance)",
              ylabel=f"PC 2 ({metrics['pca_explained_variance'][1]:.0%} of variance)")
    figure.suptitle(f"The same {latents.shape[1]}-D latent means, two ways to 2-D")
    plots.save_figure(figure, out / "tsne_vs_pca.png")


@torch.no_grad()
def plot_latent_plane(out, model, latents, labels, device, steps=20):
    """For a 2-D latent: the raw posterior means, and the decoder's images across the plane (Kingma & Welling 2014,
    fig. 4) on an evenly spaced grid over the part of the plane the means fill: from their 0.5th to 99.5th percentile
    in each coordinate, so that a few outlying digits do not spread the grid thin."""
    figure, axes = plt.subplots(figsize=(8, 7))
    scatter(axes, latents, labels, "The VAE's 2-D latent space: posterior means of MNIST test digits")
    axes.set(xlabel="z1", ylabel="z2")
    plots.save_figure(figure, out / "latent_2d.png")

    (low1, low2), (high1, high2) = np.percentile(latents, [0.5, 99.5], axis=0)
    z1 = torch.linspace(float(low1), float(high1), steps)
    z2 = torch.linspace(float(high2), float(low2), steps)  # rows top to bottom: z2 high to low
    grid2, grid1 = torch.meshgrid(z2, z1, indexing="ij")
    images = torch.sigmoid(model.decode(torch.stack([grid1.flatten(), grid2.flatten()], 1).to(device)))
    figure, axes = plt.subplots(figsize=(8, 8))
    size = images.shape[-1]
    # Each tile's centre sits at the z it was decoded from; the box is square, so are the tiles.
    axes.imshow(plots.tile(images, steps), cmap="gray", vmin=0, vmax=1, aspect="auto",
                extent=(*plots.tile_extent(low1, high1, steps, size), *plots.tile_extent(low2, high2, steps, size)))
    axes.set_box_aspect(1)
    axes.set(xlabel="z1", ylabel="z2", title=f"Decoded images across the 2-D latent plane, {steps} x {steps} z\n"
                                             f"(the middle 99% of the test digits' posterior means in each of z1, z2)")
    plots.save_figure(figure, out / "latent_manifold.png")


def write_embedding(path, indices, embedding, labels):
    def write(temporary):
        with open(temporary, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["index", "x", "y", "label"])
            writer.writerows((int(i), f"{x:.4f}", f"{y:.4f}", int(label))
                             for i, (x, y), label in zip(indices, embedding, labels))
    files.atomic_write(path, write)


def main(argv=None):
    cfg = cli.parse(SETTINGS, __doc__, argv)
    backend = pick_backend(cfg.tsne_backend)
    if not 3 * cfg.perplexity < cfg.num_points:
        raise cli.UserError(f"--perplexity {cfg.perplexity} needs more than {3 * cfg.perplexity:.0f} points; "
                            f"raise --num-points (now {cfg.num_points}) or lower --perplexity")
    device = devices.pick_device(cfg.device)
    out = run_folder.open_run(__file__, cfg, device)
    model, _ = vae.load_or_train_vae(cfg.vae_checkpoint, cfg.data_dir, device, cfg.seed)
    generator = seeds.seed_everything(cfg.seed)
    if not distributed.is_main():
        return None  # under torchrun: the other processes' part was training the VAE, if it was absent
    images, labels = data.load_mnist(cfg.data_dir, train=False, device=device)
    run_folder.start_record()
    indices = torch.randperm(len(images), generator=generator)[:cfg.num_points].sort().values.numpy()
    latents = encode(model, images[indices])
    labels = labels.cpu().numpy()[indices]

    print(f"t-SNE ({backend}) of {len(latents):,} latent means of size {latents.shape[1]} ...", flush=True)
    timer = progress.Timer(torch.device("cpu"))
    embedding = tsne(latents, backend, cfg.perplexity, cfg.tsne_iterations, cfg.seed)
    tsne_seconds = timer.elapsed()
    pca = PCA(2, random_state=cfg.seed).fit(latents)

    # Trustworthiness and silhouette compare all pairs of points: on a seeded subset, so 10k points stay quick.
    subset = np.random.default_rng(cfg.seed).permutation(len(latents))[:cfg.metric_points]
    metrics = {"num_points": len(latents), "latent_dim": latents.shape[1], "tsne_backend": backend,
               "tsne_seconds": tsne_seconds, "perplexity": cfg.perplexity, "tsne_iterations": cfg.tsne_iterations,
               "pca_explained_variance": pca.explained_variance_ratio_.tolist()}
    for space, points in [("latent", latents), ("tsne", embedding), ("pca", pca.transform(latents))]:
        metrics[f"knn_accuracy_{space}"], metrics[f"silhouette_{space}"] = separation(points, labels, subset, cfg.seed)
        if space != "latent":
            metrics[f"trustworthiness_{space}"] = float(
                trustworthiness(latents[subset], points[subset], n_neighbors=NEIGHBOURS))
    files.write_json(out / "metrics.json", metrics)
    write_embedding(out / "embedding.csv", indices, embedding, labels)

    plot_maps(out, embedding, pca.transform(latents), latents, labels, metrics)
    if latents.shape[1] == 2:
        plot_latent_plane(out, model, latents, labels, device)

    print(f"{'space':8s}{'10-NN accuracy':>16s}{'silhouette':>12s}{'trustworthiness':>17s}")
    for space in ("latent", "tsne", "pca"):
        trust = metrics.get(f"trustworthiness_{space}")
        print(f"{space:8s}{metrics[f'knn_accuracy_{space}']:16.3f}{metrics[f'silhouette_{space}']:12.3f}"
              f"{'' if trust is None else f'{trust:.3f}':>17s}")
    print(f"t-SNE: {tsne_seconds:.1f} s with {backend}\nwrote {out}/")
    return metrics


if __name__ == "__main__":
    cli.run(main)
