"""All six experiments with one command, in the order they depend on each other, and one report of their results.

Runs vae_mnist.py, then the two scripts that reuse its VAE (vae_anomaly_detection.py and
vae_latent_space_visualization.py), gan_mnist.py, then latent_interpolation.py on its generator, and dcgan_cifar10.py,
each through its own ``main`` with its own defaults; --data-dir, --device and --seed are passed to every one. Each later
script is pointed at the checkpoint the earlier stage wrote in the same run folder, so two runs never mix. A stage whose
outputs are complete (its config.json holds the settings asked for, metrics.json was written after it and every figure
of the report is there) is skipped; a stage that was stopped part-way is run again, with --resume where it left a
checkpoint, so a training script continues from its last finished epoch. When a stage runs, so do the later ones that
read what it writes (READS). What each stage prints goes to logs/<script>.log in the run folder; the terminal gets one
line per stage with its time. Then report.html (one file, figures embedded: it opens offline) and report.md (figures
linked by relative path) are written beside the scripts' folders (report.py).

--quick runs the whole assignment in about ten minutes on 2 CPU cores (BENCHMARKS.md), in a folder of its own,
outputs/quick/, with the settings of QUICK below: fewer epochs and images, chosen so that each figure still shows what
its experiment is about. Its sample-quality numbers come from judges trained on a subset of the data in
outputs/quick/classifiers/, not from the cached classifiers every other run shares: they compare between quick runs
only.

    python run_all.py --quick                     # CPU: about 10 minutes
    python run_all.py                             # every script's defaults: about 40 minutes on 2 CPU cores
    python run_all.py --device cuda               # GPU

Writes to outputs/ (outputs/quick/ with --quick): one folder per script, report.html, report.md, run_all.json (each
stage's command and time) and logs/.

A stage's folder that holds a run of other settings is started over only where run_all.py started that run itself
(its config.json says so); one it did not start, such as a user's own --epochs 50 run in outputs/vae_mnist/, stops
run_all.py before it writes anything, unless --overwrite says to replace it. A run of the same settings, whoever
started it, is reused: skipped when complete, continued when not.
"""
import contextlib
import functools
import json
import sys
import time
from datetime import datetime
from pathlib import Path

import dcgan_cifar10
import gan_mnist
import latent_interpolation
import report
import vae_anomaly_detection
import vae_latent_space_visualization
import vae_mnist
from common import classifier, cli, data, devices, fid, files, run_folder

SETTINGS = {
    **cli.BASE_SETTINGS,
    "out_dir": (None, "folder of the scripts' folders, the report and the logs (default: outputs, with --quick "
                      "outputs/quick)"),
    "quick": (False, "the whole assignment in about 10 minutes on 2 CPU cores: fewer epochs and images (QUICK)"),
    "overwrite": (False, "replace the runs of other settings in the stages' folders that run_all.py did not start "
                         "(your own runs); without it run_all.py stops before writing anything when it finds one"),
    "fid": ("auto", "the two GANs' standard FID and KID (common/fid.py: 10,000 samples against the 10,000 test images "
                    "each); auto: measured when the Inception network is installed, except with --quick. On 2 CPU "
                    "cores they add about 50 minutes, and the real images' features 45 more the first time",
            ("auto", "inception", "none")),
    "inception_weights": fid.SETTINGS["inception_weights"],
}
AGAIN = "run the same command again to go on (finished stages are skipped)"  # what run_all's Ctrl-C line ends with

# In the order they depend on each other: each script reads what the ones above it wrote.
SCRIPTS = {module.__name__: module for module in (vae_mnist, vae_anomaly_detection, vae_latent_space_visualization,
                                                  gan_mnist, latent_interpolation, dcgan_cifar10)}
TRAINED_HERE = ("vae_mnist", "gan_mnist", "dcgan_cifar10")  # the scripts that write checkpoint.pt and --resume it
GANS = ("gan_mnist", "dcgan_cifar10")  # the stages --fid inception adds the standard FID and KID to

