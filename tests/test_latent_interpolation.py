"""latent_interpolation.py: the two paths' geometry, and the script end to end on a GAN trained on a subset."""
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import gan_mnist
import latent_interpolation
from common import classifier, cli, mlp_gan


def endpoints_of_different_norms():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(64, generator=generator) * 0.8, torch.randn(64, generator=generator) * 1.3


def test_slerp_keeps_the_norm_between_the_endpoints_norms_and_lerp_dips():
    z0, z1 = endpoints_of_different_norms()
    t = torch.linspace(0, 1, 101)
    low, high = sorted([float(z0.norm()), float(z1.norm())])
    slerp_norms = latent_interpolation.slerp(z0, z1, t).norm(dim=1)
    assert (slerp_norms >= low - 1e-4).all() and (slerp_norms <= high + 1e-4).all()
    # Two independent directions in 64 dimensions are nearly orthogonal: the straight line's midpoint has about
    # 1/sqrt(2) of its endpoints' mean norm.
    assert float(latent_interpolation.lerp(z0, z1, t).norm(dim=1).min()) < 0.8 * low
    # Same-direction endpoints: the great circle degenerates to the line, without dividing by sin(0).
    assert torch.allclose(latent_interpolation.slerp(z0, 2 * z0, t)[50], 1.5 * z0, atol=1e-5)


@pytest.mark.parametrize("method", ["lerp", "slerp"])
def test_both_methods_reproduce_the_endpoint_images_at_t_0_and_1(method):
    torch.manual_seed(0)
    generator = mlp_gan.Generator(64, (32, 64)).eval()
    z0, z1 = endpoints_of_different_norms()
    path = getattr(latent_interpolation, method)(z0, z1, torch.linspace(0, 1, 7))
    with torch.no_grad():
        images, ends = generator(path), generator(torch.stack([z0, z1]))
    assert torch.allclose(images[0], ends[0], atol=1e-5) and torch.allclose(images[-1], ends[1], atol=1e-5)
    assert not torch.allclose(images[3], ends[0], atol=1e-2)


def test_walks_through_a_gan_trained_on_a_subset(data_dir, tmp_path):
    cache = tmp_path / "mnist_classifier.pt"
    classifier.mnist_classifier(data_dir, torch.device("cpu"), cache, limit=1000)
    gan_run = tmp_path / "gan"
    gan_mnist.main(["--data-dir", str(data_dir), "--out-dir", str(gan_run), "--device", "cpu", "--classifier",
                    str(cache), "--limit", "3200", "--epochs", "1", "--quality-samples", "500", "--eval-images", "500"])
    out = tmp_path / "walk"
    common = ["--data-dir", str(data_dir), "--device", "cpu", "--classifier", str(cache),
              "--checkpoint", str(gan_run / "checkpoint.pt"), "--pairs", "3", "--steps", "8", "--pool", "500"]
    metrics = latent_interpolation.main(common + ["--out-dir", str(out)])

    for name in ["grid.png", "steps.png", "norms.png", "strips/pair_1_lerp.png", "strips/pair_3_slerp.png"]:
        assert (out / name).stat().st_size > 5_000, name
    assert json.loads((out / "metrics.json").read_text()).keys() == metrics.keys()
    for method in ("lerp", "slerp"):
        assert 0 < metrics[f"{method}_mean_step"] <= metrics[f"{method}_max_step"]
        assert len(metrics[f"{method}_label_changes"]) == 3 and len(metrics[f"{method}_norms"][0]) == 8
    # Each pair's ends are read as different classes, so the predicted class changes at least once on either path.
    assert all(first != second for first, second in metrics["pairs"])
    assert min(metrics["lerp_label_changes"] + metrics["slerp_label_changes"]) >= 1
    assert metrics["slerp_min_norm_ratio"] > 0.999 and metrics["lerp_min_norm_ratio"] < 0.85

    present = metrics["pairs"][0]
    fixed = latent_interpolation.main(common + ["--out-dir", str(tmp_path / "fixed"), "--classes",
                                                str(present[1]), str(present[0])])
    assert fixed["pairs"] == [[present[1], present[0]]] * 3
    with pytest.raises(cli.UserError, match="--classes takes two class numbers"):
        latent_interpolation.main(common + ["--out-dir", str(tmp_path / "bad"), "--classes", "3"])


def test_dcgan_walks_the_generator_the_dcgan_reports_best_pt_before_the_last_epoch():
    cfg = SimpleNamespace(checkpoint="", dcgan=True)
    with pytest.raises(cli.UserError, match="no DCGAN checkpoint at outputs/dcgan_cifar10/best.pt"):
        latent_interpolation.checkpoint_path(cfg, None)
    folder = Path("outputs/dcgan_cifar10")  # each test runs in a folder of its own (conftest.py)
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(b"the last epoch")
    assert latent_interpolation.checkpoint_path(cfg, None) == folder / "checkpoint.pt"  # a folder of images: no best
    (folder / "best.pt").write_bytes(b"the epoch of the lowest tracked distance")
    assert latent_interpolation.checkpoint_path(cfg, None) == folder / "best.pt"
