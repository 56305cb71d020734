"""The output folder as the record of one run: nothing written before every check has passed, no run lost to
another, and config.json (with provenance), log.txt and the per-epoch history.csv beside every checkpoint."""
import csv
import fcntl
import json
import os
import shutil

import pytest
import torch

import dcgan_cifar10
import gan_mnist
import latent_interpolation
import vae_mnist
from common import checkpoints, cli, run_folder
from tests.conftest import DATA, SMALL_VAE_FLAGS, folder_fingerprint
from tests.test_bad_input import fingerprint, small_mnist_classifier, user_error  # noqa: F401  (a fixture)

VAE_FLAGS = SMALL_VAE_FLAGS


def folder_state(folder):
    """Every file under ``folder`` with its bytes and modification time: equal before and after means untouched."""
    return {str(path.relative_to(folder)): fingerprint(path) for path in sorted(folder.rglob("*")) if path.is_file()}


def read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture
def vae_run(small_vae_run, tmp_path):
    """A copy of the finished VAE run for one test to change; with the flags that continue it."""
    folder = tmp_path / "vae_run"
    shutil.copytree(small_vae_run, folder)
    return folder, ["--data-dir", str(DATA), "--out-dir", str(folder), *VAE_FLAGS]


def test_a_vae_run_folder_holds_config_with_provenance_the_log_and_the_history(vae_run):
    folder, _ = vae_run
    record = json.loads((folder / "config.json").read_text())
    assert record["script"] == "vae_mnist.py" and record["settings"]["limit"] == 640
    assert record["command"].startswith("python vae_mnist.py") and "--limit 640" in record["command"]
    assert set(record["versions"]) == {"python", "torch", "torchvision", "numpy"} and record["device"] == "cpu"
    assert record["started"][:2] == "20" and "git_commit" in record and record["processes"] == 1
    rows = read_csv(folder / "history.csv")
    checkpoint = torch.load(folder / "checkpoint.pt", weights_only=True)
    assert len(rows) == 1 and rows[0]["epoch"] == "1"
    assert float(rows[0]["test_loss"]) == pytest.approx(checkpoint["history"]["test_loss"][0])
    assert set(rows[0]) == {"epoch", *checkpoint["history"]}
    log = (folder / "log.txt").read_text()
    assert log.startswith("== ") and "epoch   1/1" in log and log.endswith("/vae_mnist/\n")  # "wrote <its folder>/"


# ----- a refused run leaves the folder as it was -----

@pytest.mark.parametrize("script, flags, expected", [
    # Refused by the folder's record: a run of another script.
    (gan_mnist, ["--resume", "--epochs", "2"], "holds a run of vae_mnist.py, not of gan_mnist.py"),
    (gan_mnist, ["--epochs", "0"], "holds a run of vae_mnist.py, not of gan_mnist.py"),
    # Refused by the checkpoint, inside the training loop: the record begins only after that check.
    (vae_mnist, ["--resume", "--latent-dim", "16"], "--latent-dim 16 does not match the run in"),
    # A run that starts over in a folder of a run of other settings.
    (vae_mnist, ["--latent-dim", "16"], "holds a run of vae_mnist.py with --latent-dim 32, not --latent-dim 16: "
                                        "continue it with --resume, choose another --out-dir, or pass --overwrite"),
])
def test_a_refused_run_leaves_every_file_of_the_folder_as_it_was(vae_run, script, flags, expected):
    folder, common = vae_run
    before = folder_state(folder)
    if script is gan_mnist:
        common = [*common[:4], "--device", "cpu"]
    assert expected in user_error(script.main, *common, *flags)
    assert folder_state(folder) == before


def test_an_epochs_0_run_keeps_config_json_and_adds_to_the_log(vae_run):
    folder, common = vae_run
    before = folder_state(folder)
    vae_mnist.main([*common, "--epochs", "0", "--num-samples", "3"])
    after = folder_state(folder)
    assert after["config.json"] == before["config.json"] and after["history.csv"] == before["history.csv"]
    assert after["checkpoint.pt"] == before["checkpoint.pt"]
    log = (folder / "log.txt").read_text()
    assert log.count("\n== ") == 1 and "--epochs 0" in log.split("\n== ")[1]


