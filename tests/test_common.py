"""Unit tests of common/: data, batching, settings, checkpoints, resume and seeding."""
import importlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common import checkpoints, classifier, cli, data, devices, files, seeds, vae
from tests.conftest import REPO


def test_real_mnist_shapes_dtype_range_and_labels(data_dir):
    train_images, train_labels = data.load_mnist(data_dir, train=True)
    test_images, test_labels = data.load_mnist(data_dir, train=False)
    assert train_images.shape == (60000, 1, 28, 28) and test_images.shape == (10000, 1, 28, 28)
    assert train_images.dtype == torch.uint8 and train_labels.dtype == torch.int64
    assert int(train_images.min()) == 0 and int(train_images.max()) == 255
    # The published class counts of MNIST's test set: 980 zeros, 1135 ones, ..., 1009 nines.
    assert torch.bincount(test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert torch.bincount(train_labels).tolist()[1] == 6742
    unit = data.to_unit_range(test_images[:100])
    signed = data.to_signed_range(test_images[:100])
    assert unit.min() == 0 and unit.max() == 1 and signed.min() == -1 and signed.max() == 1


def test_fashion_mnist_and_limit(data_dir):
    images, labels = data.load_mnist(data_dir, train=True, name="fashion-mnist", limit=500)
    assert images.shape == (500, 1, 28, 28) and set(labels.tolist()) == set(range(10))
    mnist, _ = data.load_mnist(data_dir, train=True, limit=500)
    assert not torch.equal(images, mnist)


def test_missing_data_folder_is_one_clear_error(tmp_path):
    with pytest.raises(cli.UserError) as error:
        data.load_mnist(tmp_path / "nowhere")
    message = str(error.value)
    assert "\n" not in message and str(tmp_path / "nowhere") in message and data.DATA_ENV in message


def test_batches_visit_every_example_once_in_a_new_order_each_epoch():
    first = seeds.shuffled_batches(1000, 128, torch.Generator().manual_seed(1))
    second = seeds.shuffled_batches(1000, 128, torch.Generator().manual_seed(2))
    assert [len(batch) for batch in first] == [128] * 7 + [104]
    assert sorted(torch.cat(first).tolist()) == list(range(1000))
    assert not torch.equal(torch.cat(first), torch.cat(second))


def test_settings_become_flags_and_bad_values_are_user_errors():
    settings = {**cli.TRAINING_SETTINGS, "epochs": (10, "passes"), "batch_size": (128, "batch", "[1, inf)", cli.FIXED),
                "lr": (1e-3, "learning rate")}
    cfg = cli.parse(settings, "test", ["--batch-size", "64", "--lr", "0.01", "--resume"])
    assert (cfg.batch_size, cfg.lr, cfg.resume, cfg.epochs) == (64, 0.01, True, 10)
    for argv, expected in [(["--epochs", "-1"], "--epochs must be >= 0"), (["--bogus"], "unrecognized"),
                           (["--epochs", "two"], "invalid int")]:
        with pytest.raises(cli.UserError, match=expected):
            cli.parse(settings, "test", argv)


SCRIPTS = ["gan_mnist", "dcgan_cifar10", "latent_interpolation", "vae_mnist", "vae_anomaly_detection",
           "vae_latent_space_visualization"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_shows_real_defaults_and_choices_and_wraps_at_one_width(name, monkeypatch, capsys):
    script = importlib.import_module(name)
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit):
        cli.parse(script.SETTINGS, script.__doc__, ["--help"])
    text = capsys.readouterr().out
    for wrong in ["[None]", "[]", "{,", " STR", "default: None"]:
        assert wrong not in text, wrong
    options = text[text.index("options:"):]
    description = text[text.index("\n\n"):text.index("options:")]
    # One width for both: every line fills up to the terminal's 100 columns less argparse's margin, and none passes
    # it, but for those that cannot wrap: the example commands (indented, kept as written) and a flag's {choices}.
    for part in (description, options):
        lines = [line for line in part.splitlines() if not line.startswith("    ") and "{" not in line]
        assert 85 < max(map(len, lines)) <= 98, part
    flat = " ".join(text.split())
    if "resume" in script.SETTINGS:
        assert "--seed INT seed for every random choice" in flat and "(default: 0; fixed on resume)" in flat
    assert "--data-dir DIR" in flat and "--out-dir DIR" in flat


def test_fixed_on_resume_is_what_each_script_marks():
    import dcgan_cifar10
    import gan_mnist
    import vae_mnist
    assert set(cli.fixed_on_resume(gan_mnist.SETTINGS)) == {
        "batch_size", "limit", "latent_dim", "g_width", "d_width", "minibatch_std", "pca_start", "beta1", "real_label",
        "ema_half_life", "ema_burn_in", "ema_rampup", "seed"}
    assert set(cli.fixed_on_resume(dcgan_cifar10.SETTINGS)) == {
        "batch_size", "limit", "latent_dim", "base_channels", "spectral_norm", "loss", "beta1", "ema_half_life",
        "ema_burn_in", "ema_rampup", "seed", "dataset", "image_size"}
    assert set(cli.fixed_on_resume(vae_mnist.SETTINGS)) == {
        "architecture", "epochs", "batch_size", "latent_dim", "channels", "hidden", "digit", "binarize", "seed",
        "limit"}
    for script in (gan_mnist, dcgan_cifar10, vae_mnist):  # the rates may change: a resumed run takes the new one
        assert not {"lr", "lr_g", "lr_d", "epochs" if script is not vae_mnist else "lr"} & set(
            cli.fixed_on_resume(script.SETTINGS))


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_script_names_the_settings_it_takes_from_common_with_their_defaults(name):
    """Settings defined once in common/ reach a script through ** in its SETTINGS block; a comment there names each
    with its default, so a reader of the script sees every setting. This keeps those comments true."""
    script = importlib.import_module(name)
    source = (REPO / f"{name}.py").read_text()
    block = source[source.index("SETTINGS = {"):]
    block = block[:block.index("\n}\n")]
    for setting, (default, *_) in script.SETTINGS.items():
        if f'"{setting}":' in block:
            continue  # defined in the script itself
        flag = "--" + setting.replace("_", "-")
        match = re.search(rf"{flag}(?![\w-])( [^\s,;]+)?", block)
        assert match, f"{name}.py's SETTINGS do not name {flag}"
        if default not in (None, "", []) and not isinstance(default, bool):
            assert match.group(1), f"{name}.py names {flag} without its default {default}"
            assert type(default)(match.group(1).strip().rstrip(".")) == default, (flag, match.group(1), default)


def test_unknown_device_is_a_user_error():
    with pytest.raises(cli.UserError, match="--device: invalid choice: 'tpu'"):
        cli.parse(cli.BASE_SETTINGS, "test", ["--device", "tpu"])
    assert devices.pick_device("cpu").type == "cpu"


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "metrics.json"
    files.write_json(path, {"loss": 1.0})

    def fail(temporary):
        Path(temporary).write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        files.atomic_write(path, fail)
    assert path.read_text().startswith('{\n  "loss": 1.0') and list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("model", [vae.ConvVAE(latent_dim=4, channels=4, hidden=16),
                                   vae.MLPVAE(latent_dim=4, hidden=16)], ids=["conv", "mlp"])
def test_checkpoint_round_trip_rebuilds_an_identical_model(tmp_path, model):
    checkpoints.save_checkpoint(tmp_path / "c.pt", "vae", model=model.state_dict(), model_config=model.config,
                                optimizer={}, epoch=3, history={"test_loss": [1.5]}, train_examples=10, settings={})
    rebuilt, checkpoint = vae.load_vae(tmp_path / "c.pt", "cpu")
    assert checkpoint["epoch"] == 3 and rebuilt.config == model.config
    z = torch.randn(5, 4)
    assert torch.equal(rebuilt.decode(z), model.eval().decode(z))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing", "incomplete"])
def test_damaged_checkpoint_is_one_clear_error(tmp_path, damage):
    path = tmp_path / "c.pt"
    model = vae.ConvVAE(latent_dim=4, channels=4, hidden=16)
    checkpoints.save_checkpoint(path, "vae", model=model.state_dict(), model_config=model.config, optimizer={},
                                epoch=1, history={}, train_examples=10, settings={})
    if damage == "incomplete":  # it names its kind, and lacks what every file of that kind holds
        checkpoints.save_checkpoint(path, "vae", model=model.state_dict())
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:500])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint")
    else:
        path.unlink()
    with pytest.raises(cli.UserError) as error:
        vae.load_vae(path, "cpu")
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def tiny_vae_run(data_dir, out, epochs, *flags):
    """vae_mnist.py on 512 training images with a tiny VAE; returns (model weights, history) from its checkpoint."""
    import vae_mnist
    vae_mnist.main(["--data-dir", str(data_dir), "--out-dir", str(out), "--device", "cpu", "--limit", "512",
                    "--epochs", str(epochs), "--lr", "2e-3", "--latent-dim", "4", "--channels", "4", "--hidden", "32",
                    "--iw-samples", "1", *map(str, flags)])
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    return checkpoint["model"], checkpoint["history"]


