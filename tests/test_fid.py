"""common/fid.py offline: torchmetrics' FID with a stand-in feature network (no Inception, no download) against the
project's own Frechet distance, and the one-line errors without torchmetrics, torch-fidelity or the weights.

The tests that compute an FID need torchmetrics and are skipped where it is not installed (requirements.txt does not
install it); the error paths replace it with stand-ins and run everywhere."""
import sys
import types
import urllib.error

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import io

import dcgan_cifar10
import gan_mnist
from common import cli, fid, metrics


class QuadrantColours(nn.Module):
    """uint8 N x 3 x H x W -> the mean of each channel over each quarter of the image (N x 12, float64): a feature
    network without weights, in place of Inception-v3."""

    def forward(self, images):
        return F.adaptive_avg_pool2d(images.double() / 255, 2).flatten(1)


def image_sets(channels=3):
    """Two sets of 300 images whose features differ (the second brighter), drawn from a fixed seed."""
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(600, channels, 4, 4, generator=generator)
    coarse[300:] = coarse[300:] * 0.7 + 0.3
    images = F.interpolate(coarse, size=32, mode="nearest").mul(255).round().to(torch.uint8)
    return images[:300], images[300:]


def test_the_fid_of_a_set_against_itself_is_about_0_also_for_greyscale_images():
    pytest.importorskip("torchmetrics")
    metric = fid.load_metric(feature=QuadrantColours())
    for channels in (3, 1):
        real, generated = image_sets(channels)
        assert abs(fid.frechet_inception_distance(real, real, metric)) < 1e-6
        assert fid.frechet_inception_distance(real, generated, metric) > 0.01


def test_torchmetrics_agrees_with_the_projects_frechet_distance_on_the_same_features():
    pytest.importorskip("torchmetrics")
    real, generated = image_sets()
    features = QuadrantColours()
    value = fid.frechet_inception_distance(real, generated, fid.load_metric(feature=features), batch_size=64)
    assert value == pytest.approx(metrics.frechet_distance(features(real), features(generated)), rel=1e-6)


def without_torchmetrics(monkeypatch):
    for name in ("torchmetrics", "torchmetrics.image", "torchmetrics.image.fid"):
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: an import raises ImportError


def test_without_torchmetrics_the_scripts_stop_at_once_with_one_line_saying_what_to_install(monkeypatch):
    without_torchmetrics(monkeypatch)
    with pytest.raises(cli.UserError, match="needs torchmetrics") as error:
        fid.load_metric()
    assert "\n" not in str(error.value) and fid.INSTALL in str(error.value)
    # Before any data is read: the data folders named here do not exist.
    for script in (dcgan_cifar10, gan_mnist):
        with pytest.raises(cli.UserError, match="pip install torchmetrics torch-fidelity"):
            script.main(["--fid", "inception", "--data-dir", "no/such/folder", "--out-dir", "out"])


@pytest.mark.parametrize("failure, expected", [
    (ModuleNotFoundError("FrechetInceptionDistance metric requires that `Torch-fidelity` is installed."),
     "needs torch-fidelity"),
    (urllib.error.URLError("offline"), r"could not load the Inception weights \(URLError\)"),
])
def test_without_torch_fidelity_or_the_weights_the_error_is_one_line(monkeypatch, failure, expected):
    def frechet_inception_distance(**kwargs):
        raise failure

    stand_in = types.ModuleType("torchmetrics.image.fid")
    stand_in.FrechetInceptionDistance = frechet_inception_distance
    for name in ("torchmetrics", "torchmetrics.image"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "torchmetrics.image.fid", stand_in)
    with pytest.raises(cli.UserError, match=expected) as error:
        fid.load_metric()
    assert "\n" not in str(error.value) and fid.INSTALL in str(error.value)


def test_fid_inception_on_a_trained_dcgan_reports_the_fid_and_how_it_was_computed(tmp_path, monkeypatch):
    pytest.importorskip("torchmetrics")
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i, image in enumerate(torch.cat(image_sets())[:64]):
        io.write_png(image, str(folder / f"{i:02d}.png"))
    load_metric = fid.load_metric
    monkeypatch.setattr(fid, "load_metric", lambda device: load_metric(device, feature=QuadrantColours()))
    common = ["--dataset", "folder", "--data-dir", str(folder), "--device", "cpu", "--batch-size", "32",
              "--base-channels", "8", "--out-dir", str(tmp_path / "run")]
    dcgan_cifar10.main(common + ["--epochs", "1"])
    scores = dcgan_cifar10.main(common + ["--epochs", "0", "--fid", "inception", "--fid-samples", "50"])
    assert scores["fid_inception"] > 0 and scores["fid_generated_images"] == 50 and scores["fid_real_images"] == 64
    assert "torchmetrics" in scores["fid_implementation"]
