"""vae_anomaly_detection.py on real MNIST with a small VAE trained here: detection, calibration, --score, errors."""
import csv
import json
import math
import sys
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import io

import vae_anomaly_detection as vad
import vae_mnist
from common import cli, corruptions, data, vae
from tests.conftest import DATA, folder_fingerprint

FIGURES = ["detectors.png", "histograms_reconstruction.png", "histograms.png", "roc.png", "gallery.png"]
CALIBRATE = vad.calibrate  # the real one, for the test that checks what it looks at


@pytest.fixture(scope="module", autouse=True)
def quick_calibration():
    """The grey-level model counted on 2,000 training digits instead of 10,000 (1.6 million pixels: the counts a
    small VAE needs), and each run's calibration on the same VAE, data and settings done once for this file: the
    detector's set-up was most of this file's time."""
    done = {}

    def calibrate_once(cfg, model, device):
        key = (str(cfg.vae_checkpoint), str(cfg.data_dir), cfg.seed, cfg.iw_samples, cfg.anomaly_score,
               cfg.percentile, vae.VALIDATION_SIZE)
        if key not in done:
            done[key] = CALIBRATE(cfg, model, device)
        return done[key]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vad, "GREY_LEVEL_DIGITS", 2000)
        patch.setattr(vad, "calibrate", calibrate_once)
        yield


def first_test_digits(count, mirrored=False):
    """data.load_mnist with MNIST's test split cut to its first ``count`` digits (and mirrored left to right)."""
    load_mnist = data.load_mnist

    def load(*args, **kwargs):
        images, labels = load_mnist(*args, **kwargs)
        if kwargs.get("train", True) or kwargs.get("name", "mnist") != "mnist":
            return images, labels
        return (images[:count].flip(3) if mirrored else images[:count]), labels[:count]
    return load


@pytest.fixture(scope="module")
def small_vae(tmp_path_factory):
    """A VAE trained for two epochs on 3,000 digits of the training split, once for this file's tests: enough to
    tell digits from noise. (Module-scoped, so it finds the real data as conftest's data_dir does.)"""
    if DATA is None:
        pytest.skip("real data not found: set GENMODELS_DATA, or put it in ../shared/data or ./data")
    out = tmp_path_factory.mktemp("vae")
    with pytest.MonkeyPatch.context() as patch:  # its test loss on 2,000 test digits: nothing here reads it
        patch.setattr(data, "load_mnist", first_test_digits(2000))
        vae_mnist.main(["--data-dir", str(DATA), "--out-dir", str(out), "--device", "cpu", "--limit", "3000",
                        "--epochs", "2", "--batch-size", "32", "--iw-samples", "1"])
    return out / "checkpoint.pt"


def run(data_dir, out, checkpoint, *args):
    return vad.main(["--data-dir", str(data_dir), "--out-dir", str(out), "--device", "cpu",
                     "--vae-checkpoint", str(checkpoint), *args])


