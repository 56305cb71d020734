"""What every run shares: the device, seeds, the output folder and its record, atomic files, checkpoints and the
progress bar.

Every file a run writes goes to a temporary name first and is renamed into place, so an interrupted run never
leaves a half-written checkpoint, figure or metrics file behind. Under torchrun only the main process (rank 0)
writes: the others skip every write (common/distributed.py).

The output folder is a record of one run. ``open_run`` checks it before anything is written (a path that can hold a
folder, no other live run writing there, no run of another script or of other settings in it) and claims it; the
record begins only once every check has passed: with the run's first checkpoint for a script that trains, which
is written after the resume checks, or with ``start_record``. It is config.json (the settings, the command, the
date, the git commit, the library versions and the device), log.txt (the console output of every run in the
folder), and beside a checkpoint history.csv (one row per epoch: every per-epoch curve of the figures) and, for
the GANs, steps.csv (one row per iteration), rewritten with every checkpoint; with --tensorboard, the same curves as
TensorBoard events. An --epochs 0 run, which only evaluates and samples, leaves config.json as it is.
"""
import csv
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torchvision
from tqdm import tqdm

from common import cli, distributed
from common.cli import UserError

DEVICES = ("auto", "cpu", "cuda", "mps")


def pick_device(name="auto"):
    """``auto`` -> cuda, then mps, then cpu, whichever is present first; a named device must be present. Under
    torchrun the process joins the others here and gets a GPU of its own (``distributed.setup``)."""
    if name not in DEVICES:
        raise UserError(f"--device must be one of {', '.join(DEVICES)}, got {name!r}")
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if cuda else "mps" if mps else "cpu"
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise UserError(f"--device {name} was asked for but this machine has none; use --device cpu or auto")
    if name == "cuda":
        # TF32 matmuls and convolutions: faster on tensor cores, ample for these models.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    return distributed.setup(torch.device(name))


def seed_everything(seed):
    """Seed torch (CPU and GPU) and numpy; returns a CPU generator for data order."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


def seed_epoch(seed, epoch):
    """Reseed at the start of an epoch, so a resumed run draws exactly what an uninterrupted one would; returns the
    generator of the epoch's data order.

    Under torchrun every process draws the same data order, and its own noise (z, eps, flips) from a seed of its
    rank, so a run is reproducible for a given seed and number of processes; rank 0 draws what a single process does.
    """
    base = seed * 100_003 + epoch
    seed_everything(base + distributed.rank() * 1_000_003)
    return torch.Generator().manual_seed(base)


def unwritable(path):
    """Why no folder could be created or written at ``path``, in words; None where one can."""
    for part in [path, *path.parents]:
        if part.is_dir():
            if not os.access(part, os.W_OK | os.X_OK):
                return f"{part} is not writable"
            return None
        if part.exists() or part.is_symlink():
            return f"{part} is a file, not a folder" if part == path else f"{part}, on its path, is a file"
    return None


def check_writable_file(path, flag):
    """Refuse (``UserError``) a path where a file could not be written, before the work that would write it."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder: pass the path of a file")
    problem = unwritable(path.parent)
    if problem:
        raise UserError(f"{flag} {path} cannot be written: {problem}")


def output_folder(script_file, out_dir=None):
    """``--out-dir`` or ``outputs/<script name>``, created if needed; a path that cannot be a writable folder is a
    ``UserError``."""
    folder = Path(out_dir) if out_dir else Path("outputs") / Path(script_file).stem
    problem = unwritable(folder)
    if problem:
        raise UserError(f"--out-dir {folder} cannot be used: {problem}; pass the path of a folder (created if absent)")
    if distributed.is_main():
        folder.mkdir(parents=True, exist_ok=True)
    return folder


# ----- the run folder as a record -----

