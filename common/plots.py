"""Figures every script draws: training curves, image grids, and labelled rows of images.

A quick run draws them from one epoch of one step: the axis helpers below keep such figures readable too.
"""
import matplotlib

matplotlib.use("Agg")  # files only: no display needed, none opened
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import LogFormatter, MaxNLocator, ScalarFormatter  # noqa: E402

from common.files import atomic_write  # noqa: E402

DPI = 150
GRID_SIZE = 64  # the fixed-noise images a GAN draws after every epoch, 8 x 8
FEW_POINTS = 30  # a line of at most this many points gets markers too: a single point has no line to draw


def save_figure(figure, path):
    atomic_write(path, lambda temporary: figure.savefig(temporary, dpi=DPI, bbox_inches="tight"))
    plt.close(figure)


def plot_line(axes, x, y, **kwargs):
    """``axes.plot(x, y)``, with markers when the series is short enough for them to be told apart."""
    if len(y) <= FEW_POINTS:
        kwargs = {"marker": "o", "markersize": 3, **kwargs}
    return axes.plot(x, y, **kwargs)


class PlainLogFormatter(LogFormatter):
    """Log-axis tick labels as plain numbers (2700, 0.3) rather than 2.7x10^3. ``minor_thresholds`` label some minor
    ticks up to two decades: a narrower range may hold no power of ten to label."""

    def __init__(self, minor=False):
        super().__init__(labelOnlyBase=not minor, minor_thresholds=(2, 0.5))

    def __call__(self, x, pos=None):
        return f"{x:g}" if super().__call__(x, pos) else ""


def style_axes(axes, epochs_from=0):
    """The finish of every panel of curves, once its scales are set: a light grid, plain tick labels (no offset, no
    scientific notation) and, where x counts epochs from ``epochs_from`` (None: it does not), whole-epoch ticks."""
    for axis in (axes.xaxis, axes.yaxis):
        formatter = axis.get_major_formatter()  # labels set by name (classes, say) are left as they are
        if isinstance(formatter, LogFormatter):
            axis.set_major_formatter(PlainLogFormatter())
            axis.set_minor_formatter(PlainLogFormatter(minor=True))
        elif isinstance(formatter, ScalarFormatter):
            formatter.set_useOffset(False)
            formatter.set_scientific(False)
    if epochs_from is not None:
        axes.set_xlim(left=epochs_from)
        # min_n_ticks=1: with fewer than two whole numbers in view, integer=True alone falls back to fractions.
        axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    axes.grid(alpha=0.3)


def plot_curves(path, series, xlabel, ylabel, title, zoom_after):
    """Named series ``{label: (epochs > 0, values)}``; once they run two epochs past ``zoom_after``, a second panel
    shows their points beyond it at their own scale, e.g. without a first epoch that would flatten the rest."""
    last = max(max(x) for x, _ in series.values())
    zoom = last >= zoom_after + 2
    figure, all_axes = plt.subplots(1, 2 if zoom else 1, figsize=(11 if zoom else 6, 4), squeeze=False,
                                    layout="constrained")
    for axes, after in zip(all_axes[0], [0, zoom_after]):
        for label, (x, y) in series.items():
            x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
            plot_line(axes, x[x > after], y[x > after], label=label)
        axes.set(xlabel=xlabel, ylabel=ylabel)
        style_axes(axes, epochs_from=after)
        axes.legend()
    if zoom:
        all_axes[0, 0].set_title("every epoch")
        all_axes[0, 1].set_title(f"after epoch {zoom_after:g}, at its own scale")
        figure.suptitle(title)
    else:
        all_axes[0, 0].set_title(title)
    save_figure(figure, path)


