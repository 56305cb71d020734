"""dcgan_cifar10.py end to end on a subset of real CIFAR-10; its data loading (image folder and torchvision's
batches), models and answers to bad input."""
import hashlib
import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets, io

import dcgan_cifar10
import latent_interpolation
from common import classifier, cli, data, dcgan, plots

FIGURES = ["losses.png", "discriminator.png", "grids/epoch_001.png", "grids/epoch_002.png", "progress.png",
           "quality.png", "real_vs_generated.png"]


@pytest.fixture
def cifar_dir(data_dir):
    if not (data_dir / "cifar10-jpeg" / "train").is_dir():
        pytest.skip(f"CIFAR-10 image folder not found in {data_dir}")
    return data_dir


def test_image_folder_decodes_like_pil_interleaves_classes_and_is_cached(cifar_dir, monkeypatch):
    images, labels = data.load_cifar10(cifar_dir, train=False, limit=30)
    assert images.shape == (30, 3, 32, 32) and images.dtype == torch.uint8 and labels.dtype == torch.int64
    # Round robin over the classes: the first 30 images are three of each class, in class order.
    assert labels.tolist() == list(range(10)) * 3
    truck = np.asarray(Image.open(cifar_dir / "cifar10-jpeg/test/truck/0001.jpg").convert("RGB"))
    assert np.abs(images[19].permute(1, 2, 0).numpy().astype(int) - truck).max() <= 2  # libjpeg versions round apart

    full, full_labels = data.load_cifar10(cifar_dir, train=False)
    assert full.shape == (10000, 3, 32, 32) and torch.bincount(full_labels).tolist() == [1000] * 10
    assert torch.equal(full[:30], images)
    assert list((data.CACHE_DIR).glob("cifar10-jpeg-test-*.pt")), "the decoded test set was not cached"
    monkeypatch.setattr(data.io, "decode_jpeg", lambda *args, **kwargs: pytest.fail("decoded again, cache unused"))
    cached, cached_labels = data.load_cifar10(cifar_dir, train=False, limit=500)
    assert torch.equal(cached, full[:500]) and torch.equal(cached_labels, full_labels[:500])


def write_torchvision_batches(root, images, labels, monkeypatch):
    """A small cifar-10-batches-py in torchvision's format (pickled dicts of N x 3072 uint8 rows), whose checksums
    replace the real files' in torchvision's integrity check: 10 images per training batch, 10 in the test batch."""
    folder = root / datasets.CIFAR10.base_folder
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    checksums = {}
    for i, name in enumerate(names):
        part = slice(10 * i, 10 * i + 10)
        with open(folder / name, "wb") as file:
            pickle.dump({"data": images[part].reshape(10, -1).numpy(), "labels": labels[part].tolist()}, file)
        checksums[name] = hashlib.md5((folder / name).read_bytes()).hexdigest()
    with open(folder / "batches.meta", "wb") as file:
        pickle.dump({"label_names": list(data.CIFAR10_CLASSES)}, file)
    monkeypatch.setattr(datasets.CIFAR10, "train_list", [[name, checksums[name]] for name in names[:5]])
    monkeypatch.setattr(datasets.CIFAR10, "test_list", [["test_batch", checksums["test_batch"]]])
    monkeypatch.setattr(datasets.CIFAR10, "meta", {**datasets.CIFAR10.meta, "md5": hashlib.md5(
        (folder / "batches.meta").read_bytes()).hexdigest()})
    return folder


def test_torchvision_batches_are_read_in_place_of_the_image_folder(cifar_dir, tmp_path, monkeypatch):
    real, real_labels = data.load_cifar10(cifar_dir, train=False, limit=60)
    folder = write_torchvision_batches(tmp_path / "cifar", real, real_labels, monkeypatch)
    images, labels = data.load_cifar10(tmp_path / "cifar", train=True)
    assert images.shape == (50, 3, 32, 32) and images.dtype == torch.uint8
    assert torch.equal(images, real[:50]) and torch.equal(labels, real_labels[:50])
    test_images, _ = data.load_cifar10(tmp_path / "cifar", train=False, limit=4)
    assert torch.equal(test_images, real[50:54])

    (folder / "data_batch_3").write_bytes(b"truncated")
    with pytest.raises(cli.UserError, match="checksums do not match") as error:
        data.load_cifar10(tmp_path / "cifar")
    assert "\n" not in str(error.value)