@pytest.mark.parametrize("architecture", ["conv", "mlp"])
def test_resumed_run_ends_where_an_uninterrupted_one_does(data_dir, tmp_path, monkeypatch, architecture):
    whole_model, whole = tiny_vae_run(data_dir, tmp_path / "a", 3, "--architecture", architecture)
    save_checkpoint = checkpoints.save_checkpoint

    def interrupt_after_epoch_2(path, kind, **state):  # Ctrl-C right after epoch 2 is checkpointed
        save_checkpoint(path, kind, **state)
        if state["epoch"] == 2:
            raise KeyboardInterrupt
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(checkpoints, "save_checkpoint", interrupt_after_epoch_2)
        tiny_vae_run(data_dir, tmp_path / "b", 3, "--architecture", architecture)
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["epoch"] == 2
    resumed_model, resumed = tiny_vae_run(data_dir, tmp_path / "b", 3, "--architecture", architecture, "--resume")
    for key in ("train_loss", "test_loss", "test_kl"):
        assert resumed[key] == whole[key]
    for name, weight in whole_model.items():
        assert torch.equal(weight, resumed_model[name]), name


def test_same_seed_same_numbers_other_seed_other_numbers(data_dir, tmp_path):
    runs = [tiny_vae_run(data_dir, tmp_path / str(i), 1, "--seed", seed)[1] for i, seed in enumerate([7, 7, 8])]
    assert runs[0]["test_loss"] == runs[1]["test_loss"]
    assert runs[0]["test_loss"] != runs[2]["test_loss"]


