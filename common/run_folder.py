"""The output folder as the record of one run: config.json (settings, command, date, git commit, versions, device),
log.txt (the console output of every run in the folder) and, rewritten with every checkpoint, history.csv (one row
per epoch) and the GANs' steps.csv (one row per iteration). Nothing is written until every check has passed; an
--epochs 0 run, which only evaluates and samples, keeps config.json."""
import contextlib
import datetime
import fcntl
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torchvision

from common import cli, distributed
from common.cli import UserError
from common.files import check_samples_fit, unwritable, write_csv, write_json


def output_folder(script_file, out_dir=None):
    """``--out-dir`` or ``outputs/<script name>``, created if needed."""
    folder = Path(out_dir) if out_dir else Path("outputs") / Path(script_file).stem
    problem = unwritable(folder)
    if problem:
        raise UserError(f"--out-dir {folder} cannot be used: {problem}; pass the path of a folder (created if absent)")
    if distributed.is_main():
        folder.mkdir(parents=True, exist_ok=True)
    return folder


# Settings that say where or how a run goes, or what its end adds (the standard FID), not what it trains: runs that
# differ in these only are the same run.
WHERE_AND_HOW = ("data_dir", "out_dir", "device", "resume", "overwrite", "num_samples", "fid", "fid_samples",
                 "fid_reference", "inception_weights")
# What an earlier run may have left that a fresh one need not write again (samples.npz without --num-samples, ...):
# removed when the fresh run's record begins, so that nothing in the folder belongs to a model no longer there.
EARLIER_RUNS_FILES = ("samples.npz", "best.pt")
_run = None  # the open run (open_run), in the main process
_locks = {}  # folder -> the open descriptor that holds its lock, for this process's life
_started_by = None  # the command that calls the scripts' mains, while it does (started_by)


@contextlib.contextmanager
def started_by(command):
    """Runs opened within the block record that ``command`` (run_all.py) started them: it may start its own runs
    over, but must leave a user's alone."""
    global _started_by
    outer, _started_by = _started_by, command
    try:
        yield
    finally:
        _started_by = outer


def open_run(script_file, cfg, device, checkpoint=None, sample_shape=None):
    """Check the output folder and claim it for this run (nothing is written in it yet); returns the folder. Refused:
    a folder another live run is writing, or one holding a run of another script or, for a run that starts over, of
    other settings (--overwrite allows both). ``checkpoint``: the file a training script saves every epoch, whose
    first save, after the resume checks, begins the record. ``sample_shape``: C x H x W of the --num-samples images."""
    global _run
    script = Path(script_file).name
    folder = output_folder(script_file, cfg.out_dir)
    trains = checkpoint is not None
    fresh = not trains or (cfg.epochs > 0 and not cfg.resume)  # a run that starts over, not one continued
    distributed.from_main(_claim, folder, script, cfg, fresh, sample_shape)
    _run = SimpleNamespace(folder=folder, checkpoint=folder / checkpoint if trains else None, fresh=fresh,
                           begun=False, configured=False,
                           provenance=run_provenance(script, cfg, device) if distributed.is_main() else None)
    if distributed.is_main():
        stream = sys.stdout.stream if isinstance(sys.stdout, _Console) else sys.stdout
        sys.stdout = _Console(stream)  # a new run keeps nothing an earlier one printed
    cli.reset_interruption()  # Ctrl-C: "rerun the same command to start again", unless a checkpoint is or will be kept
    if trains and cfg.resume and _run.checkpoint.exists():
        cli.on_interrupt(f"rerun with --resume to continue from the last epoch saved in {_run.checkpoint}",
                         kept=f"the last epoch saved in {_run.checkpoint} is kept")
    elif trains and cfg.epochs:
        cli.on_interrupt("no epoch was finished; rerun the same command to start again", kept="no epoch was finished")
    return folder


def _claim(folder, script, cfg, starts_over, sample_shape):
    _lock(folder)
    if getattr(cfg, "num_samples", 0):
        check_samples_fit(folder, cfg.num_samples, sample_shape)
    if not getattr(cfg, "overwrite", False):
        _check_previous_run(folder, script, cfg, starts_over)


