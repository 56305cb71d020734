"""What a user sees on bad input: one line naming the problem and the fix, exit code 2 (130 for Ctrl-C), and no
file of theirs replaced or lost.

Most cases call a script's ``main`` in-process, where the one line is a ``cli.UserError`` (``cli.run`` prints it and
exits with 2, which the subprocess tests here and beside each script check); Ctrl-C needs a real process.
"""
import hashlib
import importlib
import signal
import subprocess
import sys
import time

import pytest
import torch

import gan_mnist
import vae_mnist
from common import classifier, cli, gan, runs, vae
from tests.conftest import DATA, REPO, folder_fingerprint


def run_script(script, *args, timeout=180):
    return subprocess.run([sys.executable, str(REPO / script), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_error(result, *expected):
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


def user_error(main, *args):
    """The message of the ``UserError`` that ``main(args)`` stops with (it must stop with one)."""
    with pytest.raises(cli.UserError) as error:
        main([*map(str, args)])
    message = str(error.value)
    assert "\n" not in message, message
    return message


def fingerprint(path):
    """The bytes and the modification time of ``path``: equal before and after means the file was left alone."""
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


# ----- numeric flags out of range: refused before any data is read -----

# "--data-dir nowhere" makes any later failure a different message: the range check must come first.
@pytest.mark.parametrize("script, flag, value, expected", [
    ("vae_mnist.py", "--batch-size", 0, "--batch-size must be >= 1, got 0"),
    ("vae_mnist.py", "--lr", 0, "--lr must be > 0, got 0.0"),
    ("vae_mnist.py", "--lr", "nan", "--lr must be > 0, got nan"),
    ("vae_mnist.py", "--latent-dim", 0, "--latent-dim must be >= 1"),
    ("vae_mnist.py", "--iw-samples", 0, "--iw-samples must be >= 1"),
    ("gan_mnist.py", "--batch-size", 0, "--batch-size must be >= 1, got 0"),
    ("gan_mnist.py", "--d-width", 1, "--d-width must be >= 2"),
    ("gan_mnist.py", "--real-label", 0, "--real-label must be between 0 and 1 (0 excluded)"),
    ("gan_mnist.py", "--beta1", 1, "--beta1 must be between 0 and 1 (1 excluded)"),
    ("gan_mnist.py", "--eval-images", 20000, "--eval-images must be between 2 and 10000 (both included)"),
    ("dcgan_cifar10.py", "--quality-every", 0, "--quality-every must be >= 1, got 0"),
    ("dcgan_cifar10.py", "--ema-decay", 1, "--ema-decay must be between 0 and 1 (1 excluded)"),
    ("dcgan_cifar10.py", "--final-samples", 1, "--final-samples must be between 2 and 10000"),
    ("latent_interpolation.py", "--steps", 1, "--steps must be >= 2"),
    ("vae_anomaly_detection.py", "--percentile", 100, "--percentile must be between 0 and 100 (both excluded)"),
    ("vae_anomaly_detection.py", "--one-class-epochs", 0, "--one-class-epochs must be >= 1"),
    ("vae_latent_space_visualization.py", "--tsne-iterations", 100, "--tsne-iterations must be >= 300"),
    ("vae_latent_space_visualization.py", "--num-points", 5, "--num-points must be between 20 and 10000"),
])
def test_a_number_out_of_range_is_refused_before_any_data_is_read(tmp_path, script, flag, value, expected):
    main = importlib.import_module(script.removesuffix(".py")).main
    assert expected in user_error(main, flag, value, "--data-dir", tmp_path / "nowhere", "--out-dir", tmp_path / "run")


def test_a_bad_number_on_the_command_line_exits_with_code_2(tmp_path):
    assert_one_line_error(run_script("dcgan_cifar10.py", "--quality-every", 0, "--out-dir", tmp_path),
                          "--quality-every must be >= 1, got 0")


# ----- a file of another kind where a checkpoint is expected -----

def write_gan_checkpoint(path):
    generator, discriminator = gan.MLPGenerator(8, (16,)), gan.MLPDiscriminator(hidden=(16, 8))
    runs.save_checkpoint(path, "gan", architecture="mlp", generator=generator.state_dict(),
                         generator_config=generator.config, generator_ema=None,
                         discriminator=discriminator.state_dict(), discriminator_config=discriminator.config,
                         optimizer_g={}, optimizer_d={}, epoch=1, history={})


def write_vae_checkpoint(path):
    model = vae.MLPVAE(latent_dim=4, hidden=16)
    runs.save_checkpoint(path, "vae", model=model.state_dict(), model_config=model.config, optimizer={}, epoch=1,
                         history={}, train_examples=100)


def write_classifier(path, in_channels=3, image_size=32):
    model = classifier.SmallCNN(in_channels=in_channels, image_size=image_size, channels=4, hidden=8)
    runs.save_checkpoint(path, "classifier", model=model.state_dict(), model_config=model.config,
                         test_accuracy=0.5, train_examples=100, epochs=1)


def test_files_written_before_kinds_were_recorded_are_still_told_apart(tmp_path):
    for write, kind in [(write_gan_checkpoint, "gan"), (write_vae_checkpoint, "vae"), (write_classifier, "classifier")]:
        write(tmp_path / "new.pt")
        old = {key: value for key, value in torch.load(tmp_path / "new.pt", weights_only=True).items()
               if key != "kind"}
        assert runs.checkpoint_kind(old) == kind
    assert runs.checkpoint_kind(torch.zeros(3)) is None


@pytest.mark.parametrize("script, flag, write, expected", [
    ("vae_anomaly_detection.py", "--vae-checkpoint", write_gan_checkpoint, "holds a GAN"),
    ("vae_latent_space_visualization.py", "--vae-checkpoint", write_classifier, "holds a cached classifier"),
    ("latent_interpolation.py", "--checkpoint", write_vae_checkpoint, "holds a VAE"),
    ("latent_interpolation.py", "--checkpoint", write_classifier, "holds a cached classifier"),
])
def test_a_checkpoint_of_another_kind_is_refused_and_left_alone(data_dir, tmp_path, script, flag, write, expected):
    path = tmp_path / "theirs.pt"
    write(path)
    before = fingerprint(path)
    main = importlib.import_module(script.removesuffix(".py")).main
    message = user_error(main, flag, path, "--data-dir", data_dir, "--out-dir", tmp_path / "run", "--device", "cpu")
    assert f"{path} {expected}" in message and f"pass {flag} the path of" in message
    assert fingerprint(path) == before



@pytest.mark.parametrize("script", ["vae_anomaly_detection.py", "vae_latent_space_visualization.py"])
def test_a_vae_checkpoint_that_does_not_exist_is_one_line_not_minutes_of_training(data_dir, tmp_path, monkeypatch,
                                                                                  capsys, script):
    def train_vae(*args, **kwargs):
        raise AssertionError("a VAE was trained for a --vae-checkpoint the user named")
    monkeypatch.setattr(vae, "train_vae", train_vae)
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text('{"from": "an earlier run"}')
    before = folder_fingerprint(out)
    typo = tmp_path / "outputs" / "vae_mnist" / "checkpont.pt"
    monkeypatch.setattr(sys, "argv", [script, "--vae-checkpoint", str(typo), "--data-dir", str(data_dir),
                                      "--out-dir", str(out), "--device", "cpu"])
    with pytest.raises(SystemExit) as exit_code:
        cli.run(importlib.import_module(script.removesuffix(".py")).main)
    stderr = capsys.readouterr().err
    assert exit_code.value.code == 2 and stderr.count("\n") == 1, stderr
    assert f"--vae-checkpoint {typo} does not exist" in stderr, stderr
    assert folder_fingerprint(out) == before and not typo.parent.exists()


def test_the_default_vae_checkpoint_is_trained_there_when_absent(data_dir, monkeypatch):
    trained = []

    def train_vae(cfg, train_images, test_images, device, checkpoint_path, log=print):
        write_vae_checkpoint(checkpoint_path)  # stands for minutes of training
        trained.append(checkpoint_path)
    monkeypatch.setattr(vae, "train_vae", train_vae)
    model, checkpoint = vae.load_or_train_vae(vae.DEFAULT_CHECKPOINT, data_dir, "cpu", log=lambda _: None)
    assert trained == [vae.DEFAULT_CHECKPOINT] and isinstance(model, vae.MLPVAE)
    assert checkpoint["train_examples"] == 100

@pytest.mark.parametrize("write, expected", [
    (write_vae_checkpoint, "holds a VAE (written by vae_mnist.py), not a cached classifier"),
    (write_classifier, "holds a classifier of another shape"),  # a CIFAR-10 classifier given to an MNIST script
])
def test_a_users_file_given_as_classifier_is_refused_never_retrained_over(data_dir, tmp_path, write, expected):
    path = tmp_path / "theirs.pt"
    write(path)
    before = fingerprint(path)
    message = user_error(gan_mnist.main, "--classifier", path, "--data-dir", data_dir, "--out-dir", tmp_path / "run",
                         "--device", "cpu", "--limit", 64, "--epochs", 1)
    assert expected in message and "--classifier" in message
    assert fingerprint(path) == before


def test_a_vae_checkpoint_in_a_gan_run_folder_is_refused(data_dir, tmp_path):
    write_vae_checkpoint(tmp_path / "checkpoint.pt")
    before = fingerprint(tmp_path / "checkpoint.pt")
    assert "holds a VAE" in user_error(gan_mnist.main, "--epochs", 0, "--data-dir", data_dir, "--out-dir", tmp_path,
                                       "--device", "cpu")
    assert fingerprint(tmp_path / "checkpoint.pt") == before


# ----- --resume under other settings than the run was trained with -----

@pytest.fixture(scope="module")
def small_mnist_classifier(tmp_path_factory):
    """An MNIST classifier trained on 1,000 images (seconds), once for this file's GAN runs."""
    if DATA is None:
        pytest.skip("real data not found: set GENMODELS_DATA, or put it in ../shared/data or ./data")
    path = tmp_path_factory.mktemp("classifier") / "classifier.pt"
    classifier.mnist_classifier(DATA, torch.device("cpu"), path, limit=1000)
    return path


def test_gan_resume_refuses_a_flag_that_shapes_the_run_and_continues_a_longer_one(data_dir, tmp_path,
                                                                                 small_mnist_classifier):
    out = tmp_path / "run"
    common = ["--data-dir", data_dir, "--out-dir", out, "--device", "cpu", "--classifier", small_mnist_classifier,
              "--limit", 640, "--quality-samples", 100, "--eval-images", 100]
    gan_mnist.main([*map(str, common), "--epochs", "1"])
    before = fingerprint(out / "checkpoint.pt")
    for flags, expected in [(["--latent-dim", 32], "--latent-dim 32 does not match the run in"),
                            (["--batch-size", 32], "trained with --batch-size 64: pass --batch-size 64"),
                            (["--no-minibatch-std"], "trained with --minibatch-std")]:
        message = user_error(gan_mnist.main, *common, "--epochs", 2, "--resume", *flags)
        assert expected in message and "another --out-dir" in message, message
        assert fingerprint(out / "checkpoint.pt") == before
    # More epochs and another learning rate: the run continues, with the new rate in both optimizers.
    gan_mnist.main([*map(str, common), "--epochs", "2", "--resume", "--lr-g", "5e-4"])
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 2 and checkpoint["optimizer_g"]["param_groups"][0]["lr"] == 5e-4


def test_vae_resume_refuses_another_schedule_or_subset(data_dir, tmp_path):
    common = ["--data-dir", data_dir, "--out-dir", tmp_path, "--device", "cpu", "--iw-samples", 1]
    vae_mnist.main([*map(str, common), "--limit", "640", "--epochs", "1"])
    before = fingerprint(tmp_path / "checkpoint.pt")
    for flags, expected in [(["--limit", 640, "--epochs", 3], "--epochs 3 does not match"),
                            (["--limit", 640, "--epochs", 1, "--architecture", "mlp"], "--architecture mlp does not"),
                            (["--limit", 1280, "--epochs", 1], "was trained on 640 images, this run has 1280")]:
        assert expected in user_error(vae_mnist.main, *common, "--resume", *flags)
        assert fingerprint(tmp_path / "checkpoint.pt") == before


# ----- divergence and Ctrl-C: the last good checkpoint stays, and --resume continues from it -----

def test_ctrl_c_keeps_the_last_epoch_and_a_diverging_resume_keeps_it_too(data_dir, tmp_path):
    common = ["--data-dir", data_dir, "--out-dir", tmp_path, "--device", "cpu", "--limit", 2000, "--epochs", 30,
              "--iw-samples", 1]
    process = subprocess.Popen([sys.executable, str(REPO / "vae_mnist.py"), *map(str, common)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "checkpoint.pt").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and stderr.count("\n") == 1, stderr
    assert "interrupted: rerun with --resume" in stderr and "Traceback" not in stderr
    interrupted = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert 1 <= interrupted["epoch"] < 30
    before = fingerprint(tmp_path / "checkpoint.pt")

    # A learning rate of 50 turns the loss into NaN within the first epoch it trains: stopped before saving it.
    message = user_error(vae_mnist.main, *common, "--resume", "--lr", 50)
    for expected in [f"training diverged in epoch {interrupted['epoch'] + 1}",
                     f"still holds epoch {interrupted['epoch']}", "lower --lr"]:
        assert expected in message, message
    assert fingerprint(tmp_path / "checkpoint.pt") == before and not (tmp_path / "elbo.png").exists()


def test_a_diverging_first_epoch_writes_no_checkpoint(data_dir, tmp_path):
    message = user_error(vae_mnist.main, "--data-dir", data_dir, "--out-dir", tmp_path, "--device", "cpu",
                         "--limit", 640, "--epochs", 2, "--lr", 50)
    assert "training diverged in epoch 1" in message and "no checkpoint was written" in message
    assert not (tmp_path / "checkpoint.pt").exists()


def test_gan_losses_that_explode_stop_the_run(data_dir, tmp_path, small_mnist_classifier):
    message = user_error(gan_mnist.main, "--data-dir", data_dir, "--out-dir", tmp_path, "--device", "cpu",
                         "--classifier", small_mnist_classifier, "--limit", 640, "--epochs", 2, "--lr-g", 1e4,
                         "--lr-d", 1e4, "--quality-samples", 100, "--eval-images", 100)
    assert "training diverged in epoch 1" in message and "lower --lr-g and --lr-d" in message
    assert not (tmp_path / "checkpoint.pt").exists()