def test_detects_corruptions_with_a_threshold_from_validation_digits_only(data_dir, tmp_path, small_vae,
                                                                          monkeypatch):
    # The first 3,000 test digits stand for the 10,000, to keep it quick: 1,500 normal, 65 of each anomaly type.
    monkeypatch.setattr(data, "load_mnist", first_test_digits(3000))
    metrics = run(data_dir, tmp_path / "run", small_vae)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    for name in FIGURES:
        assert (tmp_path / "run" / name).stat().st_size > 20_000, name
    assert list(metrics["per_type"]) == list(corruptions.ANOMALY_TYPES) and not metrics["vae_saw_validation"]
    assert metrics["anomaly_score"] == "combined" and set(metrics["groups"]) == {"development", "held_out"}
    # Heavily noised digits all score above clean ones, even for a VAE trained for seconds.
    assert metrics["per_type"]["gaussian_noise"]["auroc"] > 0.99
    assert metrics["overall"]["auroc"] > 0.9
    counts = metrics["overall"]
    assert counts["tp"] + counts["fn"] == len(corruptions.ANOMALY_TYPES) * metrics["num_per_anomaly_type"]
    assert counts["fp"] + counts["tn"] == metrics["num_normal"] > 1000
    # About 1% of unseen normal digits fall above the 99th percentile of the validation digits; the record holds the
    # binomial interval of 1% for this many digits, and whether the observed rate is inside.
    rate = metrics["false_positive_rate"]
    assert rate["observed"] == counts["fp"] / metrics["num_normal"] and rate["promised"] == pytest.approx(0.01)
    low, high = vad.binomial_interval(metrics["num_normal"], 0.01)
    assert rate["interval"] == [low / metrics["num_normal"], high / metrics["num_normal"]]
    assert rate["inside"] == (low <= counts["fp"] <= high) and 0.001 < rate["observed"] < 0.03
    assert metrics["val_false_positive_rate"] == pytest.approx(0.01, abs=0.001)
    assert metrics["best_f1"]["f1"] >= metrics["overall"]["f1"]

    # The assignment's detector and the VAE's other scores beside the default, each with its counts at its own
    # threshold, the 99th percentile of its validation scores.
    assert list(metrics["detectors"]) == ["reconstruction", "elbo", "likelihood", "combined"]
    for name, row in metrics["detectors"].items():
        assert row["tp"] + row["fn"] == counts["tp"] + counts["fn"] and row["fp"] + row["tn"] == metrics["num_normal"]
        assert row["val_false_positive_rate"] == pytest.approx(0.01, abs=0.001), name
        assert set(row["recall_by_type"]) == set(corruptions.ANOMALY_TYPES) and row["uses"]
    assert {key: metrics["detectors"]["combined"][key] for key in counts} == counts

    # The threshold looks at no test image: with every MNIST test digit swapped for its mirror image, it stays. A
    # threshold that looked at test images would move.
    monkeypatch.setattr(data, "load_mnist", first_test_digits(3000, mirrored=True))
    model, _ = vae.load_vae(small_vae, "cpu")
    cfg = cli.parse(vad.SETTINGS, "", ["--data-dir", str(data_dir)])
    detector = CALIBRATE(cfg, model, torch.device("cpu"))
    assert detector.threshold == metrics["threshold"]
    # It is the percentile of the validation digits' scores, under the grey-level model counted on training digits
    # (checked on the first 1,000 validation digits, rescored here).
    train_images, _ = vae.load_split("training", data_dir, "cpu", vad.GREY_LEVEL_DIGITS)
    grey_levels = vad.fit_grey_levels(model, data.to_unit_range(train_images))
    assert torch.equal(detector.grey_levels, grey_levels)
    val_images, _ = vae.load_split("validation", data_dir, "cpu")
    assert len(val_images) == vae.VALIDATION_SIZE
    rescored = vad.score_images(model, data.to_unit_range(val_images[:1000]), grey_levels)
    for name in vad.COMBINATIONS["combined"]:
        assert rescored[name] == pytest.approx(detector.validation_scores[name][:1000], rel=1e-5)
    assert metrics["threshold"] == pytest.approx(np.percentile(detector.validation_scores["combined"], 99), rel=1e-5)