def _lock(folder):
    """An exclusive lock on the folder itself (no lock file to leave behind), for as long as this process lives."""
    key = folder.resolve()
    if key in _locks:
        return
    descriptor = os.open(key, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _locks[key] = descriptor
    except OSError as error:  # another run's lock, or a file system that cannot lock (the run goes on unguarded)
        os.close(descriptor)
        if isinstance(error, BlockingIOError):
            raise UserError(f"{folder} is being written by another run that is still going: wait for it to end, or "
                            f"choose another --out-dir") from None


def _check_previous_run(folder, script, cfg, starts_over):
    """Refuse a folder holding a run of another script or, when this run starts over, of other settings."""
    path = folder / "config.json"
    if not path.is_file():
        return
    replace = "or pass --overwrite to start this run there anyway (files of the same names are replaced)"
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        record = None
    if not isinstance(record, dict) or "script" not in record:
        what = "a readable run record" if record is None else "a run record of this project"
        raise UserError(f"{path} is not {what}, so {folder} may hold another run: choose another --out-dir, {replace}")
    ours, theirs, settings = vars(cfg), record["script"], record.get("settings") or {}
    if theirs != script:
        raise UserError(f"{folder} holds a run of {theirs}, not of {script}: choose another --out-dir, {replace}")
    if not starts_over:
        return
    for name, value in settings.items():
        if name in ours and name not in WHERE_AND_HOW and value != ours[name]:
            go_on = ("continue it with --resume, " if "resume" in ours else "") + "choose another --out-dir"
            raise UserError(f"{folder} holds a run of {script} with {cli.as_flag(name, value)}, not "
                            f"{cli.as_flag(name, ours[name])}: {go_on}, {replace}")


def start_record():
    """Begin the record once every check of the run has passed: log.txt, and config.json for a script that does not
    train (one that trains writes it with its first checkpoint). Later calls do nothing."""
    if _run is None or _run.begun or not distributed.is_main():
        return
    _run.begun = True
    if _run.checkpoint is None:
        write_json(_run.folder / "config.json", _run.provenance)
    if isinstance(sys.stdout, _Console):
        sys.stdout.begin(_run.folder / "log.txt", "w" if _run.fresh else "a",
                         f"== {_run.provenance['started']}  {_run.provenance['command']}\n")


def record_epoch(path, state):
    """What a saved checkpoint (holding ``state``) of the open run adds to its record: config.json with the first,
    then the curves of every epoch."""
    if _run is None or Path(path) != _run.checkpoint or not distributed.is_main():
        return
    if not _run.configured:
        if _run.fresh:
            for name in EARLIER_RUNS_FILES:
                (_run.folder / name).unlink(missing_ok=True)
        write_json(_run.folder / "config.json", _run.provenance)
        _run.configured = True
    start_record()
    history, epoch = state.get("history"), state.get("epoch")
    if history and epoch:
        per_epoch, per_step = history_tables(history, epoch)
        write_csv(_run.folder / "history.csv", per_epoch)
        if per_step:
            write_csv(_run.folder / "steps.csv", per_step)


def interrupt_message_after(path, state):
    """What Ctrl-C should say once ``path`` holds ``state``, as ``cli.on_interrupt``'s (then, kept); None where it
    says what it said before."""
    epoch = state.get("epoch")
    if _run is not None and path == _run.checkpoint:
        return (f"rerun with --resume to continue from epoch {epoch}, the last one saved in {path}",
                f"epoch {epoch} is saved in {path}")
    if epoch is not None and (_run is None or path.parent != _run.folder):  # a model this run trains for its use
        planned = (state.get("settings") or {}).get("epochs", epoch)
        if epoch < planned:
            unfinished = f"{path} holds the model after epoch {epoch} of {planned}, unfinished"
            return f"{unfinished}; delete it and rerun the same command to train it anew", unfinished
        return "rerun the same command to start again", f"{path} is trained"
    return None


def history_tables(history, epochs):
    """A checkpoint's history as (rows per epoch, rows per iteration), each row a dict of column -> number. The GANs'
    quality numbers go to the rows of the epochs in ``quality_epoch`` (blank in the others), a list per measurement
    (class shares) to one column per entry; ``step_*`` lists, one value per iteration, make the second table."""
    per_epoch = [{"epoch": epoch} for epoch in range(1, epochs + 1)]
    per_step, measured = [], history.get("quality_epoch")
    for key, values in history.items():
        if key == "quality_epoch" or not values:
            continue
        if key.startswith("step_"):
            if not per_step:  # iterations split evenly over the epochs: --batch-size and --limit are fixed on resume
                per_step = [{"iteration": i + 1, "epoch": 1 + i * epochs // len(values)} for i in range(len(values))]
            for row, value in zip(per_step, values):
                row[key.removeprefix("step_")] = value
            continue
        epochs_of = range(1, epochs + 1) if len(values) == epochs else measured
        if epochs_of is None or len(epochs_of) != len(values):
            continue
        for epoch, value in zip(epochs_of, values):
            cells = {f"{key}_{i}": part for i, part in enumerate(value)} if isinstance(value, list) else {key: value}
            per_epoch[epoch - 1].update(cells)
    return per_epoch, per_step


def run_provenance(script, cfg, device):
    """What config.json holds: the script, its settings, and what it takes to reproduce or judge the run."""
    repository = Path(__file__).resolve().parent.parent
    return {
        "script": script,
        "settings": vars(cfg),
        "command": _command(script, cfg),
        "started_by": _started_by,
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        **_git_commit(repository),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "numpy": np.__version__},
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "processes": distributed.world_size(),
    }


def _command(script, cfg):
    """The command line as typed, or where ``main`` was called from Python, the command with its settings."""
    if Path(sys.argv[0]).name == script:
        return shlex.join([*distributed.launcher(), *sys.argv])
    flags = [word for name, value in vars(cfg).items() if value is not None for word in cli.flag_words(name, value)]
    return shlex.join([*distributed.launcher(), script, *flags])


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

    def begin(self, path, mode, header):
        self.file = open(path, mode, buffering=1, encoding="utf-8")
        self.file.write(header + "".join(self.pending))

    def log_only(self, text):
        if self.file is None:
            self.pending.append(text)
        else:
            self.file.write(text)

    def write(self, text):
        self.log_only(text)
        return self.stream.write(text)

    def flush(self):
        if self.file is not None:
            self.file.flush()
        self.stream.flush()

    def __getattr__(self, name):  # isatty, encoding, fileno, ...: the console's own
        return getattr(self.stream, name)