# --quick's flags for each script (appended to --data-dir, --device, --seed and the run folder's paths), and the
# subsets its judges are trained on. Each was chosen by looking at the figures of a quick run: BENCHMARKS.md.
QUICK = {
    # The full training split, two of the default's nine epochs: reconstructions and samples are readable digits.
    "vae_mnist": ["--epochs", "2"],
    # The detector's defaults: it trains nothing, and its time is the scoring of a fixed mix of images.
    "vae_anomaly_detection": [],
    # Half the test digits: the clusters are the same, t-SNE's time is what shrinks.
    "vae_latent_space_visualization": ["--num-points", "5000"],
    # Enough epochs for every digit to be drawn and read; quality measured on fewer samples during training.
    "gan_mnist": ["--epochs", "4", "--quality-samples", "2000", "--eval-images", "5000"],
    "latent_interpolation": [],
    # A fifth of the images at a quarter of the default batch: more steps in the same time, which is what takes the
    # samples from grey blobs to coloured scenes (batch 64 for four epochs still drew blurred blobs: BENCHMARKS.md).
    "dcgan_cifar10": ["--limit", "10000", "--batch-size", "32", "--epochs", "5", "--quality-samples", "1000",
                      "--eval-images", "2000"],
    # The judges: the project's small CNN with its recipe, on the first training images only (BENCHMARKS.md gives
    # their test accuracy): training them on everything would take most of the ten minutes.
    "classifiers": {"mnist": 10_000, "cifar10": 10_000},
}
CLASSIFIER_FILES = {"mnist": "mnist.pt", "cifar10": "cifar10.pt"}
# What each stage reads of the stages before it: when one of those runs, so does the stage.
READS = {"vae_anomaly_detection": ("vae_mnist",), "vae_latent_space_visualization": ("vae_mnist",),
         "gan_mnist": ("classifiers",), "latent_interpolation": ("gan_mnist", "classifiers"),
         "dcgan_cifar10": ("classifiers",)}


def stage_argv(name, cfg, root):
    """The flags ``name``'s main gets: the run's shared ones, its folder, where the earlier stages' models are, and
    --quick's settings."""
    argv = ["--device", cfg.device, "--seed", str(cfg.seed), "--out-dir", str(root / name)]
    if cfg.data_dir:
        argv = ["--data-dir", cfg.data_dir, *argv]
    if name in ("vae_anomaly_detection", "vae_latent_space_visualization"):
        argv += ["--vae-checkpoint", str(root / "vae_mnist" / "checkpoint.pt")]
    if name == "latent_interpolation":
        argv += ["--checkpoint", str(root / "gan_mnist" / "checkpoint.pt")]
    if cfg.quick and name in ("gan_mnist", "latent_interpolation"):
        argv += ["--classifier", str(root / "classifiers" / CLASSIFIER_FILES["mnist"])]
    if cfg.quick and name == "dcgan_cifar10":
        argv += ["--classifier", str(root / "classifiers" / CLASSIFIER_FILES["cifar10"])]
    if name in GANS and measures_fid(cfg):
        argv += ["--fid", "inception", *(["--inception-weights", cfg.inception_weights] if cfg.inception_weights
                                         else [])]
    return argv + (QUICK[name] if cfg.quick else [])


def measures_fid(cfg):
    """Whether the GAN stages measure the standard FID and KID: --fid inception, or --fid auto where the network is
    installed (or named by --inception-weights) and the run is not --quick."""
    if cfg.fid == "auto":
        return not cfg.quick and bool(cfg.inception_weights or fid.packaged_weights())
    return cfg.fid == "inception"


def comparable(settings):
    """A run's settings as config.json holds them, without those that say where and how it ran (the folder, the
    device, --resume, --overwrite: run_folder.WHERE_AND_HOW), which do not make it another run."""
    settings = json.loads(json.dumps(settings, default=str))
    return {name: value for name, value in settings.items() if name not in run_folder.WHERE_AND_HOW}


def recorded_run(folder):
    """The config.json of the run ``folder`` holds (common/run_folder.py), or None; {} where the file is there but is
    no run record of this project."""
    path = folder / "config.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return record if isinstance(record, dict) and isinstance(record.get("settings"), dict) else {}


def asked_settings(name, argv):
    module = SCRIPTS[name]
    return vars(cli.parse(module.SETTINGS, module.__doc__, argv))


def asks_for_recorded(name, argv, root):
    """Whether ``root/name`` holds a run of ``name``'s script with the settings ``argv`` gives it."""
    recorded = recorded_run(root / name)
    return (bool(recorded) and recorded.get("script") == f"{name}.py"
            and comparable(recorded["settings"]) == comparable(asked_settings(name, argv)))


