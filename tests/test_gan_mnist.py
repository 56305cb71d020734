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
    rebuilt = gan.MLPGenerator(**checkpoint["generator_config"])
    rebuilt.load_state_dict(average)
    fresh = gan.recalibrate_batch_norm(rebuilt, "cpu", seed=1).net[7].running_mean
    saved, own = average["net.7.running_mean"], last["net.7.running_mean"]
    assert float((saved - fresh).norm()) < 0.5 * float((own - fresh).norm())
    # The samples come from the generator the history names for the last epoch, which --epochs 0 loads.
    sampled = checkpoint["history"]["sampled"]
    assert len(sampled) == 2 and (checkpoint["generator_sampled"] is None) == (sampled[-1] == "average")
    loaded = gan.load_generator(out / "checkpoint.pt", "cpu")[0].state_dict()
    picked = average if sampled[-1] == "average" else checkpoint["generator_sampled"]
    assert all(torch.equal(loaded[name], picked[name]) for name in picked)

    # Resumed with no epoch left to train, the run samples what the checkpoint picked, and scores the same.
    resumed = gan_mnist.main(common + ["--resume", "--limit", "6400", "--epochs", "2", "--quality-samples", "500",
                                       "--eval-images", "1000"])
    assert resumed["frechet_distance"] == pytest.approx(metrics["frechet_distance"])
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


def test_re_estimating_batch_norm_leaves_the_global_random_numbers_of_training_alone():
    generator = gan.MLPGenerator(8, (16,))
    twin = gan.MLPGenerator(8, (16,))
    twin.load_state_dict(generator.state_dict())
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    gan.recalibrate_batch_norm(generator, "cpu", num_images=1000)
    assert torch.equal(torch.rand(3), expected) and not generator.training
    gan.recalibrate_batch_norm(twin, "cpu", num_images=1000)
    assert torch.equal(twin.net[1].running_var, generator.net[1].running_var)  # the same seed: the same z
    gan.recalibrate_batch_norm(twin, "cpu", num_images=1000, seed=1)
    assert not torch.equal(twin.net[1].running_var, generator.net[1].running_var)


def test_samples_come_from_g_itself_only_until_the_average_first_beats_it():
    torch.manual_seed(0)
    average, generator = gan.MLPGenerator(8, (16,)), gan.MLPGenerator(8, (16,))
    cfg = SimpleNamespace(ema_decay=0.999, seed=0)
    history = {"quality_epoch": [], "sampled": [], **{key: [] for key in gan.QUALITY_KEYS}}
    judged = []

    def quality(network, winner):
        """A stand-in judge: ``winner`` ("average" or "generator") scores the lower distance."""
        name = "average" if network is average else "generator"
        judged.append(name)
        return {"frechet_distance": 1.0 if name == winner else 2.0, "inception_score": 1.0, "class_shares": [1.0],
                "min_class_share": 1.0}

    picked = gan.pick_sampler(history, 1, average, generator, lambda g: quality(g, "generator"), "cpu", cfg)
    # A copy of G, with its own re-estimated statistics; G itself (still training) is left in training mode.
    assert picked is not average and picked is not generator and not picked.training and generator.training
    assert torch.equal(picked.net[0].weight, generator.net[0].weight)
    assert not torch.equal(picked.net[1].running_mean, generator.net[1].running_mean)
    assert gan.pick_sampler(history, 2, average, generator, lambda g: quality(g, "average"), "cpu", cfg) is average
    judged.clear()  # once the average has won, G is no longer judged, even where it would win
    assert gan.pick_sampler(history, 3, average, generator, lambda g: quality(g, "generator"), "cpu", cfg) is average
    assert judged == ["average"]
    assert history["sampled"] == ["generator", "average", "average"] and history["frechet_distance"] == [1, 1, 2]
    assert "(sampled: G itself" in gan.epoch_summary({**history, "quality_epoch": [1], "sampled": ["generator"],
                                                      "loss_d": [1], "loss_g": [1], "d_real": [1], "d_fake": [0],
                                                      "seconds": [1]}, 1, 3)
    judged.clear()  # --ema-decay 0: the average is G itself, which is not judged twice
    fresh = {"quality_epoch": [], "sampled": [], **{key: [] for key in gan.QUALITY_KEYS}}
    gan.pick_sampler(fresh, 1, average, generator, lambda g: quality(g, "generator"), "cpu",
                     SimpleNamespace(ema_decay=0.0, seed=0))
    assert judged == ["average"] and fresh["sampled"] == ["average"]


def test_minibatch_std_tells_identical_fakes_from_varied_ones():
    discriminator = gan.MLPDiscriminator(hidden=(32, 16))
    std_layer = discriminator.net[-2]
    assert float(std_layer(torch.ones(5, 4))[0, -1]) == 0
    assert float(std_layer(torch.randn(5, 4))[0, -1]) > 0.3


def test_epochs_0_without_a_checkpoint_is_one_line_and_exit_code_2(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "gan_mnist.py"), "--out-dir", str(tmp_path), "--epochs", "0"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "no checkpoint at" in result.stderr
