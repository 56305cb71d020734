"""gan_mnist.py end to end on a subset of real MNIST, the GAN pieces of common/, and answers to bad input."""
import json
import math
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import gan_mnist
from common import classifier, data, gan, mlp_gan, weight_average
from tests.conftest import REPO

FIGURES = ["losses.png", "discriminator.png", "progress.png", "quality.png", "samples.png", "grids/epoch_001.png",
           "grids/epoch_002.png"]
METRICS = ["frechet_distance", "inception_score", "class_shares", "min_class_share", "classifier",
           "loss_d", "loss_g", "d_real", "d_fake", "epochs", "train_seconds"]


def small_classifier(data_dir, path):
    """The MNIST classifier cached at ``path``, trained on 1500 images (seconds; 83.5% on the first 1500 test images).

    Its initial weights come from the global generator (scripts build it before they seed), which earlier tests in
    this process have drawn from: seeded here, so its accuracy does not depend on which tests ran before."""
    torch.manual_seed(0)
    model, identity = classifier.mnist_classifier(data_dir, torch.device("cpu"), path, limit=1500)
    assert identity["test_accuracy"] > 0.8
    return model


def test_trains_on_a_subset_writes_every_output_and_samples_from_its_checkpoint(data_dir, tmp_path, monkeypatch):
    out, cache = tmp_path / "run", tmp_path / "mnist_classifier.pt"
    started = []  # the images G's output layer started from: a run of 200 steps starts from their components
    start = mlp_gan.start_as_principal_components
    monkeypatch.setattr(mlp_gan, "start_as_principal_components",
                        lambda generator, images, seed: started.append(len(images)) or start(generator, images, seed))
    small_classifier(data_dir, cache)
    (out / "grids").mkdir(parents=True)
    (out / "grids" / "epoch_007.png").write_bytes(b"a grid of an earlier run, longer than this one")
    common = ["--data-dir", str(data_dir), "--out-dir", str(out), "--device", "cpu", "--classifier", str(cache)]
    metrics = gan_mnist.main(common + ["--limit", "6400", "--epochs", "2", "--quality-samples", "500",
                                       "--eval-images", "1000"])
    assert json.loads((out / "metrics.json").read_text()).keys() == set(METRICS) and started == [6400]
    for name in FIGURES:
        assert (out / name).stat().st_size > 10_000, name
    assert sorted(path.name for path in (out / "grids").iterdir()) == ["epoch_001.png", "epoch_002.png"]
    assert metrics["epochs"] == 2 and np.isfinite([metrics["loss_d"], metrics["loss_g"]]).all()
    assert 0 < metrics["d_fake"] < metrics["d_real"] < 1

    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["architecture"] == "mlp" and checkpoint["epoch"] == 2
    assert len(checkpoint["history"]["step_loss_d"]) == 2 * 100 and "grids" not in checkpoint["history"]
    assert json.loads((out / "metrics.json").read_text())["classifier"]["weights_sha256"] == \
        classifier.weights_hash(small_classifier(data_dir, cache))

    # The weight average has left G's initial weights behind after these 200 steps (its half-life ramps up
    # with the images seen; a fixed decay of 0.999 would still hold 82% of them): it lies by G's last weights, not by
    # G's first ones. Its batch-norm statistics are its own, re-estimated, not G's.
    torch.manual_seed(0)  # what the script drew G's initial weights from, then started as principal components
    initial = mlp_gan.Generator(**checkpoint["generator_config"])
    mlp_gan.start_as_principal_components(initial, data.load_mnist(data_dir, limit=6400)[0], seed=0)
    initial = initial.state_dict()
    average, last = checkpoint["generator_ema"], checkpoint["generator"]

    def distance(a, b):
        return sum(float((a[name] - b[name]).norm()) for name, _ in mlp_gan.Generator().named_parameters())

    assert distance(average, last) < 0.5 * distance(average, initial), (distance(average, last),
                                                                        distance(average, initial))
    # G's own statistics, in the widest layer, are far from those a fresh re-estimate (other z) gives the average;
    # the saved ones are near them.
    rebuilt = mlp_gan.Generator(**checkpoint["generator_config"])
    rebuilt.load_state_dict(average)
    fresh = weight_average.reestimate_batch_norm(rebuilt, "cpu", seed=1).net[7].running_mean
    saved, own = average["net.7.running_mean"], last["net.7.running_mean"]
    assert float((saved - fresh).norm()) < 0.5 * float((own - fresh).norm())
    # The samples come from the average, which --epochs 0 loads.
    loaded = gan.load_generator(out / "checkpoint.pt", "cpu")[0].state_dict()
    assert all(torch.equal(loaded[name], average[name]) for name in average)

    # Resumed with no epoch left to train, the run samples the checkpoint's average, and scores the same.
    resumed = gan_mnist.main(common + ["--resume", "--limit", "6400", "--epochs", "2", "--quality-samples", "500",
                                       "--eval-images", "1000"])
    assert resumed["frechet_distance"] == pytest.approx(metrics["frechet_distance"])
    again = gan_mnist.main(common + ["--epochs", "0", "--num-samples", "37", "--eval-images", "1000"])
    assert again["epochs"] == 2 and again["frechet_distance"] == pytest.approx(metrics["frechet_distance"])
    images = np.load(out / "samples.npz")["images"]
    assert images.shape == (37, 1, 28, 28) and images.dtype == np.uint8 and images.max() > 200
    # 200 steps, started from the images' principal components (--pca-start auto), draw light strokes on a dark
    # background, as in MNIST, where the untrained generator's random start draws uniform grey (Tanh of small
    # outputs: every pixel near 0.5).
    untrained = gan.generate(mlp_gan.Generator(), 37, "cpu", seed=0).numpy()
    assert (images < 102).mean() > 0.6 and (untrained < 102).mean() < 0.1