def test_the_development_mix_and_the_threshold_come_from_the_training_file_alone(data_dir, tmp_path, small_vae,
                                                                                  monkeypatch):
    """--evaluate-on development runs to the end with MNIST's and Fashion-MNIST's test files unreadable: every
    choice made on it, and the threshold, is made without a test image."""
    load_mnist = data.load_mnist

    def training_files_only(*args, **kwargs):
        assert kwargs.get("train", True), "a test file was read"
        return load_mnist(*args, **kwargs)
    monkeypatch.setattr(data, "load_mnist", training_files_only)
    monkeypatch.setattr(vae, "VALIDATION_SIZE", 2000)   # 2,000 validation digits stand for the 10,000, to keep it quick
    metrics = run(data_dir, tmp_path / "run", small_vae, "--evaluate-on", "development", "--corruptions",
                  "gaussian_noise,scale,fashion_mnist")
    assert metrics["evaluate_on"] == "development" and metrics["num_normal"] + 3 * metrics["num_per_anomaly_type"] \
        == 2000
    assert metrics["val_false_positive_rate"] == pytest.approx(0.01, abs=0.001)
    assert metrics["per_type"]["gaussian_noise"]["auroc"] > 0.99
    # The development mix's normal digits are validation digits, and its anomalies corrupted *other* ones.
    cfg = cli.parse(vad.SETTINGS, "", ["--data-dir", str(data_dir), "--evaluate-on", "development",
                                       "--corruptions", "gaussian_noise"])
    images, kinds = vad.build_mix(cfg, ("gaussian_noise",), "cpu", torch.Generator().manual_seed(0))
    validation, _ = vae.load_split("validation", data_dir, "cpu")
    training = {bytes(image.numpy()) for image in vae.load_split("training", data_dir, "cpu")[0]}
    normal = {bytes(image.numpy()) for image in data.to_uint8(images[torch.as_tensor(kinds == "normal")])}
    assert normal <= {bytes(image.numpy()) for image in validation} and not normal & training
    # Before the split changed, the development types were tuned on test digits: that mix is gone.
    with pytest.raises(AssertionError, match="a test file was read"):
        vad.build_mix(cli.parse(vad.SETTINGS, "", ["--data-dir", str(data_dir)]), ("gaussian_noise",), "cpu",
                      torch.Generator().manual_seed(0))


def test_the_validation_split_is_random_fixed_and_disjoint_from_training_and_test(data_dir):
    training, validation = vae.split_indices()
    again = vae.split_indices()
    assert np.array_equal(training, again[0]) and np.array_equal(validation, again[1])   # a pure function
    assert len(validation) == vae.VALIDATION_SIZE == 10_000 and len(training) == 50_000
    assert not np.intersect1d(training, validation).size and len(np.union1d(training, validation)) == 60_000
    # Drawn from the whole file, not its tail: about a sixth of every tenth of it. And always the same draw (a
    # change of generator would silently move every threshold).
    assert (np.histogram(validation, bins=10, range=(0, 60_000))[0] > 800).all()
    assert validation[:5].tolist() == [17, 18, 24, 28, 50] and int(validation.sum()) == 300_012_983
    images, labels = data.load_mnist(data_dir, train=True)
    val_images, val_labels = vae.load_split("validation", data_dir, "cpu")
    assert torch.equal(val_images, images[validation]) and torch.equal(val_labels, labels[validation])
    assert torch.equal(vae.load_split("training", data_dir, "cpu", 100)[0], images[training[:100]])
    # No validation digit is a test digit.
    test_images, _ = data.load_mnist(data_dir, train=False)
    assert not {bytes(image.numpy()) for image in val_images} & {bytes(image.numpy()) for image in test_images}


def test_a_vae_of_the_earlier_split_is_flagged_with_the_fix():
    said = []
    assert vad.saw_validation_split({"train_examples": 55_000}, log=said.append)   # the file's first 55,000
    assert vad.saw_validation_split({}, log=said.append)                           # before the count was kept
    assert len(said) == 2 and all("retrain it with vae_mnist.py" in line and "\n" not in line for line in said)
    assert not vad.saw_validation_split({"train_examples": 50_000}, log=said.append)
    assert not vad.saw_validation_split({"train_examples": 3000}, log=said.append) and len(said) == 2


