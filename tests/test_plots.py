"""The figures read well at any run length: drawn from histories of one epoch of one step up to many epochs, every
series shows, every plotted point lies inside its axes, epoch axes have whole-epoch ticks and tick labels are plain
numbers. Figures are kept in memory (``save_figure`` replaced), drawn, and inspected as a reader would see them."""
from pathlib import Path

import numpy as np
import pytest
import torch

import dcgan_cifar10
import latent_interpolation
import vae_latent_space_visualization as lsv
import vae_mnist
from common import dcgan, plots

pytestmark = pytest.mark.filterwarnings("error")  # a warning while drawing (identical limits, say) fails the test


@pytest.fixture
def figures(monkeypatch):
    """{file name: drawn figure} of every figure the code under test saves."""
    drawn = {}

    def keep(figure, path):
        figure.canvas.draw()
        drawn[Path(path).name] = figure

    monkeypatch.setattr(plots, "save_figure", keep)
    yield drawn
    plots.plt.close("all")


def gan_history(epochs, steps_per_epoch):
    """A GAN history as gan.start and gan.record_epoch build it. The quality numbers barely change, as after a
    short run: a Frechet distance near 2720 and an inception score near 1.0215, which matplotlib's default labels
    wrote as 2.72x10^3 and with a "+1.021" offset."""
    rng = np.random.default_rng(0)
    history = {"quality_epoch": list(range(1, epochs + 1)),
               "frechet_distance": list(2720 - 0.7 * np.arange(epochs)),
               "inception_score": list(1.0214 + 0.0001 * np.arange(epochs)),
               "class_shares": [[0.1] * 10] * epochs, "min_class_share": [0.0] * epochs, "seconds": [1.0] * epochs}
    for key, centre in [("loss_d", 1.3), ("loss_g", 0.8), ("d_real", 0.6), ("d_fake", 0.4)]:
        steps = centre + 0.1 * rng.standard_normal(epochs * steps_per_epoch)
        history["step_" + key] = steps.tolist()
        history[key] = steps.reshape(epochs, steps_per_epoch).mean(1).tolist()
    return history


def data_lines(axes):
    """The lines that plot data (not axhline's reference lines, whose x runs in axes coordinates)."""
    return [line for line in axes.get_lines() if line.get_transform() == axes.transData]


def check_readable(axes, epochs=True):
    """Every solid data line shows (two points or markers) inside the axes; tick labels are plain numbers without an
    offset; on an epoch x axis, the ticks in view are whole epochs."""
    lines = [line for line in data_lines(axes) if (line.get_alpha() or 1) == 1]  # faint raw curves may be cut
    assert lines, "no data"
    low, high = sorted(axes.get_ylim())
    left, right = sorted(axes.get_xlim())
    for line in lines:
        x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        assert len(x) >= 2 or line.get_marker() not in (None, "", "None", " "), line.get_label()
        assert ((low <= y) & (y <= high)).all() and ((left <= x) & (x <= right)).all(), line.get_label()
    for axis in (axes.xaxis, axes.yaxis):
        assert axis.get_offset_text().get_text() == ""
        for label in axis.get_ticklabels(which="both"):
            text = label.get_text()
            assert "times" not in text and "e+" not in text and "e-" not in text and "$" not in text, text
    if epochs:
        ticks = [tick for tick in axes.get_xticks() if left <= tick <= right]
        assert ticks and all(float(tick).is_integer() for tick in ticks), ticks


@pytest.mark.parametrize("epochs, steps_per_epoch", [(1, 1), (2, 1), (2, 8), (12, 40)])
def test_gan_figures_read_well_after_any_number_of_epochs_and_steps(figures, tmp_path, epochs, steps_per_epoch):
    for epoch in range(1, epochs + 1):  # the epoch grids, as the loop writes them
        plots.save_tiles(tmp_path / "grids" / f"epoch_{epoch:03d}.png", torch.rand(64, 1, 28, 28), 8)
    plots.plot_gan_training(tmp_path, gan_history(epochs, steps_per_epoch), "GAN", "training images")
    per_iteration, per_epoch = figures["losses.png"].axes
    for axes in (per_iteration, per_epoch, *figures["discriminator.png"].axes, *figures["quality.png"].axes):
        check_readable(axes)
    assert "mean of 1" not in per_iteration.get_title() + figures["discriminator.png"].axes[0].get_title()
    # One legend per figure, naming what it shows, outside the axes so that it covers no curve.
    assert [text.get_text() for text in figures["losses.png"].legends[0].get_texts()] == ["discriminator",
                                                                                           "generator"]
    fd_axis = figures["quality.png"].axes[0].yaxis
    assert fd_axis.get_scale() == "log"
    assert any(label.get_text() for label in fd_axis.get_ticklabels(which="both")), "the log axis has no label"


def test_the_per_iteration_axis_holds_the_smoothed_curves_and_a_hinge_loss_below_zero(figures, tmp_path):
    history = gan_history(3, 50)
    history["step_loss_g"] = (np.array(history["step_loss_g"]) - 2).tolist()  # hinge: -E[D(G(z))] can be negative
    history["step_loss_d"][0] = 30.0  # a first-step spike, which alone would squash the rest
    plots.plot_losses(tmp_path / "losses.png", history, "GAN")
    per_iteration = figures["losses.png"].axes[0]
    check_readable(per_iteration)
    assert per_iteration.get_ylim()[0] < min(history["step_loss_g"]) and per_iteration.get_ylim()[1] < 10


