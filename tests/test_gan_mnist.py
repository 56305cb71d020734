"""gan_mnist.py end to end on a subset of real MNIST, the GAN pieces of common/, and answers to bad input."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import gan_mnist
from common import classifier, gan
from tests.conftest import REPO

FIGURES = ["losses.png", "discriminator.png", "progress.png", "quality.png", "samples.png", "grids/epoch_001.png",
           "grids/epoch_002.png"]
METRICS = ["frechet_distance", "inception_score", "class_shares", "min_class_share", "classifier_test_accuracy",
           "loss_d", "loss_g", "d_real", "d_fake", "epochs", "train_seconds"]


def small_classifier(data_dir, path):
    """The MNIST classifier cached at ``path``, trained on 1500 images (seconds; about 87% test accuracy).

    Its initial weights come from the global generator (scripts build it before they seed), which earlier tests in
    this process have drawn from: seeded here, so its accuracy does not depend on which tests ran before."""
    torch.manual_seed(0)
    model, accuracy = classifier.mnist_classifier(data_dir, torch.device("cpu"), path, limit=1500)
    assert accuracy > 0.85
    return model


def test_trains_on_a_subset_writes_every_output_and_samples_from_its_checkpoint(data_dir, tmp_path):
    out, cache = tmp_path / "run", tmp_path / "mnist_classifier.pt"
    small_classifier(data_dir, cache)
    common = ["--data-dir", str(data_dir), "--out-dir", str(out), "--device", "cpu", "--classifier", str(cache)]
    metrics = gan_mnist.main(common + ["--limit", "6400", "--epochs", "2", "--quality-samples", "500",
                                       "--eval-images", "1000"])
    assert json.loads((out / "metrics.json").read_text()).keys() == set(METRICS)
    for name in FIGURES:
        assert (out / name).stat().st_size > 10_000, name
    assert metrics["epochs"] == 2 and np.isfinite([metrics["loss_d"], metrics["loss_g"]]).all()
    assert 0 < metrics["d_fake"] < metrics["d_real"] < 1

    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["architecture"] == "mlp" and checkpoint["epoch"] == 2
    assert len(checkpoint["history"]["step_loss_d"]) == 2 * 100 and len(checkpoint["history"]["grids"]) == 2

    # The weight average, at the default decay of 0.999, has left G's random initial weights behind after these 200
    # steps (without the warm-up 0.999^200, 82% of it, would still be them): it lies by G's last weights, not by G's
    # first ones. Its batch-norm statistics are its own, re-estimated, not G's.
    torch.manual_seed(0)  # what the script drew G's initial weights from
    initial = gan.MLPGenerator(**checkpoint["generator_config"]).state_dict()
    average, last = checkpoint["generator_ema"], checkpoint["generator"]

    def distance(a, b):
        return sum(float((a[name] - b[name]).norm()) for name, _ in gan.MLPGenerator().named_parameters())

    assert distance(average, last) < 0.5 * distance(average, initial), (distance(average, last),
                                                                        distance(average, initial))
    # G's own statistics, in the widest layer, are far from those a fresh re-estimate (other z) gives the average;
    # the saved ones are near them.
    fresh = gan.recalibrate_batch_norm(gan.load_generator(out / "checkpoint.pt", "cpu")[0], "cpu").net[7].running_mean
    saved, own = average["net.7.running_mean"], last["net.7.running_mean"]
    assert float((saved - fresh).norm()) < 0.5 * float((own - fresh).norm())

    again = gan_mnist.main(common + ["--epochs", "0", "--num-samples", "37", "--eval-images", "1000"])
    assert again["epochs"] == 2 and again["frechet_distance"] == pytest.approx(metrics["frechet_distance"])
    images = np.load(out / "samples.npz")["images"]
    assert images.shape == (37, 1, 28, 28) and images.dtype == np.uint8 and images.max() > 200
    # 200 steps do not make digits yet, but they turn the untrained generator's uniform grey (Tanh of small
    # outputs: every pixel near 0.5) into light strokes on a dark background, as in MNIST.
    untrained = gan.generate(gan.MLPGenerator(), 37, "cpu", seed=0).numpy()
    assert (images < 102).mean() > 0.6 and (untrained < 102).mean() < 0.1


def test_losses_are_the_non_saturating_gan_losses():
    logits = torch.tensor([-2.0, 0.0, 3.0])
    d_of = torch.sigmoid(logits)
    assert gan.generator_loss(logits) == pytest.approx(float(-d_of.log().mean()))
    assert gan.discriminator_loss(logits, logits) == pytest.approx(float(-d_of.log().mean()
                                                                         - (1 - d_of).log().mean()))


def test_weight_average_moves_towards_the_model_and_copies_batch_norm_statistics():
    model, average = gan.MLPGenerator(8, (16,)), gan.MLPGenerator(8, (16,))
    model.net[1].running_mean.fill_(3.0)
    with torch.no_grad():
        before = float((average.net[0].weight - model.net[0].weight).norm())
        gan.update_average(average, model, decay=0.9)
        after = float((average.net[0].weight - model.net[0].weight).norm())
    assert after == pytest.approx(0.9 * before, rel=1e-5)
    assert torch.equal(average.net[1].running_mean, model.net[1].running_mean)


def test_the_weight_average_warms_up_to_its_decay():
    # (1 + t) / (10 + t): a tenth of the old average at the first step, then ever more, until the set decay.
    assert gan.average_decay(0.999, 0) == pytest.approx(0.1)
    assert gan.average_decay(0.999, 90) == pytest.approx(0.91)
    decays = [gan.average_decay(0.999, step) for step in range(20000)]
    assert all(a <= b for a, b in zip(decays, decays[1:])) and decays[-1] == 0.999
    assert decays.index(0.999) == 8990  # (1 + t) / (10 + t) reaches 0.999 at t = 8990
    assert gan.average_decay(0.0, 5000) == 0.0  # --ema-decay 0: the average is G itself
    # After one MNIST epoch (938 steps at batch 64) almost nothing of the random initial weights is left in it, where a
    # fixed 0.999 would keep 39% of them.
    kept = math.prod(gan.average_decay(0.999, step) for step in range(938))
    assert kept < 1e-3 and 0.999 ** 938 == pytest.approx(0.39, abs=0.01)


def test_minibatch_std_tells_identical_fakes_from_varied_ones():
    discriminator = gan.MLPDiscriminator(hidden=(32, 16))
    std_layer = discriminator.net[-2]
    assert float(std_layer(torch.ones(5, 4))[0, -1]) == 0
    assert float(std_layer(torch.randn(5, 4))[0, -1]) > 0.3


def test_epochs_0_without_a_checkpoint_is_one_line_and_exit_code_2(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "gan_mnist.py"), "--out-dir", str(tmp_path), "--epochs", "0"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "no checkpoint at" in result.stderr