def test_the_binomial_interval_of_known_counts():
    # Binomial(10, 1/2): P(K <= 1) = 11/1024 and P(K >= 9) = 11/1024 lie within 2.5%, P(K <= 2) = 56/1024 does not.
    assert vad.binomial_interval(10, 0.5) == (2, 8)
    # 1% of 10,000: checked against exact tail sums in rational arithmetic.
    low, high = vad.binomial_interval(10_000, 0.01)
    assert (low, high) == (81, 120)

    def below(k):   # P(K < k), exactly
        return sum(Fraction(math.comb(10_000, i)) * Fraction(1, 100) ** i * Fraction(99, 100) ** (10_000 - i)
                   for i in range(k))
    assert below(low) <= Fraction(1, 40) < below(low + 1)
    assert 1 - below(high + 1) <= Fraction(1, 40) < 1 - below(high)
    # The record of a run: 36 of 5,009 normal digits flagged at the 99th percentile is below 1%'s interval, 37 in it.
    assert vad.false_positive_rate(37, 5009, 99.0) == {"observed": 37 / 5009, "promised": pytest.approx(0.01),
                                                       "interval": [37 / 5009, 64 / 5009], "num_normal": 5009,
                                                       "inside": True}
    assert not vad.false_positive_rate(36, 5009, 99.0)["inside"]
    assert vad.false_positive_rate(300, 5009, 95.0)["inside"] is False     # 5.99%: above 5%'s 4.41% to 5.61%


def test_the_groups_are_fixed_and_split_every_type_once():
    assert corruptions.HELD_OUT == ("impulse_noise", "motion_blur", "rotate", "translate", "fog", "spatter",
                                    "dotted_line", "canny_edges")
    assert set(corruptions.DEVELOPMENT) | set(corruptions.HELD_OUT) == set(corruptions.ANOMALY_TYPES)
    assert not set(corruptions.DEVELOPMENT) & set(corruptions.HELD_OUT)
    assert len(corruptions.MNIST_C) == 15 and set(corruptions.ORIGINAL) <= set(corruptions.DEVELOPMENT)
    assert set(CORRUPTION_CHECKS) == set(corruptions.MNIST_C)    # every MNIST-C type has its check below
    assert corruptions.parse_corruptions("rotate, held_out ,blur") == ("blur", *corruptions.HELD_OUT)
    with pytest.raises(cli.UserError, match="unknown type or group 'rotation'"):
        corruptions.parse_corruptions("rotation")


def ink_centre(x):
    """Per image, the centre of mass (row, column) of its grey levels."""
    position = torch.arange(28.0)
    mass = x.sum((1, 2, 3))
    return torch.stack([(x.sum((1, 3)) * position).sum(1), (x.sum((1, 2)) * position).sum(1)], 1) / mass[:, None]


def ink(x):
    return x.sum((1, 2, 3))


def columns(y, kept):
    """The columns of y (N x 1 x 28 x 28) listed in ``kept``."""
    return y[..., list(kept)]


