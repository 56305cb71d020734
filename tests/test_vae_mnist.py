"""vae_mnist.py end to end on a subset of real MNIST, and its answers to bad input."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import vae_mnist
from common import cli
from tests.conftest import REPO

FIGURES = ["elbo.png", "kl.png", "reconstructions.png", "samples.png"]
METRICS = ["test_loss", "test_reconstruction", "test_kl", "train_loss", "active_units", "latent_dim", "iw_nll",
           "iw_samples", "epochs", "train_seconds"]


def test_trains_on_a_subset_writes_every_output_and_samples_from_its_checkpoint(data_dir, tmp_path):
    out = tmp_path / "run"
    common = ["--data-dir", str(data_dir), "--out-dir", str(out), "--device", "cpu"]
    metrics = vae_mnist.main(common + ["--limit", "6000", "--epochs", "3", "--batch-size", "32",
                                       "--iw-samples", "4"])
    # Predicting every pixel's mean intensity, the best a model that ignores z can do, scores about 206 nats;
    # an untrained decoder about 543 (784 * ln 2). Only a model that encodes the digit gets far below.
    assert metrics["test_loss"] < 150
    assert metrics["iw_nll"] <= metrics["test_loss"] + 1
    assert metrics["active_units"] >= 5
    assert json.loads((out / "metrics.json").read_text()).keys() == set(METRICS)
    for name in FIGURES:
        assert (out / name).stat().st_size > 10_000, name

    again = vae_mnist.main(common + ["--epochs", "0", "--num-samples", "37", "--iw-samples", "4"])
    # The reloaded model itself is measured again (the -log p(x) estimate is computed afresh, not read back).
    assert again["epochs"] == 3 and again["iw_nll"] == pytest.approx(metrics["iw_nll"], abs=0.5)
    images = np.load(out / "samples.npz")["images"]
    assert images.shape == (37, 1, 28, 28) and images.dtype == np.uint8 and images.max() > 200


def run_script(*args):
    return subprocess.run([sys.executable, str(REPO / "vae_mnist.py"), *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("args, expected", [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--epochs", "-1"], "--epochs must be >= 0"),
    (["--architecture", "rnn"], "--architecture: invalid choice: 'rnn'"),
    (["--data-dir", "no/such/folder"], "MNIST not found in no/such/folder"),
])
def test_bad_input_is_one_line(args, expected):
    with pytest.raises(cli.UserError) as error:
        vae_mnist.main(args)
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_corrupt_checkpoint_is_one_line_and_exit_code_2(data_dir, tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"\x80\x02 truncated")
    result = run_script("--data-dir", str(data_dir), "--out-dir", str(tmp_path), "--epochs", "0")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "corrupt or truncated" in result.stderr and (tmp_path / "checkpoint.pt").exists()


def test_binarize_draws_black_and_white_pixels_with_the_grey_levels_as_their_probabilities():
    grey = torch.tensor([0, 64, 128, 255], dtype=torch.uint8).repeat(20000, 1)
    drawn = vae_mnist.binarize(grey, torch.Generator().manual_seed(0))
    assert drawn.dtype == torch.uint8 and set(drawn.unique().tolist()) <= {0, 255}
    assert torch.allclose((drawn == 255).float().mean(0), grey[0].float() / 255, atol=0.01)
    again = vae_mnist.binarize(grey, torch.Generator().manual_seed(0))
    assert torch.equal(drawn, again)  # the test images are binarised once, the same for every run