# Settings that say where or how a run goes, not what it computes: a run in a folder that holds one differing from
# it in these only is the same run again.
WHERE_AND_HOW = ("data_dir", "out_dir", "device", "resume", "overwrite", "tensorboard", "num_samples")
LOG = "log.txt"
_run = None  # the open run (open_run), in the main process
_locks = {}  # folder -> the open descriptor that holds its lock, for this process's life


def open_run(script_file, cfg, device, checkpoint=None, sample_shape=None):
    """Check the output folder and claim it for this run; returns the folder. Nothing in it is written yet.

    Refused with a ``UserError``: a path that cannot be a writable folder; a folder another live run is writing (a
    lock on the folder, held until this process ends); a folder holding a run of another script, or, for a run that
    starts over, of other settings than ``cfg`` (--overwrite allows both). ``checkpoint``: the name of the file a
    training script saves after every epoch; its first save begins the record (config.json), so that the checks
    done inside the training loop (--resume under the same settings) come first. ``sample_shape``: the C x H x W of
    the images --num-samples asks for, whose samples.npz the disk must be able to hold. From here on the console's
    output is kept, and written to log.txt when the record begins.
    """
    global _run
    script = Path(script_file).name
    folder = output_folder(script_file, cfg.out_dir)
    trains = checkpoint is not None
    distributed.from_main(_claim, folder, script, cfg, trains, sample_shape)
    _run = SimpleNamespace(folder=folder, script=script, cfg=cfg, checkpoint=folder / checkpoint if trains else None,
                           begun=False, configured=False, tensorboard=getattr(cfg, "tensorboard", False),
                           fresh=not trains or (cfg.epochs > 0 and not cfg.resume),
                           provenance=run_provenance(script, cfg, device) if distributed.is_main() else None)
    if distributed.is_main():
        _Console.install()
    if trains and cfg.resume and _run.checkpoint.exists():
        cli.on_interrupt(f"rerun with --resume to continue from the last epoch saved in {_run.checkpoint}")
    elif trains and cfg.epochs:
        cli.on_interrupt("no epoch was finished; rerun the same command to start again")
    else:
        cli.on_interrupt("rerun the same command to start again")
    return folder


def _claim(folder, script, cfg, trains, sample_shape):
    _lock(folder)
    if getattr(cfg, "tensorboard", False):
        _check_tensorboard()
    if getattr(cfg, "num_samples", 0):
        check_samples_fit(folder, cfg.num_samples, sample_shape)
    if not getattr(cfg, "overwrite", False):
        _check_previous_run(folder, script, cfg, starts_over=not trains or (cfg.epochs > 0 and not cfg.resume))