def vae_history(epochs):
    """Falling losses whose first training mean, over a model that starts from noise, dwarfs the rest."""
    test = 100 + 80 / np.arange(1, epochs + 1)
    return {"train_loss": list(test + 60 * (np.arange(epochs) == 0) + 3), "test_loss": list(test),
            "train_kl": list(np.linspace(10, 20, epochs)), "test_kl": list(np.linspace(11, 21, epochs))}


@pytest.mark.parametrize("epochs", [1, 2, 9])
def test_elbo_and_kl_show_both_series_at_any_number_of_epochs(figures, tmp_path, epochs):
    vae_mnist.plot_curves(vae_history(epochs), tmp_path, "binarised MNIST")
    for name in ("elbo.png", "kl.png"):
        all_axes = figures[name].axes
        title = figures[name]._suptitle or all_axes[0].title  # one panel: the title is the axes'
        assert title.get_text().startswith("VAE on binarised MNIST: ")
        assert len(all_axes) == (2 if epochs >= 3 else 1)  # the zoomed panel only where it leaves two epochs
        for axes in all_axes:
            check_readable(axes)
            # Each legend entry names a line that has points in view.
            shown = {line.get_label() for line in data_lines(axes) if len(line.get_xdata())}
            assert {text.get_text() for text in axes.get_legend().get_texts()} == shown
            assert shown == {"train (mean over the epoch)", "test (after the epoch)"}


def test_real_vs_generated_shows_as_many_real_as_generated_images(figures, tmp_path):
    torch.manual_seed(0)
    generator = dcgan.Generator(latent_dim=8, base_channels=4)
    real = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8)  # a folder of fewer images than the grid
    dcgan_cifar10.plot_real_vs_generated(generator, real, "DCGAN", "a folder", tmp_path, "cpu")
    left, right = figures["real_vs_generated.png"].axes
    assert left.images[0].get_array().shape == right.images[0].get_array().shape


def test_tile_extent_puts_each_tile_centre_at_its_value():
    values = np.linspace(-3.2, 4.1, 7)
    start, end = plots.tile_extent(values[0], values[-1], len(values), 28)
    width = plots.tile(torch.zeros(7, 1, 28, 28), 7).shape[1]
    centres = start + (np.arange(7) * 29 + 14) * (end - start) / width  # pixel i covers [i, i + 1)
    assert np.allclose(centres, values)


class RecordingDecoder:
    """Decodes every z to a blank image and keeps the z's, in the order their tiles are laid out."""

    def decode(self, z):
        self.z = z.clone()
        return torch.zeros(len(z), 1, 28, 28)


def test_latent_manifold_puts_each_tile_at_its_z_and_covers_the_posterior_means(figures, tmp_path):
    rng = np.random.default_rng(0)
    latents = np.stack([rng.normal(0.5, 1.6, 2000), rng.normal(-1, 0.8, 2000)], 1).astype(np.float32)
    decoder, steps = RecordingDecoder(), 20
    lsv.plot_latent_plane(tmp_path, decoder, latents, rng.integers(0, 10, 2000), "cpu", steps=steps)
    axes = figures["latent_manifold.png"].axes[0]
    left, right, bottom, top = axes.images[0].get_extent()
    across = (np.arange(steps) * 29 + 14) / axes.images[0].get_array().shape[1]  # tile centres, 0 to 1
    z = decoder.z.view(steps, steps, 2).numpy()  # rows from the top
    z1, z2 = left + across * (right - left), top - across * (top - bottom)
    assert np.allclose(z[0, :, 0], z1, atol=1e-5) and np.allclose(z[:, 0, 1], z2, atol=1e-5)
    for centres, coordinate in [(z1, latents[:, 0]), (z2, latents[:, 1])]:
        assert centres.min() <= np.percentile(coordinate, 1) and np.percentile(coordinate, 99) <= centres.max()


def test_the_interpolation_grid_names_each_rows_path_and_classes(monkeypatch, tmp_path):
    saved = {}
    monkeypatch.setattr(plots, "save_labelled_rows", lambda path, rows, title: saved.update({path.name: rows}))
    images = torch.zeros(5, 1, 28, 28)
    paths = [{"classes": classes, "lerp": {"images": images}, "slerp": {"images": images}}
             for classes in [(3, 8), (1, 7)]]
    latent_interpolation.plot_paths(paths, [str(digit) for digit in range(10)], tmp_path)
    assert [label for label, _ in saved["grid.png"]] == ["pair 1, lerp: 3 to 8", "pair 1, slerp: 3 to 8",
                                                         "pair 2, lerp: 1 to 7", "pair 2, slerp: 1 to 7"]
    unjudged = [{**pair, "classes": (None, None)} for pair in paths]
    latent_interpolation.plot_paths(unjudged, None, tmp_path)
    assert [label for label, _ in saved["grid.png"]][:2] == ["pair 1, lerp", "pair 1, slerp"]


def test_digit_labels_of_clusters_that_share_a_centre_do_not_overlap():
    rng = np.random.default_rng(0)
    points, labels = rng.normal(size=(500, 2)), np.repeat(np.arange(10), 50)  # as in a PCA map of a weak model
    figure, axes = plots.plt.subplots(figsize=(6, 5))
    lsv.scatter(axes, points, labels, "ten clusters around one centre")
    figure.canvas.draw()
    boxes = [text.get_window_extent() for text in axes.texts]
    assert len(boxes) == 10
    assert not any(box.overlaps(other) for i, box in enumerate(boxes) for other in boxes[i + 1:])
    assert axes.get_lines(), "labels moved off their centres have no line back to them"
    plots.plt.close(figure)