def test_a_users_pngs_of_every_kind_load_as_their_grey_levels(tmp_path):
    levels = (np.arange(28 * 28).reshape(28, 28) * 7 % 256).astype(np.uint8)   # every grey level, scattered
    opaque = np.full_like(levels, 255)
    kinds = {"a_grey_8_bit": Image.fromarray(levels),
             "grey_16_bit": Image.fromarray(levels.astype(np.uint16) * 257),  # 257 x: the same level on 16 bits
             "grey_opaque_alpha": Image.fromarray(np.stack([levels, opaque], -1), "LA"),
             "palette": Image.fromarray(levels).convert("P"),
             "rgb": Image.fromarray(np.stack([levels] * 3, -1)),
             "rgb_opaque_alpha": Image.fromarray(np.stack([levels] * 3 + [opaque], -1))}
    for name, image in kinds.items():
        image.save(tmp_path / f"{name}.png")
    Image.fromarray(levels > 127).save(tmp_path / "one_bit.PNG")   # any letter case
    ids, images = data.load_user_images(tmp_path)
    assert ids == sorted([*(f"{name}.png" for name in kinds), "one_bit.PNG"]) and images.shape == (7, 1, 28, 28)
    expected = torch.from_numpy(levels).float() / 255
    for name, image in zip(ids, images):
        wanted = (expected > 0.5).float() if name == "one_bit.PNG" else expected
        assert torch.allclose(image[0], wanted, atol=1e-6), name
    assert Image.open(tmp_path / "grey_16_bit.png").mode == "I;16"