def _lock(folder):
    """An exclusive lock on the folder itself (no lock file to leave behind), for as long as this process lives; a
    second call from this process for the same folder keeps the lock it holds."""
    try:
        import fcntl  # POSIX, like torchrun's multi-process runs
    except ImportError:
        return
    key = folder.resolve()
    if key in _locks:
        return
    descriptor = os.open(key, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise UserError(f"{folder} is being written by another run that is still going: wait for it to end, or "
                        f"choose another --out-dir") from None
    except OSError:  # a file system that cannot lock a folder: the run goes on unguarded
        os.close(descriptor)
        return
    _locks[key] = descriptor


def _check_previous_run(folder, script, cfg, starts_over):
    """Refuse a folder whose config.json is another script's run, or, when this run starts over, a run of other
    settings; a run continued (--resume) is checked against its checkpoint by the training loop."""
    path = folder / "config.json"
    if not path.is_file():
        return
    replace = "or pass --overwrite to start this run there anyway (files of the same names are replaced)"
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        raise UserError(f"{path} is not a readable run record, so {folder} may hold another run: choose another "
                        f"--out-dir, {replace}") from None
    ours = vars(cfg)
    if isinstance(record, dict) and "script" in record:
        theirs, settings = record["script"], record.get("settings") or {}
    else:  # a config.json written before the record named its script: its settings alone
        settings = record if isinstance(record, dict) else {}
        theirs = script if settings and settings.keys() <= ours.keys() else "another script"
    if theirs != script:
        raise UserError(f"{folder} holds a run of {theirs}, not of {script}: choose another --out-dir, {replace}")
    if not starts_over:
        return
    for name, value in settings.items():
        if name in ours and name not in WHERE_AND_HOW and value != ours[name]:
            go_on = "continue it with --resume, choose another --out-dir" if "resume" in ours else \
                "choose another --out-dir"
            raise UserError(f"{folder} holds a run of {script} with {cli.as_flag(name, value)}, not "
                            f"{cli.as_flag(name, ours[name])}: {go_on}, {replace}")


def start_record():
    """Begin the record once every check of the run has passed: log.txt, and config.json for a script that does not
    train (one that trains writes it with its first checkpoint: an --epochs 0 run leaves it as it is). Later calls
    do nothing."""
    if _run is None or _run.begun or not distributed.is_main():
        return
    _run.begun = True
    if _run.checkpoint is None:
        write_json(_run.folder / "config.json", _run.provenance)
    _Console.begin(_run.folder / LOG, "w" if _run.fresh else "a",
                   f"== {_run.provenance['started']}  {_run.provenance['command']}\n")


def _record_epoch(path, state):
    """What a saved checkpoint of the open run adds to its record: config.json with the first, and every time
    history.csv, steps.csv and the TensorBoard events of the epoch (``state``: what the checkpoint holds)."""
    if _run is None or Path(path) != _run.checkpoint or not distributed.is_main():
        return
    if not _run.configured:
        write_json(_run.folder / "config.json", _run.provenance)
        _run.configured = True
    start_record()
    history, epoch = state.get("history"), state.get("epoch")
    if history and epoch:
        per_epoch, per_step = history_tables(history, epoch)
        write_csv(_run.folder / "history.csv", per_epoch)
        if per_step:
            write_csv(_run.folder / "steps.csv", per_step)
        if _run.tensorboard:
            _log_to_tensorboard(per_epoch, per_step, epoch)


def history_tables(history, epochs):
    """A checkpoint's history as (rows per epoch, rows per iteration), each row a dict of column -> number.

    Lists of one value per epoch become columns of the first table; the GANs' quality numbers, measured at the
    epochs in ``quality_epoch``, go to the rows of those epochs (blank in the others), a list per measurement (class
    shares) to one column per entry; ``step_*`` lists, one value per iteration, make the second table. The images
    of each epoch (``grids``) are the figures' and stay in the checkpoint.
    """
    per_epoch = [{"epoch": epoch} for epoch in range(1, epochs + 1)]
    per_step, measured = [], history.get("quality_epoch")
    for key, values in history.items():
        if key == "quality_epoch" or not values or isinstance(values[0], torch.Tensor):
            continue
        if key.startswith("step_"):
            if not per_step:
                per_step = [{"iteration": i + 1, "epoch": None} for i in range(len(values))]
            for row, value in zip(per_step, values):
                row[key.removeprefix("step_")] = value
            continue
        epochs_of = range(1, epochs + 1) if len(values) == epochs else measured
        if epochs_of is None or len(epochs_of) != len(values):
            continue
        for epoch, value in zip(epochs_of, values):
            cells = {f"{key}_{i}": part for i, part in enumerate(value)} if isinstance(value, list) else {key: value}
            per_epoch[epoch - 1].update(cells)
    for row in per_step:  # iterations split evenly over the epochs: --batch-size and --limit are fixed on resume
        row["epoch"] = 1 + (row["iteration"] - 1) * epochs // len(per_step)
    return per_epoch, per_step


def write_csv(path, rows):
    """Rows of numbers as a CSV file with a header of every column any row has (blank where a row has none)."""
    columns = list(dict.fromkeys(column for row in rows for column in row))

    def write(temporary):
        with open(temporary, "w", newline="") as file:
            writer = csv.DictWriter(file, columns)
            writer.writeheader()
            writer.writerows(rows)
    atomic_write(path, write)


def _check_tensorboard():
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (only its presence is checked here)
    except ImportError:
        raise UserError("--tensorboard needs the tensorboard package, which is not installed: pip install "
                        "tensorboard (or drop --tensorboard: history.csv holds the same curves)") from None


def _log_to_tensorboard(per_epoch, per_step, epoch):
    """The epoch just saved, as scalars: its row of history.csv at step ``epoch``, its rows of steps.csv at their
    iteration. A resumed run writes the epochs it trains again over those an interrupted run had logged."""
    if _run.tensorboard is True:
        from torch.utils.tensorboard import SummaryWriter
        if _run.fresh:  # the events of a run this one replaces would mix with its own
            shutil.rmtree(_run.folder / "tensorboard", ignore_errors=True)
        _run.tensorboard = SummaryWriter(_run.folder / "tensorboard")
    for column, value in per_epoch[epoch - 1].items():
        if column != "epoch":
            _run.tensorboard.add_scalar(f"epoch/{column}", value, epoch)
    for row in (row for row in per_step if row["epoch"] == epoch):
        for column, value in row.items():
            if column not in ("iteration", "epoch"):
                _run.tensorboard.add_scalar(f"iteration/{column}", value, row["iteration"])
    _run.tensorboard.flush()


def run_provenance(script, cfg, device):
    """What config.json holds: the script, its settings, and what it takes to reproduce or judge the run."""
    repository = Path(__file__).resolve().parent.parent
    return {
        "script": script,
        "settings": vars(cfg),
        "command": _command(script, cfg),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        **_git_commit(repository),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "numpy": np.__version__},
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "processes": distributed.world_size(),
    }