def how_to_start(name, argv, root, overwrite):
    """The flags ``name``'s stage starts with, and whether the run it leaves in its folder is run_all.py's own:
    --resume where the folder holds an unfinished run of these settings with a checkpoint, --overwrite where it
    holds a run of other settings that run_all.py started (or any, with run_all.py's --overwrite). A run of these
    settings stays whose it was. A run of other settings that run_all.py did not start (a user's own) is a
    ``UserError`` naming the difference: what a user wrote is never replaced unasked."""
    folder = root / name
    recorded = recorded_run(folder)
    if recorded is None:
        return [], True
    ours = recorded.get("started_by") == "run_all.py"
    if asks_for_recorded(name, argv, root):
        resumes = name in TRAINED_HERE and (folder / "checkpoint.pt").is_file()
        return ["--resume"] if resumes else [], ours
    if ours or overwrite:
        return ["--overwrite"], True
    raise cli.UserError(f"{folder} holds a run that run_all.py did not start, {difference(name, recorded, argv)}: "
                        f"move it elsewhere, give run_all.py a folder of its own with --out-dir DIR, or pass "
                        f"--overwrite to replace it")


def difference(name, recorded, argv):
    """How the run ``recorded`` (its config.json) differs from what run_all.py asks of ``name``, in a few words."""
    if recorded.get("script") != f"{name}.py":
        return f"and its config.json is no record of a run of {name}.py"
    theirs, asked = comparable(recorded["settings"]), comparable(asked_settings(name, argv))
    for setting in sorted(set(theirs) & set(asked)):
        if theirs[setting] != asked[setting]:
            return f"with {cli.as_flag(setting, theirs[setting])}, not {cli.as_flag(setting, asked[setting])}"
    return "of settings of another version of the script"


def is_complete(name, argv, root):
    """Whether ``root/name`` holds a finished run of these settings: config.json says so, metrics.json was written
    after it (a run stopped part-way has only the newer config) and every figure the report shows is there."""
    folder = root / name
    config, metrics = folder / "config.json", folder / "metrics.json"
    if not (config.is_file() and metrics.is_file()) or metrics.stat().st_mtime_ns < config.stat().st_mtime_ns:
        return False
    # The FID settings do not make another run (run_folder.WHERE_AND_HOW): a finished GAN run without the FID asked
    # for is not complete, and resuming it (no epoch left to train) measures the FID.
    wants_fid = "--fid" in argv and "fid_inception" not in json.loads(metrics.read_text())
    return (asks_for_recorded(name, argv, root) and not wants_fid
            and all((folder / figure).is_file() for figure, _ in report.FIGURES[name]))


def train_judges(cfg, root, device):
    """--quick's classifiers, on the first training images of each dataset (QUICK["classifiers"])."""
    limits, folder = QUICK["classifiers"], root / "classifiers"
    classifier.mnist_classifier(cfg.data_dir, device, folder / CLASSIFIER_FILES["mnist"], limit=limits["mnist"])
    cli.on_interrupt("rerun the same command to start again", kept=f"{folder / CLASSIFIER_FILES['mnist']} is kept")
    classifier.cifar10_classifier(cfg.data_dir, device, folder / CLASSIFIER_FILES["cifar10"],
                                  limit=limits["cifar10"])


def check_data(data_dir):
    """Stop before any stage writes a file when a dataset is missing: MNIST, Fashion-MNIST (the anomaly detector's
    foreign images) and CIFAR-10 (one image of its test split is read)."""
    data.load_mnist(data_dir, train=False)
    data.load_mnist(data_dir, train=False, name="fashion-mnist")
    data.load_cifar10(data_dir, train=False, limit=1, log=lambda message: None)


