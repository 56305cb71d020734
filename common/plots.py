"""Figures every script draws: training curves, image grids, and labelled rows of images.

All figures are written atomically at 150 dpi with labelled axes, so they can go into a report as they are.
"""
import matplotlib

matplotlib.use("Agg")  # files only: no display needed, none opened
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from common.runs import atomic_write  # noqa: E402

DPI = 150


def save_figure(figure, path):
    atomic_write(path, lambda temporary: figure.savefig(temporary, dpi=DPI, bbox_inches="tight"))
    plt.close(figure)


def plot_curves(path, series, xlabel, ylabel, title, logy=False, ylim=None):
    """Line plot of named series: ``{label: values}`` (x = 1, 2, ...) or ``{label: (x, values)}``.

    ``ylim`` = (low, high) zooms in on the part that matters, e.g. past a first epoch that is off the scale.
    """
    figure, axes = plt.subplots(figsize=(6, 4))
    for label, values in series.items():
        x, y = values if isinstance(values, tuple) else (np.arange(1, len(values) + 1), values)
        axes.plot(x, y, label=label, marker="o" if len(y) <= 30 else None, markersize=3)
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logy:
        axes.set_yscale("log")
    if ylim:
        axes.set_ylim(*ylim)
    axes.grid(alpha=0.3)
    axes.legend()
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


def show_tiles(axes, images, ncols, title=None):
    axes.imshow(tile(images, ncols), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes.set_xticks([])
    axes.set_yticks([])
    if title:
        axes.set_title(title)


def save_grid(path, images, ncols, title):
    """A grid of images in [0, 1] with a title."""
    nrows = -(-len(images) // ncols)
    figure, axes = plt.subplots(figsize=(0.5 * ncols + 0.4, 0.5 * nrows + 0.6))
    show_tiles(axes, images, ncols, title)
    save_figure(figure, path)


def save_labelled_rows(path, rows, title):
    """One row of images per ``(label, images)`` pair, the label on its left: before/after, epoch by epoch."""
    ncols = max(len(images) for _, images in rows)
    figure, all_axes = plt.subplots(len(rows), 1, figsize=(0.55 * ncols + 1.5, 0.6 * len(rows) + 0.6),
                                    squeeze=False)
    for axes, (label, images) in zip(all_axes[:, 0], rows):
        show_tiles(axes, images, ncols)
        axes.set_ylabel(label, rotation=0, ha="right", va="center")
    all_axes[0, 0].set_title(title)
    save_figure(figure, path)