def _command(script, cfg):
    """The command line as typed; where ``main`` was called from Python, the command that reproduces its settings."""
    if Path(sys.argv[0]).name == script:
        return shlex.join(["python", *sys.argv])
    words = ["python", script]
    for name, value in vars(cfg).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            words += [flag, *map(str, value if isinstance(value, list) else [value])]
    return shlex.join(words)


def _git_commit(repository):
    """The checkout's commit and whether tracked files differ from it; None where the code is not a git checkout."""
    def git(*args):
        result = subprocess.run(["git", "-C", str(repository), *args], capture_output=True, text=True, timeout=10)
        return result.stdout.strip() if result.returncode == 0 else None
    try:
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no") if commit else None
    except (OSError, subprocess.SubprocessError):  # no git on this machine
        commit = changed = None
    return {"git_commit": commit, "git_uncommitted_changes": None if changed is None else bool(changed)}


class _Console:
    """sys.stdout, copied into the run's log.txt: kept in memory until the record begins (a refused run leaves no
    log), then written line by line."""

    def __init__(self, stream):
        self.stream, self.file, self.pending = stream, None, []

    @classmethod
    def install(cls):
        if not isinstance(sys.stdout, cls):
            sys.stdout = cls(sys.stdout)
        sys.stdout.reset()

    @classmethod
    def begin(cls, path, mode, header):
        if isinstance(sys.stdout, cls):
            sys.stdout.open(path, mode, header)

    def reset(self):
        if self.file is not None:
            self.file.close()
        self.file, self.pending = None, []

    def open(self, path, mode, header):
        self.file = open(path, mode, buffering=1, encoding="utf-8")
        self.file.write(header + "".join(self.pending))
        self.pending = []

    def log_only(self, text):
        if self.file is not None:
            self.file.write(text)
        else:
            self.pending.append(text)

    def write(self, text):
        self.log_only(text)
        return self.stream.write(text)

    def flush(self):
        if self.file is not None:
            self.file.flush()
        self.stream.flush()

    def __getattr__(self, name):  # isatty, encoding, fileno, ...: the console's own
        return getattr(self.stream, name)


