"""vae_latent_space_visualization.py on a subset of real MNIST test digits, with a small 2-D VAE trained here."""
import csv
import json

import numpy as np
import pytest

import vae_latent_space_visualization as lsv
import vae_mnist
from common import cli, data

FIGURES = ["tsne.png", "tsne_vs_pca.png", "latent_2d.png", "latent_manifold.png"]


@pytest.fixture
def vae_2d(data_dir, tmp_path):
    """A VAE with a 2-D latent trained briefly on 3,000 digits: enough to pull the digits apart."""
    out = tmp_path / "vae"
    vae_mnist.main(["--data-dir", str(data_dir), "--out-dir", str(out), "--device", "cpu", "--limit", "3000",
                    "--epochs", "2", "--batch-size", "32", "--latent-dim", "2", "--iw-samples", "1"])
    return out / "checkpoint.pt"


def test_embeds_a_subset_writes_every_output_and_separates_the_digits(data_dir, tmp_path, vae_2d):
    out = tmp_path / "run"
    metrics = lsv.main(["--data-dir", str(data_dir), "--out-dir", str(out), "--vae-checkpoint", str(vae_2d),
                        "--num-points", "1500", "--metric-points", "1000", "--tsne-iterations", "300",
                        "--tsne-backend", "sklearn"])
    assert metrics["num_points"] == 1500 and metrics["latent_dim"] == 2
    assert json.loads((out / "metrics.json").read_text()) == metrics  # JSON keeps every float exactly
    for name in FIGURES:
        assert (out / name).stat().st_size > 20_000, name

    # The embedding has one row per point, and each row's label is the label of the test image it names.
    with open(out / "embedding.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 1500 and set(rows[0]) == {"index", "x", "y", "label"}
    _, test_labels = data.load_mnist(data_dir, train=False)
    indices = np.array([int(row["index"]) for row in rows])
    assert len(set(indices)) == 1500
    assert (np.array([int(row["label"]) for row in rows]) == test_labels.numpy()[indices]).all()

    for name, value in metrics.items():
        if name.startswith(("knn_accuracy", "trustworthiness")):
            assert 0 <= value <= 1, name
        if name.startswith("silhouette"):
            assert -1 <= value <= 1, name
    # Ten about equally common digits give 0.1 by chance, and so would labels that do not line up with their
    # points; seconds of training already give a 2-D VAE four times that.
    assert metrics["knn_accuracy_tsne"] > 0.3 and metrics["knn_accuracy_latent"] > 0.3


def test_a_shuffled_labelling_separates_clearly_worse():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 100)
    points = rng.normal(size=(1000, 2)) + 15 * np.stack([np.cos(labels), np.sin(labels)], 1)  # ten separate blobs
    subset = np.arange(1000)
    accuracy, silhouette = lsv.separation(points, labels, subset, seed=0)
    shuffled_accuracy, shuffled_silhouette = lsv.separation(points, rng.permutation(labels), subset, seed=0)
    assert accuracy > 0.9 and shuffled_accuracy < 0.2
    assert silhouette > 0.3 and shuffled_silhouette < 0


@pytest.mark.parametrize("args, expected", [
    (["--perplexity", "50", "--num-points", "100"], "--perplexity 50.0 needs more than 150 points"),
    (["--tsne-iterations", "100"], "--tsne-iterations must be >= 300, got 100"),
    (["--tsne-backend", "umap"], "--tsne-backend: invalid choice: 'umap'"),
])
def test_bad_input_is_one_line(args, expected):
    with pytest.raises(cli.UserError) as error:
        lsv.main(args)
    assert expected in str(error.value) and "\n" not in str(error.value)