def test_missing_or_empty_folder_is_one_clear_error(tmp_path):
    with pytest.raises(cli.UserError, match="CIFAR-10 not found in") as error:
        data.load_cifar10(tmp_path / "nowhere")
    assert "\n" not in str(error.value) and data.DATA_ENV in str(error.value)
    (tmp_path / "cifar10-jpeg" / "train").mkdir(parents=True)
    with pytest.raises(cli.UserError, match="no images in") as error:
        data.load_cifar10(tmp_path)
    assert "\n" not in str(error.value)
    for name in data.CIFAR10_CLASSES[:9]:
        (tmp_path / "cifar10-jpeg" / "train" / name).mkdir()
        Image.new("RGB", (32, 32)).save(tmp_path / "cifar10-jpeg" / "train" / name / "0000.jpg")
    with pytest.raises(cli.UserError, match="truck"):
        data.load_cifar10(tmp_path)


def test_flips_mirror_about_half_of_a_batch_and_change_nothing_else():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (1000, 3, 32, 32), dtype=torch.uint8)
    flipped = data.random_horizontal_flip(images)
    same = (flipped == images).flatten(1).all(1)
    mirrored = (flipped == images.flip(3)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and 400 < int(mirrored.sum()) < 600


def test_models_shapes_ranges_initialisation_and_rebuild_from_config():
    generator = dcgan.Generator(latent_dim=20, base_channels=8)
    images = generator(torch.randn(5, 20))
    assert images.shape == (5, 3, 32, 32) and images.min() >= -1 and images.max() <= 1
    weights = torch.cat([m.weight.flatten() for m in generator.modules() if isinstance(m, torch.nn.ConvTranspose2d)])
    assert abs(float(weights.detach().std()) - 0.02) < 0.002  # Radford et al.: N(0, 0.02)
    rebuilt = dcgan.Generator(**generator.config)
    rebuilt.load_state_dict(generator.state_dict())
    generator.eval(), rebuilt.eval()
    z = torch.randn(3, 20)
    assert torch.equal(rebuilt(z), generator(z))
    for spectral_norm in (False, True):
        discriminator = dcgan.Discriminator(base_channels=8, spectral_norm=spectral_norm)
        assert discriminator(images).shape == (5,)
        has_norm = any(isinstance(m, torch.nn.BatchNorm2d) for m in discriminator.modules())
        assert has_norm != spectral_norm


def test_64_pixels_add_one_strided_layer_to_each_network():
    def strided(model):
        return sum(isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and m.stride == (2, 2)
                   for m in model.modules())

    generator = dcgan.Generator(latent_dim=20, base_channels=8, image_size=64)
    images = generator(torch.randn(2, 20))
    assert images.shape == (2, 3, 64, 64) and images.min() >= -1 and images.max() <= 1
    discriminator = dcgan.Discriminator(base_channels=8, image_size=64)
    assert discriminator(images).shape == (2,)
    assert strided(generator) == strided(dcgan.Generator(20, 8)) + 1 == 4
    assert strided(discriminator) == strided(dcgan.Discriminator(8)) + 1 == 4


def test_trains_on_a_subset_writes_every_output_resumes_and_samples_from_its_checkpoint(cifar_dir, tmp_path):
    judge = tmp_path / "classifier.pt"
    classifier.cifar10_classifier(cifar_dir, torch.device("cpu"), judge, limit=1000)
    out = tmp_path / "run"
    common = ["--data-dir", str(cifar_dir), "--out-dir", str(out), "--device", "cpu", "--classifier", str(judge),
              "--limit", "640", "--batch-size", "64", "--base-channels", "16", "--quality-samples", "500",
              "--eval-images", "1000"]
    dcgan_cifar10.main(common + ["--epochs", "1"])
    size_after_one = (out / "checkpoint.pt").stat().st_size
    with pytest.raises(cli.UserError, match="--loss hinge does not match the run in .* trained with --loss bce"):
        dcgan_cifar10.main(common + ["--epochs", "2", "--resume", "--loss", "hinge"])
    metrics = dcgan_cifar10.main(common + ["--epochs", "2", "--resume"])
    for name in FIGURES:
        assert (out / name).stat().st_size > 10_000, name
    assert (out / "best.pt").exists() and (out / "checkpoint.pt").exists()
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    history = checkpoint["history"]
    # The epoch grids are PNG files, not pickled into the checkpoint, which does not grow with the epochs (one
    # grid of 64 colour images would add 8% to this small network's file).
    assert abs((out / "checkpoint.pt").stat().st_size / size_after_one - 1) < 0.01
    assert len(history["step_loss_d"]) == 20 and np.isfinite(history["step_loss_d"] + history["step_loss_g"]).all()
    # The weight average's batch-norm statistics are its own, re-estimated, not those of G it was saved beside.
    statistics = [key for key in checkpoint["generator_ema"] if key.endswith("running_var")]
    assert statistics and not any(torch.allclose(checkpoint["generator_ema"][key], checkpoint["generator"][key])
                                  for key in statistics)
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2
    # An untrained generator's blobs sit far from real images; ten steps of a 16-filter DCGAN are not yet close.
    assert 0 < metrics["frechet_distance"] and metrics["sampled_epoch"] in (1, 2)
    assert metrics["tracked_frechet_distance_best"] == min(history["frechet_distance"])

    # The resumed run drew exactly what an uninterrupted one draws.
    straight = tmp_path / "straight"
    dcgan_cifar10.main([*common[:2], "--out-dir", str(straight), *common[4:], "--epochs", "2"])
    assert torch.load(straight / "checkpoint.pt", weights_only=True)["history"]["step_loss_g"] == \
        history["step_loss_g"]

    again = dcgan_cifar10.main(common + ["--epochs", "0", "--num-samples", "37", "--sample-from", "last"])
    assert again["sampled_epoch"] == 2
    images = np.load(out / "samples.npz")["images"]
    assert images.shape == (37, 3, 32, 32) and images.dtype == np.uint8
    assert (images.astype(int) - images[:1]).any(axis=(1, 2, 3))[1:].all(), "two samples are the same image"


@pytest.mark.parametrize("args, expected", [
    (["--loss", "wasserstein"], "--loss: invalid choice: 'wasserstein'"),
    (["--data-dir", "no/such/folder"], "CIFAR-10 not found in no/such/folder"),
])
def test_bad_input_is_one_line(args, expected):
    with pytest.raises(cli.UserError) as error:
        dcgan_cifar10.main(args)
    assert expected in str(error.value) and "\n" not in str(error.value)


@pytest.fixture
def image_folder(cifar_dir, tmp_path):
    """300 real CIFAR-10 test images as lossless files in nested folders (one as BMP, which torchvision does not
    decode), a corrupt "JPEG" and a text file; returns (folder, the 300 images)."""
    images, _ = data.load_cifar10(cifar_dir, train=False, limit=300)
    folder = tmp_path / "my photos"
    for i, image in enumerate(images):
        sub = folder / ("", "cats", "cats/old", "dogs")[i % 4]
        sub.mkdir(parents=True, exist_ok=True)
        if i == 7:
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(sub / f"{i:04d}.BMP")
        else:
            io.write_png(image, str(sub / f"{i:04d}.png"))
    (folder / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8 not a JPEG after all")
    (folder / "notes.txt").write_text("not an image, not even tried")
    return folder, images


def test_image_folder_reads_every_image_recursively_skips_the_unreadable_and_is_cached(image_folder, monkeypatch):
    folder, originals = image_folder
    images, skipped = data.load_image_folder(folder, 32)
    assert images.shape == (300, 3, 32, 32) and images.dtype == torch.uint8 and skipped == ["dogs/broken.jpg"]
    # Lossless files at their own size come back pixel for pixel (in the folder's fixed shuffle, not file order).
    assert sorted(image.numpy().tobytes() for image in images) == sorted(image.numpy().tobytes() for image in originals)
    large, _ = data.load_image_folder(folder, 64, limit=50)
    assert large.shape == (50, 3, 64, 64)
    assert len(list(data.CACHE_DIR.glob("folder-*-32px-*.pt"))) == 1 and not list(data.CACHE_DIR.glob("*-64px-*"))
    assert sorted(path.name for path in folder.rglob("*") if path.is_file() and path.suffix == ".pt") == []
    monkeypatch.setattr(data, "_decode", lambda path: pytest.fail("decoded again, cache unused"))
    cached, skipped_again = data.load_image_folder(folder, 32, limit=100)
    assert torch.equal(cached, images[:100]) and skipped_again == skipped


def test_a_folder_without_readable_images_or_without_data_dir_is_one_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no pictures here")
    with pytest.raises(cli.UserError, match="no image files") as error:
        data.load_image_folder(tmp_path / "empty", 32)
    (tmp_path / "empty" / "broken.png").write_bytes(b"junk")
    with pytest.raises(cli.UserError, match="none of the 1 image files in .* could be decoded") as second:
        data.load_image_folder(tmp_path / "empty", 32)
    with pytest.raises(cli.UserError, match="not found") as third:
        data.load_image_folder(tmp_path / "nowhere", 32)
    assert all("\n" not in str(e.value) for e in (error, second, third))
    with pytest.raises(cli.UserError, match="--dataset folder needs --data-dir"):
        dcgan_cifar10.main(["--dataset", "folder"])
    with pytest.raises(cli.UserError, match="--image-size must be 32 or 64"):
        dcgan_cifar10.main(["--image-size", "48"])


def test_trains_on_an_image_folder_at_32_and_64_pixels_and_samples_from_the_cache(image_folder, tmp_path, capsys,
                                                                                monkeypatch):
    folder, _ = image_folder
    common = ["--dataset", "folder", "--data-dir", str(folder), "--device", "cpu", "--batch-size", "50",
              "--base-channels", "8", "--epochs", "1"]
    for size in (32, 64):
        out = tmp_path / f"run{size}"
        metrics = dcgan_cifar10.main(common + ["--image-size", str(size), "--out-dir", str(out)])
        assert metrics["images"] == 300 and metrics["unreadable_files_skipped"] == 1
        assert "frechet_distance" not in metrics and "no CIFAR-10 classes" in metrics["note"]
        assert json.loads((out / "metrics.json").read_text())["note"] == metrics["note"]
        for name in FIGURES:
            if name not in ("quality.png", "grids/epoch_002.png"):
                assert (out / name).stat().st_size > 10_000, name
        assert not (out / "quality.png").exists() and not (out / "best.pt").exists()
        history = torch.load(out / "checkpoint.pt", weights_only=True)["history"]
        assert len(history["step_loss_d"]) == 6 and np.isfinite(history["step_loss_d"]).all()
        assert plots.plt.imread(out / "grids" / "epoch_001.png").shape[:2] == (8 * (size + 1) - 1,) * 2
    assert "skipped 1 unreadable file in" in capsys.readouterr().out

    # Another size or folder is another run: --resume refuses it.
    with pytest.raises(cli.UserError, match="--image-size 32 does not match"):
        dcgan_cifar10.main(common + ["--image-size", "32", "--out-dir", str(out), "--resume", "--epochs", "2"])
    # --epochs 0 samples the 64 x 64 run, its real images from the cache.
    monkeypatch.setattr(data, "_decode", lambda path: pytest.fail("decoded again, cache unused"))
    again = dcgan_cifar10.main(common[:-2] + ["--image-size", "64", "--out-dir", str(out), "--epochs", "0",
                                              "--num-samples", "5"])
    assert again["unreadable_files_skipped"] == 1 and again["sampled_epoch"] == 1
    assert np.load(out / "samples.npz")["images"].shape == (5, 3, 64, 64)

    # latent_interpolation.py walks the 64 x 64 generator, without a classifier for a folder's images.
    walk = latent_interpolation.main(["--checkpoint", str(out / "checkpoint.pt"), "--device", "cpu", "--pairs", "2",
                                      "--steps", "4", "--pool", "4", "--out-dir", str(tmp_path / "walk")])
    assert walk["pairs"] == [[None, None]] * 2 and "lerp_label_changes" not in walk
    assert (tmp_path / "walk" / "grid.png").stat().st_size > 10_000