def atomic_write(path, write):
    """Call ``write(temporary_path)``, then rename the result onto ``path`` (atomic on one filesystem). Nothing on a
    process other than the main one under torchrun: every process holds the same result, one writes it."""
    if not distributed.is_main():
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(handle)
    try:
        write(temporary)
        umask = os.umask(0)  # mkstemp made the file private; give it the permissions a plain open() would
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_json(path, data):
    def write(temporary):
        with open(temporary, "w") as file:
            json.dump(data, file, indent=2, default=str)
            file.write("\n")
    atomic_write(path, write)


def check_samples_fit(folder, count, image_shape):
    """Refuse (``UserError``), before any work, a --num-samples whose samples.npz the disk of ``folder`` cannot hold
    (counted before compression, the size it reaches for images that do not compress)."""
    size = count * int(np.prod(image_shape))
    free = shutil.disk_usage(folder).free
    if size > free:
        raise UserError(f"--num-samples {count} needs up to {size / 1e9:.1f} GB for samples.npz ({count} images of "
                        f"{' x '.join(map(str, image_shape))} bytes) but {folder} has {free / 1e9:.1f} GB free: "
                        f"pass a smaller --num-samples")


def write_samples(path, batches, count):
    """Generated images as ``samples.npz`` with one key, ``images`` (uint8, ``count`` x C x H x W), written batch by
    batch as ``batches`` (uint8 tensors) come: memory holds one batch, never all of them. np.load reads the file
    as it reads any ``np.savez_compressed`` file."""
    def write(temporary):
        written = 0
        with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive:
            with archive.open("images.npy", "w", force_zip64=True) as member:
                for batch in batches:
                    batch = batch.cpu().numpy().astype(np.uint8, copy=False)
                    if written == 0:
                        np.lib.format.write_array_header_1_0(member, {"descr": "|u1", "fortran_order": False,
                                                                      "shape": (count, *batch.shape[1:])})
                    member.write(np.ascontiguousarray(batch).tobytes())
                    written += len(batch)
        if written != count:
            raise RuntimeError(f"write_samples: got {written} images, promised {count}")
    atomic_write(path, write)


# What each kind of checkpoint holds, in the words of an error message.
CHECKPOINT_KINDS = {"vae": "a VAE (written by vae_mnist.py)",
                    "gan": "a GAN (written by gan_mnist.py or dcgan_cifar10.py)",
                    "classifier": "a cached classifier (outputs/classifiers/)"}


def save_checkpoint(path, kind, **state):
    """One file a run can resume from: its ``kind`` (a key of CHECKPOINT_KINDS), weights, the model's config,
    optimizer state, epoch, history, settings. The open run's checkpoint (``open_run``) also updates the record
    (history.csv, ...) and what Ctrl-C says from now on: the message changes right as the file lands, so a Ctrl-C
    just after it names the epoch the file holds."""
    message = _interrupt_message_after(Path(path), state)
    atomic_write(path, lambda temporary: torch.save({"kind": kind, **state}, temporary))
    if message:
        cli.on_interrupt(message)
    _record_epoch(path, state)


def _interrupt_message_after(path, state):
    """What Ctrl-C should say once ``path`` holds ``state``; None where it says what it said before."""
    epoch = state.get("epoch")
    if _run is not None and path == _run.checkpoint:
        return f"rerun with --resume to continue from epoch {epoch}, the last one saved in {path}"
    if epoch is not None and (_run is None or path.parent != _run.folder):  # a model this run trains for its use
        planned = (state.get("settings") or {}).get("epochs", epoch)
        return (f"{path} holds the model after epoch {epoch} of {planned}, unfinished; delete it and rerun the same "
                f"command to train it anew" if epoch < planned else "rerun the same command to start again")
    return None