@pytest.mark.parametrize("write, expected", [
    (lambda path: Image.fromarray(np.zeros((32, 28), np.uint8)).save(path), "is 28 x 32 pixels: expected 28 x 28"),
    (lambda path: Image.fromarray(np.zeros((28, 28, 4), np.uint8)).save(path), "has transparent pixels"),
    (lambda path: path.write_bytes(b"\x89PNG\r\n\x1a\n cut short"), "is not a readable PNG"),
])
def test_a_png_that_cannot_be_read_as_28_x_28_grey_levels_is_one_line_naming_it(tmp_path, write, expected):
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "a_good.png")
    write(tmp_path / "bad.png")
    with pytest.raises(cli.UserError) as error:
        data.load_user_images(tmp_path)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'bad.png'} ") and expected in message and "\n" not in message, message


def test_a_classifier_trained_twice_with_one_seed_is_the_same_network_and_says_so(data_dir, tmp_path):
    identities = []
    for name, noise in [("a.pt", 1), ("b.pt", 2)]:
        torch.manual_seed(noise)  # what the process drew before must not matter
        _, identity = classifier.mnist_classifier(data_dir, torch.device("cpu"), tmp_path / name, limit=300)
        identities.append(identity)
    assert identities[0] == identities[1] and len(identities[0]["weights_sha256"]) == 16
    assert identities[0]["seed"] == 0 and identities[0]["train_images"] == 300 and identities[0]["test_images"] == 300
    cached = checkpoints.load_checkpoint(tmp_path / "a.pt", kind="classifier")
    model = classifier.SmallCNN(in_channels=1, image_size=28)
    model.load_state_dict(cached["model"])
    assert classifier.weights_hash(model) == identities[0]["weights_sha256"] == cached["identity"]["weights_sha256"]
    # A cached classifier is read without the dataset it was trained on: a run that only needs its judge does not
    # load 70,000 images first.
    _, identity = classifier.mnist_classifier(tmp_path / "no data here", torch.device("cpu"), tmp_path / "a.pt")
    assert identity == identities[0]


@pytest.mark.parametrize("values, expected", [
    (np.where(np.arange(2 * 28 * 28).reshape(2, 28, 28) == 5, np.nan, 0.5).astype(np.float32),
     "holds 1 NaN value among its 1568 pixels: expected uint8 0..255 or float 0..1, every pixel a number"),
    (np.array([[[np.nan, np.inf, np.nan] + [0.0] * 25] + [[0.0] * 28] * 27]),
     "holds 2 NaN values and 1 infinite value among its 784 pixels: expected uint8 0..255 or float 0..1, every "
     "pixel a number"),
    (np.full((1, 28, 28), "a"), "holds <U1 values, not numbers: expected uint8 0..255 or float 0..1"),
    (np.full((1, 28, 28), 2.0), "holds float64 values from 2.0 to 2.0: expected uint8 0..255 or float 0..1"),
])
def test_a_users_array_of_values_that_are_not_pixels_is_one_line_saying_which(tmp_path, capsys, values, expected):
    np.save(tmp_path / "images.npy", values)
    with pytest.raises(SystemExit) as stopped:  # as the --score of vae_anomaly_detection.py runs it
        cli.run(lambda: data.load_user_images(tmp_path / "images.npy"))
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.count("\n") == 1
    assert err.split("error: ", 1)[1] == f"{tmp_path / 'images.npy'} {expected}\n"


@pytest.mark.parametrize("kind", [["vae"], {"vae": 1}, 3])
def test_a_checkpoint_whose_kind_is_not_a_name_is_refused_in_one_line(tmp_path, kind):
    torch.save({"kind": kind, "model": {}}, tmp_path / "edited.pt")
    with pytest.raises(cli.UserError) as error:
        checkpoints.load_checkpoint(tmp_path / "edited.pt", kind="vae", flag="--vae-checkpoint")
    assert str(error.value) == (f"--vae-checkpoint {tmp_path / 'edited.pt'} holds no checkpoint of this project, not a "
                                f"VAE (written by vae_mnist.py): pass --vae-checkpoint the path of a VAE (written by "
                                f"vae_mnist.py)")
