"""Figures every script draws: training curves, image grids, and labelled rows of images.

All figures are written atomically at 150 dpi with labelled axes, so they can go into a report as they are. A quick
run draws them too, from one epoch of one step: the axis helpers below keep such figures readable (a one-point series
still shows, an axis of epochs has whole-epoch ticks, tick labels are plain numbers).
"""
import matplotlib

matplotlib.use("Agg")  # files only: no display needed, none opened
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import LogFormatter, MaxNLocator, ScalarFormatter  # noqa: E402

from common.runs import atomic_write  # noqa: E402

DPI = 150
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
    """Log-axis tick labels as plain numbers (2700, 0.3) rather than 2.7x10^3, on the ticks matplotlib would label.

    A range narrower than a decade has no power of ten in view: matplotlib then labels minor ticks, in scientific
    notation. ``minor_thresholds`` label some minor ticks up to two decades, where the powers of ten alone are few.
    """

    def __init__(self, minor=False):
        super().__init__(labelOnlyBase=not minor, minor_thresholds=(2, 0.5))

    def __call__(self, x, pos=None):
        return f"{x:g}" if super().__call__(x, pos) else ""


def style_axes(axes, epochs_from=0):
    """The finish of every panel of curves, called once its scales are set: a light grid; plain tick labels, with no
    offset (a "+1.021" above the axis) and no scientific notation, on linear and log axes; and, where the x axis
    counts epochs from ``epochs_from`` (None: x is not epochs), whole-epoch ticks on an axis that starts there.

    MaxNLocator(integer=True) alone falls back to fractional ticks (0.945, 0.960, ...) when fewer than two whole
    numbers are in view, as after one epoch: ``min_n_ticks=1`` keeps the whole ones.
    """
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
        axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    axes.grid(alpha=0.3)


def plot_curves(path, series, xlabel, ylabel, title, logy=False, zoom_after=None):
    """Line plot of named series over epochs: ``{label: values}`` (x = 1, 2, ...) or ``{label: (x, values)}``.

    The axes hold every point. ``zoom_after`` = x: once the series run at least two epochs past x, a second panel shows
    their points beyond x at a scale of their own, e.g. without a first epoch that would flatten the rest.
    """
    series = {label: values if isinstance(values, tuple) else (np.arange(1, len(values) + 1), values)
              for label, values in series.items()}
    last = max(max(x) for x, _ in series.values())
    zoom = zoom_after is not None and last >= zoom_after + 2
    figure, all_axes = plt.subplots(1, 2 if zoom else 1, figsize=(11 if zoom else 6, 4), squeeze=False,
                                    layout="constrained")
    for axes, after in zip(all_axes[0], [None, zoom_after]):
        for label, (x, y) in series.items():
            x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
            shown = x > after if after is not None else np.ones(len(x), bool)
            plot_line(axes, x[shown], y[shown], label=label)
        axes.set(xlabel=xlabel, ylabel=ylabel)
        if logy:
            axes.set_yscale("log")
        style_axes(axes, epochs_from=after or 0)
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