def checkpoint_kind(checkpoint):
    """The kind a loaded checkpoint says it is; for files written before kinds were recorded, what its keys say."""
    if not isinstance(checkpoint, dict):
        return None
    if "kind" in checkpoint:
        return checkpoint["kind"]
    if "architecture" in checkpoint and "generator" in checkpoint:
        return "gan"
    if "test_accuracy" in checkpoint:
        return "classifier"
    if "model_config" in checkpoint and "optimizer" in checkpoint:
        return "vae"
    return None


def load_checkpoint(path, device="cpu", kind=None, flag=None):
    """Load a checkpoint written by ``save_checkpoint``: a missing or damaged file, or one of another ``kind`` than
    asked for, is a ``UserError`` (which names ``flag``, the option the path came from, where there is one)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag + ' ' if flag else ''}{path} is a folder: pass the path of a checkpoint file")
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}: train first (drop --epochs 0 / --resume) or pass its path")
    try:
        # weights_only: a checkpoint is data (tensors, numbers, strings, dicts), never code to execute.
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:
        raise UserError(f"checkpoint {path} is corrupt or truncated ({error.__class__.__name__}); "
                        f"delete it and train again") from None
    found = checkpoint_kind(checkpoint)
    if kind is not None and found != kind:
        holds = CHECKPOINT_KINDS.get(found, "no checkpoint of this project")
        raise UserError(f"{path} holds {holds}, not {CHECKPOINT_KINDS[kind]}: pass {flag + ' ' if flag else ''}the "
                        f"path of {CHECKPOINT_KINDS[kind]}")
    return checkpoint


def check_resumable(checkpoint, cfg, names, path):
    """Refuse to continue a run under other values of the settings ``names`` than it was trained with.

    These settings shape the model, the data order or the optimizer's schedule: a run continued under other values
    would be neither of the two runs. Files written before settings were recorded are checked by their model configs
    when loaded.
    """
    trained = checkpoint.get("settings") or {}
    for name in names:
        if name in trained and trained[name] != getattr(cfg, name):
            asked, saved = cli.as_flag(name, getattr(cfg, name)), cli.as_flag(name, trained[name])
            raise UserError(f"{asked} does not match the run in {path}, trained with {saved}: pass {saved} to "
                            f"continue it, or another --out-dir to start a new run beside it")


# A loss past this size means training has left the rails: no run of these models comes near it while it learns
# (binary cross-entropy of 1e6 nats means a call made with probability e^-1e6).
DIVERGED = 1e6


def stop_if_diverged(losses, epoch, checkpoint_path, advice):
    """Stop with a ``UserError`` when a loss of the epoch just trained is not finite or has passed DIVERGED.

    Called before the epoch is saved, so the checkpoint keeps the last good epoch for ``--resume``. ``losses`` maps
    a name ("the generator's loss") to that epoch's values.
    """
    for name, values in losses.items():
        values = torch.as_tensor(values, dtype=torch.float64).flatten()
        bad = ~torch.isfinite(values) | (values.abs() > DIVERGED)
        if bad.any():
            kept = (f"{checkpoint_path} still holds epoch {epoch - 1}, which --resume continues from"
                    if epoch > 1 else "no checkpoint was written")
            raise UserError(f"training diverged in epoch {epoch}: {name} reached {values[bad][0].item():g}; "
                            f"stopped without saving it ({kept}); {advice}")


def progress_bar(items, description):
    """A tqdm bar over ``items`` (hidden when stderr is not a terminal, as in CI logs, and on every process but the
    main one under torchrun)."""
    return tqdm(items, desc=description, leave=False, disable=None if distributed.is_main() else True,
                dynamic_ncols=True)


def progress(batches, epoch, epochs):
    """The bar over one epoch's batches."""
    return progress_bar(batches, f"epoch {epoch}/{epochs}")


class Timer:
    """Wall-clock seconds, waiting for queued GPU work first so the numbers are honest."""

    def __init__(self, device):
        self.device = device
        self.start = self.now()

    def now(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def elapsed(self):
        return self.now() - self.start
