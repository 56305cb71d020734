"""Shared fixtures: the real data beside the checkout (../shared/data), and an isolated environment per test."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def data_dir(monkeypatch):
    """The real MNIST / Fashion-MNIST / CIFAR-10 folder; tests that need it are skipped where it is absent."""
    folder = Path(os.environ.get("GENMODELS_DATA") or SHARED_DATA)
    if not (folder / "MNIST" / "raw").is_dir():
        pytest.skip(f"real data not found in {folder} (set GENMODELS_DATA)")
    monkeypatch.delenv("GENMODELS_DATA", raising=False)
    return folder


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    """Run every test in its own folder, so nothing lands in the checkout's outputs/ or data/."""
    monkeypatch.chdir(tmp_path)