DOTTED_COLUMNS = [c for c in range(27) if c // 2 % 2 == 1]         # 2-3, 6-7, ..., 26: MNIST-C's dots
OTHER_COLUMNS = [c for c in range(28) if c not in DOTTED_COLUMNS]

# What each corruption must do to clean digits x, checked on its output y: MNIST-C's parameters where the output
# shows them, and otherwise the change its name promises.
CORRUPTION_CHECKS = {
    # Severity 5: 3 photons for white, so every level is 0, 1/3, 2/3 or 1, and clipping at 1 loses ink.
    "shot_noise": lambda x, y: (y[x == 0] == 0).all() and set((y * 255).round().unique().tolist()) <= {0, 85, 170, 255}
    and (y != x)[x > 0.5].float().mean() > 0.2 and 0.65 < ink(y).sum() / ink(x).sum() < 0.95,
    # 17% of pixels hit, half of them set white: 8.5% of the black background turns white.
    "impulse_noise": lambda x, y: abs(((y == 1) & (x == 0)).sum() / (x == 0).sum() - 0.085) < 0.01,
    "glass_blur": lambda x, y: torch.allclose(ink(y), ink(x), rtol=0.2) and (y != x)[x > 0].float().mean() > 0.5,
    "motion_blur": lambda x, y: torch.allclose(ink(y), ink(x), rtol=0.1) and (y > 0.05).sum() > 1.3 * (x > 0.05).sum(),
    "shear": lambda x, y: torch.allclose(ink(y), ink(x), rtol=0.1) and (y - x).abs().sum() > 0.2 * ink(x).sum(),
    "scale": lambda x, y: torch.allclose(ink(y), 0.7 ** 2 * ink(x), rtol=0.15)
    and torch.allclose(ink_centre(y), ink_centre(x), atol=1.0),
    "rotate": lambda x, y: torch.allclose(ink(y), ink(x), rtol=0.05)
    and torch.allclose(ink_centre(y), ink_centre(x), atol=1.0) and (y - x).abs().sum() > 0.2 * ink(x).sum(),
    "brightness": lambda x, y: (y[x == 0] == 128 / 255).all() and (y >= 0.5).all(),
    "translate": lambda x, y: torch.allclose(ink(y), ink(x), rtol=0.05)   # the odd digit loses ink off the edge
    and ((ink_centre(y) - ink_centre(x)).abs() - 3).abs().median() < 0.01,
    "stripe": lambda x, y: torch.allclose(y[..., :7], 1 - x[..., :7]) and torch.allclose(y[..., 21:], 1 - x[..., 21:])
    and torch.equal(y[..., 7:21], x[..., 7:21]),
    # (x + 3 cloud) max / (max + 3), the cloud in [0, 1]: solved for the cloud, it must lie in [0, 1] (MNIST's
    # digits have max 1), and fill the background.
    "fog": lambda x, y: ((4 * y - x) / 3).min() > -0.01 and ((4 * y - x) / 3).max() < 1.01
    and (y[x == 0] > 0).float().mean() > 0.9,
    # Under the mud mask (0.8 to 1) black turns 0.8 to 1 times 63/255, white 0.2 to 1 plus that.
    "spatter": lambda x, y: (y != x).any() and (y[(y != x) & (x == 0)] * 255).round().ge(50).all()
    and (y[(y != x) & (x == 0)] * 255).round().le(63).all() and (y != x).float().mean() < 0.3,
    "dotted_line": lambda x, y: (y >= x).all() and torch.equal(columns(y, OTHER_COLUMNS), columns(x, OTHER_COLUMNS))
    and ((y - x > 0.5).flatten(1).sum(1) >= 8).all(),
    "zigzag": lambda x, y: (y >= x).all() and torch.equal(y[..., :2], x[..., :2])
    and torch.equal(y[..., 26:], x[..., 26:]) and ((y - x > 0.5).flatten(1).sum(1) >= 15).all(),
    "canny_edges": lambda x, y: set(y.unique().tolist()) <= {0.0, 1.0} and (y[gaussian_ink(x) == 0] == 0).all()
    and (y[x == 1] == 1).float().mean() < 0.5 and y[..., [0, -1], :].sum() == 0 and y[..., [0, -1]].sum() == 0,
}


def gaussian_ink(x):
    return corruptions.gaussian_blur(x, 1.0).gt(0.01).float()


@pytest.mark.parametrize("kind", corruptions.CORRUPTIONS)
def test_each_corruption_is_deterministic_for_a_seed_and_does_what_its_name_says(data_dir, kind):
    images, _ = data.load_mnist(data_dir, train=False, limit=16)
    x = data.to_unit_range(images)
    first, again, other = (corruptions.corrupt(x, kind, torch.Generator().manual_seed(seed)) for seed in (0, 0, 1))
    assert torch.equal(first, again) and first.shape == x.shape and 0 <= first.min() <= first.max() <= 1
    assert torch.equal(first, (first * 255).round() / 255)          # on MNIST's 256 grey levels
    assert not torch.equal(first, x)
    if kind in CORRUPTION_CHECKS:
        assert not torch.equal(first, other) or kind in ("scale", "brightness", "stripe", "canny_edges")
        assert CORRUPTION_CHECKS[kind](x, first), kind


def test_glass_blur_swaps_pixels_and_blurs_each_column_on_its_own():
    levels = torch.arange(2 * 28 * 28.0).view(2, 1, 28, 28)
    swapped = corruptions.glass_swaps(levels, torch.Generator().manual_seed(0))
    assert torch.equal(swapped.flatten(1).sort(1).values, levels.flatten(1))      # a permutation of each image
    assert (swapped != levels).float().mean() > 0.3
    # Rows 0-1 and columns 0-1 are never a sweep's pixel, only a partner: a value moves there from one step away.
    assert torch.equal(swapped[..., 0, 0], levels[..., 0, 0])
    line = torch.zeros(1, 1, 28, 28)
    line[..., 14] = 1.0
    assert torch.equal(corruptions.skimage_gaussian(line, 0.7, horizontal=False), line)   # a vertical line stays put


def test_the_mnist_c_benchmark_scores_every_test_digit_per_type(data_dir, tmp_path, small_vae, monkeypatch):
    monkeypatch.setattr(data, "load_mnist", first_test_digits(1000))  # 1,000 test digits stand for the 10,000
    metrics = run(data_dir, tmp_path, small_vae, "--benchmark", "mnist-c", "--corruptions", "translate,spatter")
    assert metrics["num_normal"] == 1000 and metrics["num_per_anomaly_type"] == 1000
    assert list(metrics["per_type"]) == ["translate", "spatter"] and metrics["groups"]["held_out"]["types"] == 2
    assert (tmp_path / "benchmark.json").exists() and not (tmp_path / "gallery.png").exists()


def test_scores_a_png_folder_and_the_same_images_as_npy_alike(data_dir, tmp_path, small_vae):
    images, _ = data.load_mnist(data_dir, train=False, limit=12)
    images[0] = 255 - images[0]                          # one plain anomaly among eleven digits
    folder = tmp_path / "pngs"
    folder.mkdir()
    (tmp_path / "pngs16").mkdir()
    for i, image in enumerate(images):
        io.write_png(image, str(folder / f"digit_{i:02d}.png"))
        Image.fromarray(image[0].numpy().astype(np.uint16) * 257).save(tmp_path / "pngs16" / f"digit_{i:02d}.png")
    np.save(tmp_path / "digits.npy", images[:, 0].numpy())                             # N x 28 x 28 uint8
    np.savez(tmp_path / "digits.npz", images=images.float().numpy() / 255)             # N x 1 x 28 x 28 float

    results = {}
    for name in ("pngs", "pngs16", "digits.npy", "digits.npz"):
        run(data_dir, tmp_path / name.replace(".", "_"), small_vae, "--score", str(tmp_path / name))
        with open(tmp_path / name.replace(".", "_") / "scores.csv") as file:
            results[name] = list(csv.DictReader(file))
    assert [row["id"] for row in results["pngs"]] == [f"digit_{i:02d}.png" for i in range(12)]
    assert [row["id"] for row in results["digits.npy"]] == [str(i) for i in range(12)]
    assert [row["id"] for row in results["pngs16"]] == [row["id"] for row in results["pngs"]]
    for name in ("pngs16", "digits.npy", "digits.npz"):
        assert [float(row["score"]) for row in results[name]] == \
            pytest.approx([float(row["score"]) for row in results["pngs"]], abs=1e-3)
        assert [row["is_anomaly"] for row in results[name]] == [row["is_anomaly"] for row in results["pngs"]]
    assert results["pngs"][0]["is_anomaly"] == "1"       # the inverted digit
    assert sum(row["is_anomaly"] == "1" for row in results["pngs"][1:]) <= 2


def test_one_class_run_separates_its_digit_from_the_others(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "load_mnist", first_test_digits(3000))  # 3,000 test digits, 340 of them ones
    summary = vad.main(["--data-dir", str(data_dir), "--out-dir", str(tmp_path), "--device", "cpu",
                        "--normal-digit", "1", "--one-class-epochs", "1"])
    assert list(summary["digits"]) == [1]
    assert summary["digits"][1]["auroc_reconstruction"] > 90   # ones are the easiest digit to tell from the rest
    assert json.loads((tmp_path / "one_class.json").read_text())["mean"] == pytest.approx(summary["mean"])


def truncated_npz(path):
    np.savez_compressed(path, images=np.zeros((50, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:200])  # a download cut short


@pytest.mark.parametrize("make, expected", [
    (lambda path: np.save(path / "x.npy", np.zeros((3, 32, 32), np.uint8)), "shape (3, 32, 32): expected N x 28"),
    (lambda path: np.save(path / "x.npy", np.full((3, 28, 28), 2.0)), "float64 values from 2.0 to 2.0"),
    (lambda path: (path / "x.npy").write_bytes(b"not numpy"), "x.npy is not a readable numpy file"),
    (lambda path: (path / "x.npz").write_bytes(b"PK\x03\x04 not a zip archive"), "x.npz is not a readable numpy"),
    (lambda path: truncated_npz(path / "x.npz"), "x.npz is not a readable numpy file"),
    (lambda path: (path / "x").mkdir(), "no *.png images in"),
    (lambda path: (path / "x.txt").write_text("1 2 3"), "expected an existing .npy or .npz file or a folder"),
])
def test_bad_score_input_is_one_line_naming_the_file(tmp_path, make, expected):
    make(tmp_path)
    path = next(tmp_path.glob("x*"))
    with pytest.raises(cli.UserError) as error:
        vad.main(["--score", str(path), "--out-dir", str(tmp_path / "run")])
    message = str(error.value)
    assert expected in message and str(path) in message and "\n" not in message, message


@pytest.mark.parametrize("write, expected", [
    (lambda path: io.write_png(torch.zeros(1, 32, 32, dtype=torch.uint8), str(path)), "is 32 x 32 pixels: expected 28"),
    (lambda path: Image.fromarray(np.zeros((28, 28, 4), np.uint8)).save(path), "has transparent pixels: expected"),
])
def test_a_png_it_cannot_score_is_one_line_exit_code_2_and_leaves_the_output_folder_alone(tmp_path, monkeypatch,
                                                                                          capsys, write, expected):
    (tmp_path / "pngs").mkdir()
    io.write_png(torch.zeros(1, 28, 28, dtype=torch.uint8), str(tmp_path / "pngs" / "a_good.png"))
    write(tmp_path / "pngs" / "bad.png")
    out = tmp_path / "run"
    out.mkdir()
    (out / "scores.csv").write_text("id,score,is_anomaly\nearlier,1.0,0\n")   # an earlier run's
    before = folder_fingerprint(out)
    # cli.run as the command line runs it, in this process: a second torch start-up would take 6 s.
    monkeypatch.setattr(sys, "argv", ["vae_anomaly_detection.py", "--score", str(tmp_path / "pngs"), "--out-dir",
                                      str(out), "--data-dir", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit) as exit_code:
        cli.run(vad.main)
    stderr = capsys.readouterr().err
    assert exit_code.value.code == 2 and stderr.count("\n") == 1, stderr
    assert f"{tmp_path / 'pngs' / 'bad.png'} {expected}" in stderr, stderr
    assert folder_fingerprint(out) == before


@pytest.mark.parametrize("flags, expected", [
    (["--anomaly-score", "likelihood_ratio"], "--anomaly-score: invalid choice: 'likelihood_ratio'"),
    (["--evaluate-on", "train"], "--evaluate-on: invalid choice: 'train'"),
    (["--anomaly-score", "iw_nll"], "--anomaly-score iw_nll needs --iw-samples N"),
    (["--benchmark", "mnist"], "--benchmark: invalid choice: 'mnist'"),
    (["--corruptions", "rotation"], "unknown type or group 'rotation'"),
])
def test_a_bad_word_setting_is_refused_before_any_data_is_read(tmp_path, flags, expected):
    with pytest.raises(cli.UserError, match=expected):
        vad.main([*flags, "--data-dir", str(tmp_path / "nowhere"), "--out-dir", str(tmp_path / "run")])


def test_anomaly_score_offers_every_combination_and_score():
    assert vad.SETTINGS["anomaly_score"][2] == (*vad.COMBINATIONS, *vad.SCORES, "iw_nll")
