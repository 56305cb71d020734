"""Shared fixtures: the real datasets a user already has, and an isolated folder per test."""
import hashlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def find_data():
    """The first folder holding MNIST/raw among $GENMODELS_DATA, ../shared/data beside the checkout and ./data (where
    the scripts download on a machine with internet); None where none does.

    A relative $GENMODELS_DATA is taken from where pytest was started, before each test moves into its own folder.
    """
    candidates = [Path(os.environ["GENMODELS_DATA"]).resolve()] if os.environ.get("GENMODELS_DATA") else []
    candidates += [REPO.parent / "shared" / "data", REPO / "data"]
    return next((folder for folder in candidates if (folder / "MNIST" / "raw").is_dir()), None)


DATA = find_data()  # found once, at collection, from the directory pytest runs in


def folder_fingerprint(folder):
    """Every file under ``folder`` with its bytes and modification time: equal before and after means the run left
    the folder alone."""
    return {str(path.relative_to(folder)): (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
            for path in sorted(Path(folder).rglob("*")) if path.is_file()}


@pytest.fixture
def data_dir(monkeypatch):
    """The real MNIST / Fashion-MNIST / CIFAR-10 folder; tests that need it are skipped where there is none."""
    if DATA is None:
        pytest.skip("real data not found: set GENMODELS_DATA, or put it in ../shared/data or ./data")
    monkeypatch.delenv("GENMODELS_DATA", raising=False)
    return DATA


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    """Run every test in its own folder, so nothing lands in the checkout's outputs/ or data/."""
    monkeypatch.chdir(tmp_path)


# A small vae_mnist.py run (one epoch of a small MLP VAE on 640 images): what the tests of the run record and of
# run_all's respect for a user's run start from.
SMALL_VAE_FLAGS = ["--architecture", "mlp", "--hidden", "32", "--limit", "640", "--epochs", "1", "--iw-samples", "1",
                   "--device", "cpu"]


@pytest.fixture(scope="session")
def small_vae_run(tmp_path_factory):
    """The folder of a finished SMALL_VAE_FLAGS run, made once per session: copy it before changing it."""
    if DATA is None:
        pytest.skip("real data not found: set GENMODELS_DATA, or put it in ../shared/data or ./data")
    import vae_mnist
    folder = tmp_path_factory.mktemp("small_vae") / "vae_mnist"
    vae_mnist.main(["--data-dir", str(DATA), "--out-dir", str(folder), *SMALL_VAE_FLAGS])
    return folder