@contextlib.contextmanager
def logged(path, command):
    """Send what a stage prints (and its warnings) to ``path``, appended, under a line naming its command."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        print(f"=== {datetime.now().isoformat(timespec='seconds')}  {command}")
        yield


def run_stage(name, cfg, root, device):
    """Run one stage, what it prints going to its log; returns its record for run_all.json (command, whether it
    resumed, wall-clock and CPU seconds, when it finished)."""
    if name == "classifiers":
        limits = QUICK["classifiers"]
        command = (f"classifier.mnist_classifier(limit={limits['mnist']}) and "
                   f"classifier.cifar10_classifier(limit={limits['cifar10']}) into {root / 'classifiers'}/")
        resumed, ours = False, True
        work = functools.partial(train_judges, cfg, root, device)
    else:
        argv = stage_argv(name, cfg, root)
        start, ours = how_to_start(name, argv, root, cfg.overwrite)
        resumed = start == ["--resume"]
        argv += start
        command = " ".join(["python", f"{name}.py", *argv])
        work = functools.partial(SCRIPTS[name].main, argv)
    cli.reset_interruption()  # nothing kept until the stage says otherwise
    wall, cpu = time.perf_counter(), time.process_time()
    # config.json names run_all.py as the starter of the runs it owns; a user's run it continues stays the user's.
    with logged(root / "logs" / f"{name}.log", command), run_folder.started_by("run_all.py" if ours else None):
        work()
    return {"command": command, "resumed": resumed, "wall_seconds": time.perf_counter() - wall,
            "cpu_seconds": time.process_time() - cpu, "finished": datetime.now().isoformat(timespec="seconds")}


def stages_to_run(stages, cfg, root):
    """``{stage: whether it runs}``: those not complete, and every stage after one that runs and reads its outputs."""
    runs_now = {}
    for name in stages:
        if name == "classifiers":
            complete = all((root / "classifiers" / file).is_file() for file in CLASSIFIER_FILES.values())
        else:
            complete = is_complete(name, stage_argv(name, cfg, root), root)
        runs_now[name] = not complete or any(runs_now.get(earlier, False) for earlier in READS.get(name, ()))
    return runs_now


def read_record(path):
    """run_all.json's stage records from earlier calls (each stage's command and time), or none."""
    try:
        return json.loads(path.read_text())["stages"]
    except (OSError, ValueError, KeyError):
        return {}


def main(argv=None):
    cfg = cli.parse(SETTINGS, __doc__, argv)
    device = devices.pick_device(cfg.device)
    root = Path(cfg.out_dir) if cfg.out_dir else Path("outputs/quick" if cfg.quick else "outputs")
    stages = list(SCRIPTS)
    if cfg.quick:
        stages.insert(stages.index("gan_mnist"), "classifiers")
    if measures_fid(cfg):  # a missing network or weights file is one line now, not after the VAE stages
        fid.load_network(cfg.inception_weights)
        print("the GANs' standard FID and KID are measured too (--fid none skips them): on 2 CPU cores about 25 "
              "minutes per 10,000 images through Inception-v3", flush=True)
    runs_now = stages_to_run(stages, cfg, root)
    for name in stages:  # a user's run of other settings stops the run here, before any stage has written a file
        if runs_now[name] and name != "classifiers":
            how_to_start(name, stage_argv(name, cfg, root), root, cfg.overwrite)
    if any(runs_now.values()):
        check_data(cfg.data_dir)  # a missing dataset stops the run here, before any stage has written a file
    record_path = root / "run_all.json"
    record = read_record(record_path)
    print(f"run_all.py{' --quick' if cfg.quick else ''}: {len(stages)} stages in {root}/, each one's output in "
          f"{root / 'logs'}/", flush=True)
    started = time.perf_counter()
    for number, name in enumerate(stages, start=1):
        line = f"[{number}/{len(stages)}] {name:31s}"
        if not runs_now[name]:
            earlier = record.get(name)
            print(f"{line} skipped: complete" + (f" (it took {earlier['wall_seconds']:.1f} s, finished "
                                                 f"{earlier['finished']})" if earlier else ""), flush=True)
            continue
        print(line, end=" ", flush=True)  # the time follows on the same line when the stage is done
        try:
            record[name] = run_stage(name, cfg, root, device)
        except cli.UserError as error:
            print("stopped")
            raise cli.UserError(f"{name}: {error}") from None
        except KeyboardInterrupt:
            print("interrupted")
            print(f"{sys.argv[0]}: {cli.interruption_message(f' in {name}', then=AGAIN)}", file=sys.stderr)
            sys.exit(130)
        except Exception:
            print(f"failed (its output: {root / 'logs' / name}.log)")
            raise
        files.write_json(record_path, {"quick": cfg.quick, "stages": record})
        done = record[name]
        print(f"{'resumed, ' if done['resumed'] else ''}done in {done['wall_seconds']:.1f} s "
              f"(CPU {done['cpu_seconds']:.0f} s)", flush=True)
    paths = report.write_report(root, {name: record.get(name) for name in stages}, cfg.quick)
    print(f"{time.perf_counter() - started:.1f} s; report: {paths[1]} and {paths[0]}")
    return {name: json.loads((root / name / "metrics.json").read_text()) for name in SCRIPTS}


if __name__ == "__main__":
    cli.run(main)