def tile(images, ncols):
    """N x C x H x W images in [0, 1] -> one H' x W' (x 3) array, a one-pixel white gap between tiles."""
    images = images.detach().float().cpu().clamp(0, 1)
    n, channels, height, width = images.shape
    nrows = -(-n // ncols)
    canvas = torch.ones(channels, nrows * (height + 1) - 1, ncols * (width + 1) - 1)
    for i, image in enumerate(images):
        row, col = divmod(i, ncols)
        canvas[:, row * (height + 1):row * (height + 1) + height, col * (width + 1):col * (width + 1) + width] = image
    return canvas[0].numpy() if channels == 1 else canvas.permute(1, 2, 0).numpy()


def tile_extent(low, high, count, size):
    """(start, end) of the axis that puts the centres of ``count`` tiles of ``size`` pixels, laid out by ``tile``, at
    ``count`` evenly spaced values from ``low`` to ``high``: for ``imshow``'s ``extent``, so ticks read true."""
    per_pixel = (high - low) / (count - 1) / (size + 1)
    start = low - size / 2 * per_pixel
    return start, start + (count * (size + 1) - 1) * per_pixel


def show_tiles(axes, images, ncols, title=None):
    axes.imshow(tile(images, ncols), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes.set(xticks=[], yticks=[], title=title or "")


def save_grid(path, images, ncols, title):
    nrows = -(-len(images) // ncols)
    figure, axes = plt.subplots(figsize=(0.5 * ncols + 0.4, 0.5 * nrows + 0.6))
    show_tiles(axes, images, ncols, title)
    save_figure(figure, path)


def save_tiles(path, images, ncols):
    """Images in [0, 1] tiled into one PNG of their own pixels, with no axes or title: a GAN's epoch grid."""
    tiles = tile(images, ncols)
    atomic_write(path, lambda temporary: plt.imsave(temporary, tiles, cmap="gray", vmin=0, vmax=1, format="png"))


def save_labelled_rows(path, rows, title):
    """One row of images per ``(label, images)`` pair, the label on its left: before/after, epoch by epoch."""
    ncols = max(len(images) for _, images in rows)
    figure, all_axes = plt.subplots(len(rows), 1, figsize=(0.55 * ncols + 1.5, 0.6 * len(rows) + 0.6), squeeze=False)
    for axes, (label, images) in zip(all_axes[:, 0], rows):
        show_tiles(axes, images, ncols)
        axes.set_ylabel(label, rotation=0, ha="right", va="center")
    all_axes[0, 0].set_title(title)
    save_figure(figure, path)


# ----- a GAN's training -----

def plot_gan_training(out, history, title, reference):
    """losses.png, discriminator.png, progress.png (from the epoch grids in out/grids/) and, where quality was
    measured, quality.png (the distance to ``reference``), from a GAN's history."""
    plot_losses(out / "losses.png", history, f"{title}: losses")
    plot_discriminator_outputs(out / "discriminator.png", history, f"{title}: discriminator outputs")
    plot_progress(out / "progress.png", out / "grids", len(history["loss_g"]),
                  f"{title}: the same {GRID_SIZE} z vectors after each epoch")
    if history["quality_epoch"]:
        plot_quality(out / "quality.png", history, title, reference)


def smooth(values, window):
    """Moving average over ``window`` steps (shorter at the ends), so per-iteration curves read as trends."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2 or window < 2:
        return values
    kernel = np.ones(min(window, len(values)))
    return np.convolve(values, kernel, mode="same") / np.convolve(np.ones(len(values)), kernel, mode="same")


def plot_iterations(axes, history, curves):
    """Per-iteration ``curves`` (history key, label, colour) against the epoch: each iteration faint, a moving mean
    over about a fifth of an epoch solid. Returns the window of the mean (1: none) and a title that says so."""
    epochs = len(history["loss_g"])
    steps_per_epoch = len(history[curves[0][0]]) / epochs
    window = max(1, round(steps_per_epoch / 5))
    for key, label, color in curves:
        x = np.arange(1, len(history[key]) + 1) / steps_per_epoch
        if window > 1:
            axes.plot(x, history[key], color=color, alpha=0.15, linewidth=0.5)
        plot_line(axes, x, smooth(history[key], window), color=color, label=label)
    axes.set_xlabel("epoch")
    return window, "per iteration" + (f" (faint: each; solid: mean of {window})" if window > 1 else "")


def plot_losses(path, history, title):
    """G and D loss per iteration (faint: raw, solid: smoothed) beside their means per epoch."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    curves = [("step_loss_d", "discriminator", "C0"), ("step_loss_g", "generator", "C1")]
    window, subtitle = plot_iterations(left, history, curves)
    # The first iterations' spikes would squash the rest: the axis holds the smoothed curves and the raw losses'
    # 0.5th to 99.5th percentiles, and 0 (a hinge loss of G falls below it).
    raw = np.concatenate([history[key] for key, _, _ in curves])
    solid = np.concatenate([smooth(history[key], window) for key, _, _ in curves])
    low = min(0, np.percentile(raw, 0.5), solid.min())
    high = max(np.percentile(raw, 99.5), solid.max())
    pad = 0.05 * (high - low)
    left.set(ylabel="loss", title=subtitle, ylim=(low - pad if low < 0 else 0, high + pad))
    epochs = np.arange(1, len(history["loss_g"]) + 1)
    plot_line(right, epochs, history["loss_d"], color="C0", label="discriminator")
    plot_line(right, epochs, history["loss_g"], color="C1", label="generator")
    right.set(xlabel="epoch", ylabel="mean loss over the epoch", title="per epoch")
    for axes in (left, right):
        style_axes(axes)
    # One legend for both panels, below them: inside, it would cover the iterations' curves.
    figure.legend(*right.get_legend_handles_labels(), loc="outside lower center", ncols=2)
    figure.suptitle(title)
    save_figure(figure, path)


def plot_discriminator_outputs(path, history, title):
    """Mean D(x) and D(G(z)) per iteration, which at the game's equilibrium both sit at 1/2."""
    figure, axes = plt.subplots(figsize=(6.5, 4), layout="constrained")
    _, subtitle = plot_iterations(axes, history, [("step_d_real", "D(x), real images", "C2"),
                                                  ("step_d_fake", "D(G(z)), generated", "C3")])
    axes.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="equilibrium")
    # A little beyond [0, 1]: a discriminator that wins outright puts its curves on 0 and 1, which must still show.
    axes.set(ylabel="mean discriminator output", ylim=(-0.03, 1.03), title=f"{title}\n{subtitle}")
    style_axes(axes)
    figure.legend(loc="outside lower center", ncols=3)  # below the axes: inside, it would cover the curves
    save_figure(figure, path)


def plot_progress(path, grids, num_epochs, title):
    """The epoch grids of five evenly spaced epochs side by side, each at least as many screen pixels wide as its
    file: the one-pixel gaps between tiles would otherwise be dropped unevenly when scaled down."""
    epochs = sorted({round(1 + i * (num_epochs - 1) / 4) for i in range(5)})
    images = [plt.imread(grids / f"epoch_{epoch:03d}.png") for epoch in epochs]
    inches = max(2.6, 1.6 * images[0].shape[1] / DPI)  # the axes take about 2/3 of a panel's width
    figure, all_axes = plt.subplots(1, len(epochs), figsize=(inches * len(epochs), inches + 0.4), squeeze=False)
    for axes, epoch, image in zip(all_axes[0], epochs, images):
        axes.imshow(image, interpolation="nearest")
        axes.set(xticks=[], yticks=[], title=f"epoch {epoch}")
    figure.suptitle(title)
    save_figure(figure, path)


def plot_quality(path, history, title, reference):
    """The classifier's numbers per epoch: the Frechet distance in its features (to the real images ``reference``),
    the inception score of its probabilities and the rarest class's share."""
    epochs = history["quality_epoch"]
    figure, (fd, score, share) = plt.subplots(1, 3, figsize=(13, 3.8), layout="constrained")
    plot_line(fd, epochs, history["frechet_distance"])
    fd.set(ylabel="classifier distance (lower is better)", yscale="log")
    plot_line(score, epochs, history["inception_score"], color="C1")
    score.set(ylabel="inception score (higher is better)")
    balanced = 100 / len(history["class_shares"][-1])
    plot_line(share, epochs, np.array(history["min_class_share"]) * 100, color="C2", label="rarest class")
    share.axhline(balanced, color="grey", linestyle=":", label="balanced")
    # The rarest share lies between 0 (a class never drawn) and the balanced one; a margin keeps both ends visible.
    share.set(ylabel="share of generated images (%)", ylim=(-0.05 * balanced, 1.05 * balanced))
    for axes in (fd, score, share):
        axes.set(xlabel="epoch")
        style_axes(axes)
    share.legend()
    figure.suptitle(f"{title}: generated images against {reference}, in a classifier's eyes (the distance: Frechet, "
                    f"in its features)")
    save_figure(figure, path)
