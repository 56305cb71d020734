"""torchrun with two CPU processes (gloo) on subsets of real MNIST: what running on more than one device promises.

Every run goes through tests/distributed_worker.py, which reports for each process the files it touched and a digest
of its final weights. The tolerances (1% and 2.5% for the VAE's losses, 1.3 times the 1-process run's distance for
the small GAN) sit above the spread between seeds measured in BENCHMARKS.md ("Same recipe, one or two processes").
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

import dcgan_cifar10
import gan_mnist
import vae_mnist
from common import cli, distributed, seeds
from tests.conftest import DATA, REPO
from tests.test_gan_mnist import small_classifier

WORKER = REPO / "tests" / "distributed_worker.py"
VAE_FLAGS = ["--architecture", "mlp", "--limit", "8192", "--epochs", "3", "--iw-samples", "1", "--device", "cpu"]
ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes, one core each


def torchrun(launch, script, flags, report):
    """The command that runs ``script`` with ``flags`` through the worker under torchrun with ``launch`` options."""
    return [sys.executable, "-m", "torch.distributed.run", *launch, str(WORKER), str(report), script, *flags]


def standalone(processes):
    return ["--standalone", f"--nproc-per-node={processes}"]


def run(command):
    result = subprocess.run(command, capture_output=True, text=True, env=ENVIRONMENT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def reports(folder, processes=2):
    return [json.loads((folder / f"rank_{rank}.json").read_text()) for rank in range(processes)]


def listing(folder):
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def checkpoint_history(folder):
    return torch.load(folder / "checkpoint.pt", weights_only=True)["history"]


@pytest.fixture(scope="module")
def two_process_vae(tmp_path_factory):
    """An uninterrupted 2-process VAE run: (its folder, its reports)."""
    if DATA is None:
        pytest.skip("real data not found: set GENMODELS_DATA, or put it in ../shared/data or ./data")
    folder = tmp_path_factory.mktemp("two_process_vae")
    flags = ["--data-dir", str(DATA), "--out-dir", str(folder / "run"), *VAE_FLAGS]
    run(torchrun(standalone(2), "vae_mnist.py", flags, folder / "report"))
    return folder / "run", reports(folder / "report")


def test_two_processes_keep_one_vae_write_once_and_learn_as_one_process(two_process_vae, data_dir, tmp_path):
    out, (main, other) = two_process_vae
    assert main["world_size"] == other["world_size"] == 2
    assert main["digests"] and main["digests"] == other["digests"]  # bit-identical weights in both processes
    assert other["writes"] == [] and main["writes"]
    assert all(path.startswith(str(out)) for path in main["writes"])

    vae_mnist.main(["--data-dir", str(data_dir), "--out-dir", str(tmp_path / "one"), *VAE_FLAGS])
    assert listing(out) == listing(tmp_path / "one")
    two, one = checkpoint_history(out), checkpoint_history(tmp_path / "one")
    assert two["train_loss"][0] == pytest.approx(one["train_loss"][0], rel=0.01)
    assert two["test_loss"][-1] == pytest.approx(one["test_loss"][-1], rel=0.025)
    assert two["test_loss"][-1] < two["train_loss"][0] - 50  # it learned: 3 epochs take ~100 nats off


def test_an_interrupted_two_process_run_resumes_on_two_machines_and_on_one(two_process_vae, data_dir, tmp_path):
    uninterrupted, (main, _) = two_process_vae
    out = tmp_path / "run"
    flags = ["--data-dir", str(data_dir), "--out-dir", str(out), *VAE_FLAGS]
    process = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *standalone(2),
                                str(REPO / "vae_mnist.py"), *flags],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENVIRONMENT)
    while not (out / "checkpoint.pt").exists() and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    assert "interrupted: rerun with --resume" in process.communicate(timeout=60)[1] and process.returncode != 0
    interrupted_after = torch.load(out / "checkpoint.pt", weights_only=True)["epoch"]
    assert interrupted_after < 3
    shutil.copytree(out, tmp_path / "copy")

    # Two "machines" on this host, one process each, meeting at a port on the loopback address.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nodes = [subprocess.Popen(torchrun(["--nnodes=2", f"--node-rank={node}", "--nproc-per-node=1",
                                        f"--rdzv-endpoint=127.0.0.1:{port}"], "vae_mnist.py", [*flags, "--resume"],
                                       tmp_path / "report"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENVIRONMENT)
             for node in (0, 1)]
    for node in nodes:
        assert node.wait(timeout=300) == 0, node.stderr.read()[-3000:]
    resumed = reports(tmp_path / "report")
    # The same weights, bit for bit, as the run that was never interrupted, and the same losses on the way.
    assert resumed[0]["digests"] == resumed[1]["digests"] == main["digests"]
    assert checkpoint_history(out)["train_loss"] == checkpoint_history(uninterrupted)["train_loss"]

    # On one process instead: the same checkpoint continues (other noise, so close rather than equal).
    vae_mnist.main([*flags[:2], "--out-dir", str(tmp_path / "copy"), *VAE_FLAGS, "--resume"])
    alone = checkpoint_history(tmp_path / "copy")
    assert len(alone["test_loss"]) == 3
    assert alone["train_loss"][:interrupted_after] == checkpoint_history(uninterrupted)["train_loss"][
        :interrupted_after]
    assert alone["test_loss"][-1] == pytest.approx(checkpoint_history(uninterrupted)["test_loss"][-1], rel=0.025)


def test_two_processes_keep_one_gan_write_once_and_draw_as_well_as_one(data_dir, tmp_path):
    cache = tmp_path / "mnist_classifier.pt"
    small_classifier(data_dir, cache)
    flags = ["--data-dir", str(data_dir), "--device", "cpu", "--classifier", str(cache), "--limit", "6400",
             "--epochs", "2", "--quality-samples", "500", "--eval-images", "1000",
             "--g-width", "64", "--d-width", "128"]
    run(torchrun(standalone(2), "gan_mnist.py", [*flags, "--out-dir", str(tmp_path / "two")], tmp_path / "report"))
    main, other = reports(tmp_path / "report")
    assert len(main["digests"]) > 10 and main["digests"] == other["digests"]  # G and D, weights and batch norm
    assert other["writes"] == []
    one = gan_mnist.main([*flags, "--out-dir", str(tmp_path / "one")])
    assert listing(tmp_path / "two") == listing(tmp_path / "one")
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["epochs"] == 2 and two["frechet_distance"] < 1.3 * one["frechet_distance"]


def test_batches_split_into_equal_parts_one_per_process(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    batches = torch.arange(22).split(9)  # 9, 9 and a last batch of 4
    parts = []
    for rank in range(3):
        monkeypatch.setattr(distributed, "rank", lambda: rank)
        parts.append(distributed.shard(batches))
    # Each global batch is cut into 3 equal parts (the last loses 1 image of its 4); together they are the batch.
    assert [len(part) for part in parts[0]] == [3, 3, 1]
    for step in range(3):
        assert torch.cat([part[step] for part in parts]).tolist() == batches[step][:len(parts[0][step]) * 3].tolist()
    with pytest.raises(cli.UserError, match="--batch-size 64 does not split evenly over 3 processes"):
        distributed.check_batch_size(64)


def test_every_process_draws_the_same_data_order_and_its_own_noise(monkeypatch):
    draws = []
    for rank in (0, 1, 0):
        monkeypatch.setattr(distributed, "rank", lambda: rank)
        order = seeds.seed_epoch(seed=5, epoch=2)
        draws.append((torch.randperm(100, generator=order), torch.randn(8)))
    assert torch.equal(draws[0][0], draws[1][0])  # the same permutation, so the same global batches
    assert not torch.equal(draws[0][1], draws[1][1])  # other z, eps and flips in another process
    assert torch.equal(draws[0][1], draws[2][1])  # reproducible for the same seed, epoch and rank
    # Rank 0 (and a single process) seeds both as a single process always did: with seed * 100003 + epoch.
    monkeypatch.setattr(distributed, "rank", lambda: 0)
    assert seeds.seed_epoch(seed=5, epoch=2).initial_seed() == torch.initial_seed() == 5 * 100_003 + 2


def test_two_processes_keep_one_dcgan_with_batch_norm_and_write_once(data_dir, tmp_path):
    flags = ["--dataset", "folder", "--data-dir", str(data_dir / "cifar10-jpeg" / "test"), "--limit", "512",
             "--epochs", "1", "--batch-size", "64", "--base-channels", "8", "--device", "cpu"]
    run(torchrun(standalone(2), "dcgan_cifar10.py", [*flags, "--out-dir", str(tmp_path / "two")], tmp_path / "report"))
    main, other = reports(tmp_path / "report")
    # G's and D's weights and batch-norm statistics (channels-last convolutions), the same in both processes.
    assert any("running_var" in name for name in main["digests"]) and main["digests"] == other["digests"]
    assert other["writes"] == []
    dcgan_cifar10.main([*flags, "--out-dir", str(tmp_path / "one")])
    assert listing(tmp_path / "two") == listing(tmp_path / "one")