def test_the_same_command_again_starts_over_and_overwrite_replaces_a_run_of_other_settings(vae_run):
    folder, common = vae_run
    vae_mnist.main([*common, "--seed", "1", "--overwrite"])
    assert json.loads((folder / "config.json").read_text())["settings"]["seed"] == 1
    (folder / "samples.npz").write_bytes(b"samples of the replaced model")
    vae_mnist.main([*common, "--seed", "1", "--device", "cpu"])  # the same run again: no --overwrite needed
    assert (folder / "log.txt").read_text().count("== ") == 1  # a run that starts over starts its log over
    assert not (folder / "samples.npz").exists()  # the earlier run's


def test_a_folder_another_live_run_holds_is_refused_untouched(vae_run):
    folder, common = vae_run
    before = folder_state(folder)
    other = os.open(folder, os.O_RDONLY)  # what a run in another process holds while it writes here
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        message = user_error(vae_mnist.main, *common, "--epochs", "0")
    finally:
        os.close(other)
    assert f"{folder} is being written by another run that is still going" in message
    assert folder_state(folder) == before


def test_a_folder_whose_config_json_is_unreadable_is_refused_untouched(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{ half written")
    before = folder_state(tmp_path / "run")
    message = user_error(latent_interpolation.main, "--out-dir", tmp_path / "run", "--checkpoint", "nowhere.pt")
    assert "config.json is not a readable run record" in message and "--overwrite" in message
    assert folder_state(tmp_path / "run") == before


def test_a_config_json_that_is_no_run_record_of_this_project_is_refused_and_left_alone(vae_run):
    folder, common = vae_run
    settings = json.loads((folder / "config.json").read_text())["settings"]
    (folder / "config.json").write_text(json.dumps(settings))  # a bare dict of settings: whose run, nobody says
    before = folder_fingerprint(folder)
    message = user_error(vae_mnist.main, *common, "--limit", "1280")
    assert f"{folder / 'config.json'} is not a run record of this project" in message and "--overwrite" in message
    assert folder_fingerprint(folder) == before


def test_refusals_checked_late_write_nothing_either(tmp_path):
    """latent_interpolation.py used to write config.json before checking --pool."""
    out = tmp_path / "walk"
    assert "--pool >= 2 * pairs" in user_error(latent_interpolation.main, "--out-dir", out, "--pairs", 3, "--pool", 4)
    assert not out.exists() or not list(out.iterdir())


# ----- the GANs' record: history.csv per epoch, steps.csv per iteration -----

def test_a_gan_run_writes_its_history_per_epoch_and_per_iteration(data_dir, tmp_path, small_mnist_classifier):
    out = tmp_path / "run"
    common = ["--data-dir", data_dir, "--out-dir", out, "--device", "cpu", "--classifier", small_mnist_classifier,
              "--quality-samples", 129, "--eval-images", 129, "--g-width", 32, "--d-width", 64]
    # 65 images in batches of 64: the last batch of one joins the one before it (batch norm cannot take one).
    gan_mnist.main([*map(str, common), "--limit", "65", "--epochs", "2", "--quality-every", "2"])
    history = torch.load(out / "checkpoint.pt", weights_only=True)["history"]
    assert len(history["step_loss_d"]) == 2  # one step per epoch: 65 images
    rows = read_csv(out / "history.csv")
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert rows[0]["frechet_distance"] == "" and float(rows[1]["frechet_distance"]) == history["frechet_distance"][0]
    assert float(rows[1]["class_shares_3"]) == history["class_shares"][0][3]
    assert float(rows[0]["loss_d"]) == history["loss_d"][0]
    steps = read_csv(out / "steps.csv")
    assert [(row["iteration"], row["epoch"]) for row in steps] == [("1", "1"), ("2", "2")]
    assert float(steps[1]["loss_g"]) == history["step_loss_g"][1]
    assert json.loads((out / "config.json").read_text())["script"] == "gan_mnist.py"
    assert "epoch   2/2" in (out / "log.txt").read_text()


def test_a_dcgan_run_writes_its_record(data_dir, tmp_path):
    out = tmp_path / "run"
    dcgan_cifar10.main(["--dataset", "folder", "--data-dir", str(data_dir / "cifar10-jpeg" / "test" / "cat"),
                        "--limit", "64", "--epochs", "1", "--batch-size", "32", "--base-channels", "8",
                        "--device", "cpu", "--out-dir", str(out)])
    assert [row["epoch"] for row in read_csv(out / "history.csv")] == ["1"]
    assert len(read_csv(out / "steps.csv")) == 2
    assert json.loads((out / "config.json").read_text())["settings"]["dataset"] == "folder"
    assert "epoch   1/1" in (out / "log.txt").read_text()


def test_history_tables_align_measurements_with_their_epochs():
    history = {"loss_d": [1.0, 2.0, 3.0], "step_loss_d": [1, 2, 3, 4, 5, 6],
               "quality_epoch": [2, 3], "frechet_distance": [9.0, 8.0], "class_shares": [[0.5, 0.5], [0.4, 0.6]]}
    per_epoch, per_step = run_folder.history_tables(history, 3)
    assert per_epoch[0] == {"epoch": 1, "loss_d": 1.0}
    assert per_epoch[2] == {"epoch": 3, "loss_d": 3.0, "frechet_distance": 8.0, "class_shares_0": 0.4,
                            "class_shares_1": 0.6}
    assert [row["epoch"] for row in per_step] == [1, 1, 2, 2, 3, 3] and per_step[3]["loss_d"] == 4


# ----- what Ctrl-C says -----

def test_the_interruption_message_follows_the_phase_and_the_last_checkpoint(tmp_path):
    settings = {**cli.TRAINING_SETTINGS, "epochs": (1, "passes")}
    cfg = cli.parse(settings, "test", ["--out-dir", str(tmp_path / "run"), "--epochs", "2"])
    out = run_folder.open_run("vae_mnist.py", cfg, torch.device("cpu"), checkpoint="checkpoint.pt")
    assert cli.interruption_message() == "interrupted: no epoch was finished; rerun the same command to start again"
    with cli.step_without_saving("training the classifier for c.pt, which is written only once trained"):
        assert cli.interruption_message().startswith("interrupted while training the classifier for c.pt")
    checkpoints.save_checkpoint(out / "checkpoint.pt", "vae", epoch=1, history={"test_loss": [1.0]}, settings=vars(cfg))
    assert cli.interruption_message() == (f"interrupted: rerun with --resume to continue from epoch 1, the last one "
                                          f"saved in {out / 'checkpoint.pt'}")
    assert json.loads((out / "config.json").read_text())["settings"]["epochs"] == 2
    checkpoints.save_checkpoint(tmp_path / "elsewhere" / "vae.pt", "vae", epoch=1, settings={"epochs": 9})
    assert "vae.pt holds the model after epoch 1 of 9, unfinished; delete it" in cli.interruption_message()


def test_config_json_records_the_torchrun_command_that_starts_the_run_again(tmp_path, monkeypatch):
    cfg = cli.parse(vae_mnist.SETTINGS, "", ["--epochs", "3", "--out-dir", str(tmp_path)])
    monkeypatch.setattr("sys.argv", ["/repo/vae_mnist.py", "--epochs", "3", "--out-dir", str(tmp_path)])
    assert run_folder._command("vae_mnist.py", cfg) == f"python /repo/vae_mnist.py --epochs 3 --out-dir {tmp_path}"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert run_folder._command("vae_mnist.py", cfg) == (f"torchrun --standalone --nproc_per_node 2 /repo/vae_mnist.py "
                                                       f"--epochs 3 --out-dir {tmp_path}")
    monkeypatch.setenv("WORLD_SIZE", "8")  # two machines of four processes
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    monkeypatch.setattr("sys.argv", ["tests/distributed_worker.py"])  # main called from Python: the settings
    assert run_folder._command("vae_mnist.py", cfg).startswith(f"torchrun --nnodes 2 --nproc_per_node 4 vae_mnist.py "
                                                               f"--out-dir {tmp_path} --device auto")