def test_losses_are_the_non_saturating_gan_losses():
    logits = torch.tensor([-2.0, 0.0, 3.0])
    d_of = torch.sigmoid(logits)
    assert gan.generator_loss(logits) == pytest.approx(float(-d_of.log().mean()))
    assert gan.discriminator_loss(logits, logits) == pytest.approx(float(-d_of.log().mean()
                                                                         - (1 - d_of).log().mean()))


def test_weight_average_moves_towards_the_model_and_copies_batch_norm_statistics():
    model, average = mlp_gan.Generator(8, (16,)), mlp_gan.Generator(8, (16,))
    model.net[1].running_mean.fill_(3.0)
    with torch.no_grad():
        before = float((average.net[0].weight - model.net[0].weight).norm())
        weight_average.update(average, model, beta=0.9)
        after = float((average.net[0].weight - model.net[0].weight).norm())
    assert after == pytest.approx(0.9 * before, rel=1e-5)
    assert torch.equal(average.net[1].running_mean, model.net[1].running_mean)


def test_the_weight_average_is_g_through_its_burn_in_then_its_half_life_grows_with_the_images_seen():
    def beta(step, half_life=44000, rampup=0.05, burn_in=1, batch=64):
        cfg = SimpleNamespace(batch_size=batch, ema_half_life=half_life, ema_rampup=rampup, ema_burn_in=burn_in)
        return weight_average.decay(step, cfg, epoch_images=6400)  # epochs of 100 steps
    assert all(beta(step) == 0.0 for step in range(100))  # the burn-in epoch: the average is G itself
    # 5% of the images seen since: after 1,000 of them a half-life of 50 images.
    assert beta(99 + 1000 // 64) == pytest.approx(0.5 ** (64 / (0.05 * 64 * (1000 // 64))))
    betas = [beta(step) for step in range(100, 20000)]
    assert all(a <= b for a, b in zip(betas, betas[1:])) and betas[-1] == pytest.approx(0.5 ** (64 / 44000))
    # A step of B images at half-life h keeps 0.5^(B/h) of the average: after h images of steps, half of it.
    assert math.prod(beta(10**6, half_life=6400) for _ in range(100)) == pytest.approx(0.5)
    assert beta(10**6, half_life=0) == 0.0  # --ema-half-life 0: the average is G itself
    assert beta(0, rampup=0, burn_in=0) == pytest.approx(0.5 ** (64 / 44000))  # no ramp-up, no burn-in
    # After an MNIST epoch past the burn-in (938 steps at batch 64) nothing of G's weights at the burn-in's end is
    # left in the average, where a fixed 0.999 per step would keep 39% of them.
    kept = math.prod(beta(step, burn_in=0) for step in range(938))
    assert kept < 1e-6 and 0.999 ** 938 == pytest.approx(0.39, abs=0.01)


def test_re_estimating_batch_norm_leaves_the_global_random_numbers_of_training_alone():
    generator = mlp_gan.Generator(8, (16,))
    twin = mlp_gan.Generator(8, (16,))
    twin.load_state_dict(generator.state_dict())
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    weight_average.reestimate_batch_norm(generator, "cpu", num_images=1000)
    assert torch.equal(torch.rand(3), expected) and not generator.training
    weight_average.reestimate_batch_norm(twin, "cpu", num_images=1000)
    assert torch.equal(twin.net[1].running_var, generator.net[1].running_var)  # the same seed: the same z
    weight_average.reestimate_batch_norm(twin, "cpu", num_images=1000, seed=1)
    assert not torch.equal(twin.net[1].running_var, generator.net[1].running_var)


def test_g_started_as_principal_components_draws_the_images_mean_and_their_main_variations(data_dir):
    """Before any step, G's output (before the Tanh) has the images' mean (atanh space) and its spread lies along
    their top principal components, with about their variances; a random start draws one grey blur for every z."""
    images, _ = data.load_mnist(data_dir, train=True, device=torch.device("cpu"), limit=2000)
    pixels = torch.atanh(data.to_signed_range(images).flatten(1).clamp(-0.98, 0.98))
    variances, components = torch.linalg.eigh(torch.cov(pixels.T))
    torch.manual_seed(0)
    generator = mlp_gan.Generator()
    mlp_gan.start_as_principal_components(generator, images, seed=0)
    with torch.no_grad():  # training mode: batch norm over the batch, as in the first step
        drawn = generator.net[:-2](torch.randn(4000, 64))                # 4000 x 784, before the Tanh
    assert float((drawn.mean(0) - pixels.mean(0)).abs().max()) < 0.25   # pixels span about 4.6 (-2.3 to 2.3)
    along = torch.var(drawn @ components[:, -8:], dim=0)                 # the top 8 components
    assert (along / variances[-8:]).min() > 0.5 and (along / variances[-8:]).max() < 2
    random = mlp_gan.Generator()
    with torch.no_grad():
        drawn_at_random = random.net[:-2](torch.randn(4000, 64))
    spread = torch.var(drawn_at_random @ components[:, -8:], dim=0)
    assert float(spread.max()) < 0.1 * float(variances[-8:].min())
    # Every other direction keeps the random start's small spread only: the start adds nothing there.
    across = torch.var(drawn @ components[:, :-64], dim=0).sum()
    assert float(across) < 1.2 * float(torch.var(drawn_at_random @ components[:, :-64], dim=0).sum())


@pytest.mark.parametrize("pca_start, limit, epochs, expected", [
    ("auto", 2000, 2, True),      # the quick trial: 64 steps
    ("auto", 60000, 2, True),     # 1,876 steps, where the start still leads
    ("auto", 60000, 3, False),    # 2,814 steps: the random start leads from here on
    ("auto", 60000, 11, False),   # the default run
    ("on", 60000, 11, True),
    ("off", 2000, 2, False),
])
def test_pca_start_auto_starts_from_the_principal_components_in_short_runs_only(pca_start, limit, epochs, expected):
    cfg = SimpleNamespace(pca_start=pca_start, epochs=epochs, batch_size=64)
    assert gan_mnist.starts_as_principal_components(cfg, limit) == expected


def test_minibatch_std_tells_identical_fakes_from_varied_ones():
    discriminator = mlp_gan.Discriminator(hidden=(32, 16))
    std_layer = discriminator.net[-2]
    assert float(std_layer(torch.ones(5, 4))[0, -1]) == 0
    assert float(std_layer(torch.randn(5, 4))[0, -1]) > 0.3


def test_epochs_0_without_a_checkpoint_is_one_line_and_exit_code_2(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "gan_mnist.py"), "--out-dir", str(tmp_path), "--epochs", "0"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "no checkpoint at" in result.stderr
