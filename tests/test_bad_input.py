"""What a user sees on bad input: one line naming the problem and the fix, exit code 2 (130 for Ctrl-C), and no
file of theirs replaced or lost.

Most cases call a script's ``main`` in-process, where the one line is a ``cli.UserError`` (``cli.run`` prints it and
exits with 2, which the subprocess tests here and beside each script check); Ctrl-C needs a real process.
"""
import hashlib
import importlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import dcgan_cifar10
import gan_mnist
import vae_mnist
from common import checkpoints, classifier, cli, data, dcgan, files, mlp_gan, progress, seeds, vae
from tests.conftest import DATA, REPO, folder_fingerprint


def default_sigint():
    """Before exec in a child about to receive Ctrl-C: SIGINT back to its default, so that the new Python installs its
    KeyboardInterrupt handler, also where the tests run as a shell's background job (which starts with SIGINT
    ignored, and Python leaves an ignored signal ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


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
    ("gan_mnist.py", "--batch-size", 1, "--batch-size must be >= 2, got 1"),  # G's batch norm needs two images
    ("gan_mnist.py", "--d-width", 1, "--d-width must be >= 2"),
    ("gan_mnist.py", "--real-label", 0, "--real-label must be between 0 and 1 (0 excluded)"),
    ("gan_mnist.py", "--beta1", 1, "--beta1 must be between 0 and 1 (1 excluded)"),
    ("gan_mnist.py", "--eval-images", 20000, "--eval-images must be between 129 and 10000 (both included)"),
    # A Frechet distance from fewer images than the classifier's 128 features rests on a singular covariance.
    ("gan_mnist.py", "--eval-images", 2, "--eval-images must be between 129 and 10000 (both included), got 2"),
    ("gan_mnist.py", "--quality-samples", 2, "--quality-samples must be between 129 and 60000"),
    ("dcgan_cifar10.py", "--quality-samples", 128, "--quality-samples must be between 129 and 5000"),
    ("dcgan_cifar10.py", "--ema-rampup", 2, "--ema-rampup must be between 0 and 1 (both included), got 2.0"),
    ("dcgan_cifar10.py", "--ema-half-life", -1, "--ema-half-life must be >= 0, got -1"),
    ("dcgan_cifar10.py", "--eval-images", 1, "--eval-images must be between 129 and 10000"),
    ("latent_interpolation.py", "--steps", 1, "--steps must be between 2 and 64 (both included), got 1"),
    ("latent_interpolation.py", "--steps", 10**9, "--steps must be between 2 and 64 (both included), got 1000000000"),
    ("latent_interpolation.py", "--pairs", 21, "--pairs must be between 1 and 20 (both included), got 21"),
    ("latent_interpolation.py", "--pool", 10**9, "--pool must be between 2 and 50000 (both included), got 1000000000"),
    # Below 2,049 images the covariance of Inception's 2,048 features is singular.
    ("gan_mnist.py", "--fid-samples", 2048, "--fid-samples must be >= 2049, got 2048"),
    ("dcgan_cifar10.py", "--fid-samples", 50, "--fid-samples must be >= 2049, got 50"),
    ("vae_anomaly_detection.py", "--percentile", 100, "--percentile must be between 0 and 100 (both excluded)"),
    ("vae_anomaly_detection.py", "--one-class-epochs", 0, "--one-class-epochs must be >= 1"),
    ("vae_latent_space_visualization.py", "--tsne-iterations", 100, "--tsne-iterations must be >= 300"),
    # Trustworthiness compares 10 neighbours and needs more than 20 points: 20 was accepted, and failed after t-SNE.
    ("vae_latent_space_visualization.py", "--num-points", 20, "--num-points must be between 21 and 10000"),
    ("vae_latent_space_visualization.py", "--metric-points", 20, "--metric-points must be between 21 and 10000"),
])
def test_a_number_out_of_range_is_refused_before_any_data_is_read(tmp_path, script, flag, value, expected):
    main = importlib.import_module(script.removesuffix(".py")).main
    assert expected in user_error(main, flag, value, "--data-dir", tmp_path / "nowhere", "--out-dir", tmp_path / "run")


def test_a_bad_number_on_the_command_line_exits_with_code_2(tmp_path):
    assert_one_line_error(run_script("dcgan_cifar10.py", "--batch-size", 0, "--out-dir", tmp_path),
                          "--batch-size must be >= 1, got 0")


# ----- a file of another kind where a checkpoint is expected -----

def write_gan_checkpoint(path):
    generator, discriminator = mlp_gan.Generator(8, (16,)), mlp_gan.Discriminator(hidden=(16, 8))
    checkpoints.save_checkpoint(path, "gan", architecture="mlp", generator=generator.state_dict(),
                                generator_config=generator.config, generator_ema=generator.state_dict(),
                                discriminator=discriminator.state_dict(), discriminator_config=discriminator.config,
                                optimizer_g={}, optimizer_d={}, epoch=1, history={}, settings={})


def write_vae_checkpoint(path):
    model = vae.MLPVAE(latent_dim=4, hidden=16)
    checkpoints.save_checkpoint(path, "vae", model=model.state_dict(), model_config=model.config, optimizer={},
                                epoch=1, history={}, train_examples=100, settings={})


def write_classifier(path, in_channels=3, image_size=32):
    model = classifier.SmallCNN(in_channels=in_channels, image_size=image_size, channels=4, hidden=8)
    identity = {"weights_sha256": classifier.weights_hash(model), "seed": 0, "test_accuracy": 0.5,
                "test_images": 100, "train_images": 100, "epochs": 1}
    checkpoints.save_checkpoint(path, "classifier", model=model.state_dict(), model_config=model.config,
                                identity=identity)


@pytest.mark.parametrize("script, flag, write, missing", [
    ("vae_anomaly_detection.py", "--vae-checkpoint", write_vae_checkpoint, "model_config"),
    ("vae_latent_space_visualization.py", "--vae-checkpoint", write_vae_checkpoint, "model"),
    ("latent_interpolation.py", "--checkpoint", write_gan_checkpoint, "generator_ema"),
    ("gan_mnist.py", "--classifier", write_classifier, "identity"),
])
def test_a_checkpoint_that_names_its_kind_but_lacks_a_key_is_refused_in_one_line(data_dir, tmp_path, script, flag,
                                                                                 write, missing):
    path = tmp_path / "edited.pt"
    write(path)
    torch.save({key: value for key, value in torch.load(path, weights_only=True).items() if key != missing}, path)
    before = fingerprint(path)
    main = importlib.import_module(script.removesuffix(".py")).main
    message = user_error(main, flag, path, "--data-dir", data_dir, "--out-dir", tmp_path / "run", "--device", "cpu",
                         *(["--limit", 64, "--epochs", 1] if script == "gan_mnist.py" else []))
    assert f"{flag} {path} is an incomplete or older checkpoint ({missing} missing)" in message, message
    assert "train again" in message and fingerprint(path) == before


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
    def run_script(*args):
        raise AssertionError("a VAE was trained for a --vae-checkpoint the user named")
    monkeypatch.setattr(cli, "run_script", run_script)
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


def test_the_default_vae_checkpoint_is_trained_there_by_vae_mnist_when_absent(data_dir, monkeypatch):
    commands = []

    def run_script(script, *flags):
        commands.append([script, *map(str, flags)])
        write_vae_checkpoint(vae.DEFAULT_CHECKPOINT)  # stands for minutes of training
    monkeypatch.setattr(cli, "run_script", run_script)
    model, checkpoint = vae.load_or_train_vae(vae.DEFAULT_CHECKPOINT, data_dir, torch.device("cpu"),
                                              log=lambda _: None)
    assert commands == [["vae_mnist.py", "--out-dir", str(vae.DEFAULT_CHECKPOINT.parent), "--device", "cpu", "--seed",
                         "0", "--data-dir", str(data_dir)]]
    assert isinstance(model, vae.MLPVAE) and checkpoint["train_examples"] == 100

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
              "--limit", 640, "--quality-samples", 129, "--eval-images", 129]
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
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
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
                         "--lr-d", 1e4, "--quality-samples", 129, "--eval-images", 129)
    assert "training diverged in epoch 1" in message and "lower --lr-g and --lr-d" in message
    assert not (tmp_path / "checkpoint.pt").exists()


# ----- an --out-dir that cannot be a folder -----

@pytest.mark.parametrize("script", ["vae_mnist.py", "gan_mnist.py", "dcgan_cifar10.py", "latent_interpolation.py",
                                    "vae_latent_space_visualization.py"])
def test_an_out_dir_that_is_a_file_or_goes_through_one_is_refused_and_the_file_left_alone(tmp_path, script):
    main = importlib.import_module(script.removesuffix(".py")).main
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    before = fingerprint(notes)
    assert f"--out-dir {notes} cannot be used: {notes} is a file, not a folder" in user_error(
        main, "--out-dir", notes, "--data-dir", tmp_path / "nowhere")
    assert f"{notes}, on its path, is a file" in user_error(main, "--out-dir", notes / "sub",
                                                            "--data-dir", tmp_path / "nowhere")
    assert fingerprint(notes) == before


def test_a_folder_another_process_creates_meanwhile_is_not_called_a_file(tmp_path, monkeypatch):
    """Under torchrun the main process creates --out-dir while the others check it: a check that looks twice (absent,
    then present) called the new folder a file. Here it appears between the two looks."""
    folder = tmp_path / "run"
    folder.mkdir()
    monkeypatch.setattr(Path, "is_dir", lambda self: False if self == folder else os.path.isdir(self))
    assert files.unwritable(folder) is None
    (tmp_path / "dangling").symlink_to(tmp_path / "nothing")
    assert files.unwritable(tmp_path / "dangling") == f"{tmp_path / 'dangling'} is a file, not a folder"
    assert files.unwritable(tmp_path / "new" / "sub") is None


def test_an_out_dir_that_is_a_file_exits_with_code_2(tmp_path):
    (tmp_path / "taken").write_text("")
    assert_one_line_error(run_script("vae_mnist.py", "--out-dir", tmp_path / "taken"), "is a file, not a folder")


def test_a_classifier_path_that_cannot_be_written_is_refused_before_training(data_dir, tmp_path):
    (tmp_path / "file").write_text("")
    for path, expected in [(tmp_path / "file" / "mnist.pt", f"cannot be written: {tmp_path / 'file'} is a file"),
                           (tmp_path, "is a folder: pass the path of a checkpoint file")]:
        assert expected in user_error(gan_mnist.main, "--classifier", path, "--data-dir", data_dir, "--out-dir",
                                      tmp_path / "run", "--device", "cpu", "--limit", 64, "--epochs", 1)
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").iterdir())


# ----- batch norm and the last batch -----

def test_a_last_batch_of_one_joins_the_one_before_it():
    parts = seeds.shuffled_batches(129, 64, torch.Generator().manual_seed(0))
    assert [len(batch) for batch in parts] == [64, 65]
    assert sorted(torch.cat(parts).tolist()) == list(range(129))
    assert [len(batch) for batch in seeds.shuffled_batches(1, 64, torch.Generator())] == [1]


def test_a_gan_run_whose_last_batch_holds_one_image_trains_and_too_few_images_are_refused(data_dir, tmp_path,
                                                                                         small_mnist_classifier):
    common = ["--data-dir", data_dir, "--device", "cpu", "--classifier", small_mnist_classifier, "--epochs", 1,
              "--quality-samples", 129, "--eval-images", 129, "--g-width", 16, "--d-width", 32]
    metrics = gan_mnist.main([*map(str, common), "--limit", "65", "--out-dir", str(tmp_path / "run")])
    assert metrics["epochs"] == 1
    message = user_error(gan_mnist.main, *common, "--limit", 1, "--out-dir", tmp_path / "one")
    assert "--limit 1 leaves fewer than 2 training images per process" in message and "--limit 2" in message


def test_gan_mnist_refuses_to_sample_a_dcgan(data_dir, tmp_path):
    generator, discriminator = dcgan.Generator(latent_dim=8, base_channels=4), dcgan.Discriminator(base_channels=4)
    checkpoints.save_checkpoint(tmp_path / "checkpoint.pt", "gan", architecture="dcgan",
                                generator=generator.state_dict(), generator_config=generator.config,
                                generator_ema=generator.state_dict(), discriminator=discriminator.state_dict(),
                                discriminator_config=discriminator.config, optimizer_g={}, optimizer_d={}, epoch=1,
                                history={}, settings={})
    before = fingerprint(tmp_path / "checkpoint.pt")
    message = user_error(gan_mnist.main, "--epochs", 0, "--data-dir", data_dir, "--out-dir", tmp_path,
                         "--device", "cpu")
    assert "holds a dcgan GAN, not the mlp GAN this script samples" in message
    assert fingerprint(tmp_path / "checkpoint.pt") == before


# ----- damaged data: the file is named -----

@pytest.mark.parametrize("name, damage, expected", [
    ("t10k-images-idx3-ubyte", lambda raw: raw[:5000], "5000 bytes where its header promises 7840016"),
    ("t10k-labels-idx1-ubyte", lambda raw: raw[:7], "7 bytes, shorter than its header"),
    ("t10k-labels-idx1-ubyte", lambda raw: raw[:-1], "10007 bytes where its header promises 10008"),
    ("t10k-images-idx3-ubyte", lambda raw: b"\0" * 16 + raw[16:], "not an IDX file of 28 x 28 images"),
    ("t10k-labels-idx1-ubyte", lambda raw: raw[:-1] + b"\x2a", "labels outside 0 to 9"),
])
def test_a_damaged_mnist_file_is_named_with_how_to_get_a_good_copy(data_dir, tmp_path, name, damage, expected):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for file in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copy(data_dir / "MNIST" / "raw" / file, raw / file)
    (raw / name).write_bytes(damage((raw / name).read_bytes()))
    with pytest.raises(cli.UserError) as error:
        data.load_mnist(tmp_path, train=False)
    message = str(error.value)
    assert f"{raw / name} is damaged ({expected}" in message and "download=True" in message, message
    assert "\n" not in message


@pytest.fixture
def small_cifar_folder(data_dir, tmp_path):
    """A cifar10-jpeg/train folder of two real images per class."""
    split = tmp_path / "cifar" / "cifar10-jpeg" / "train"
    for name in data.CIFAR10_CLASSES:
        (split / name).mkdir(parents=True)
        for file in ("0001.jpg", "0002.jpg"):
            shutil.copy(data_dir / "cifar10-jpeg" / "test" / name / file, split / name / file)
    return split


@pytest.mark.parametrize("content, expected", [(b"", "is empty (0 bytes), not a JPEG image"),
                                               (b"\xff\xd8 not a JPEG after all", "is not a readable JPEG")])
def test_an_unreadable_cifar10_image_is_named(small_cifar_folder, content, expected):
    (small_cifar_folder / "cat" / "0003.jpg").write_bytes(content)
    with pytest.raises(cli.UserError) as error:
        data.load_cifar10(small_cifar_folder.parent.parent)
    assert f"{small_cifar_folder / 'cat' / '0003.jpg'} {expected}" in str(error.value)
    assert "\n" not in str(error.value)


def test_dcgan_refuses_a_limit_too_small_for_its_tracked_distance(small_cifar_folder, tmp_path):
    (small_cifar_folder / "cat" / "0003.jpg").unlink(missing_ok=True)
    message = user_error(dcgan_cifar10.main, "--data-dir", small_cifar_folder.parent.parent, "--out-dir",
                         tmp_path / "run", "--device", "cpu", "--limit", 20, "--classifier", tmp_path / "c.pt")
    assert "--limit 20 leaves fewer training images than the 129 the tracked Frechet distance" in message


# ----- counts too large for memory or disk, and long steps -----

def test_samples_stream_into_samples_npz_and_a_count_the_disk_cannot_hold_is_refused_first(tmp_path):
    batches = (torch.full((n, 1, 2, 2), i, dtype=torch.uint8) for i, n in enumerate([3, 3, 1]))
    files.write_samples(tmp_path / "samples.npz", batches, 7)
    images = np.load(tmp_path / "samples.npz")["images"]
    assert images.shape == (7, 1, 2, 2) and images.dtype == np.uint8 and images[:, 0, 0, 0].tolist() == [0] * 3 + \
        [1] * 3 + [2]
    message = user_error(vae_mnist.main, "--epochs", 0, "--num-samples", 10**13, "--out-dir", tmp_path / "run",
                         "--data-dir", tmp_path / "nowhere")
    assert "--num-samples 10000000000000 needs up to 7840000.0 GB for samples.npz" in message
    assert "pass a smaller --num-samples" in message


def test_the_importance_weighted_estimate_shows_progress_and_bounds_its_memory(monkeypatch):
    described = []
    monkeypatch.setattr(progress, "progress_bar", lambda items, description: described.append(description) or items)
    model = vae.MLPVAE(latent_dim=4, hidden=16)
    images = torch.rand(70, 1, 28, 28)
    torch.manual_seed(0)
    whole = vae.importance_weighted_nll_per_image(model, images, 8)
    torch.manual_seed(0)
    chunked = vae.importance_weighted_nll_per_image(model, images, 8, decodes=3 * 64)  # chunks of 3, 3, 2 samples
    assert described == ["estimating -log p(x)"] * 2
    assert torch.allclose(whole, chunked, atol=1e-3)


def test_separation_takes_as_few_points_as_the_settings_allow():
    import vae_latent_space_visualization as lsv
    points = np.random.default_rng(0).normal(size=(lsv.MIN_POINTS, 2))
    labels = np.arange(lsv.MIN_POINTS) % 10  # two or three points of each digit: too few for stratified folds
    accuracy, silhouette = lsv.separation(points, labels, np.arange(lsv.MIN_POINTS), seed=0)
    assert 0 <= accuracy <= 1 and -1 <= silhouette <= 1


# ----- what Ctrl-C says while a step that saves nothing runs -----

def test_ctrl_c_while_the_classifier_trains_says_nothing_was_saved_and_no_resume(data_dir, tmp_path):
    process = subprocess.Popen([sys.executable, str(REPO / "gan_mnist.py"), "--data-dir", str(data_dir),
                                "--out-dir", str(tmp_path / "run"), "--device", "cpu",
                                "--classifier", str(tmp_path / "classifier.pt")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=default_sigint)
    line = ""
    while "no classifier at" not in line and process.poll() is None:
        line = process.stdout.readline()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and stderr.count("\n") == 1, stderr
    assert f"interrupted while training the classifier for {tmp_path / 'classifier.pt'}, which is written only " \
           f"once trained: no epoch was finished; rerun the same command to start again" in stderr
    assert not (tmp_path / "classifier.pt").exists() and not list((tmp_path / "run").iterdir())
