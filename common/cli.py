"""Settings and command-line flags, the same for every script.

Each script keeps its settings in one visible dict, ``name: (default, help)`` or ``name: (default, help, allowed)``,
and calls ``parse``. Every setting becomes a flag spelled the same way in every script (``batch_size`` ->
``--batch-size``); the flag's type is the default's type (a list default takes several whole numbers). ``allowed`` is
the interval a number must lie in, in the usual notation ("[1, inf)": at least 1; "(0, 1)": strictly between), or
the tuple of words a text setting may be; a number without it must be >= 0. Unknown flags and values outside what is
allowed stop the script at once, before any data is read, with one line on stderr and exit code 2.

A setting whose tuple ends with ``FIXED`` is fixed on resume: it shapes the model, the data or its order, or the
optimizer, so a run continued with --resume must keep its value (``fixed_on_resume`` lists them for
``checkpoints.check_resumable``); --help says so beside its default.
"""
import argparse
import contextlib
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

# The marker that ends the tuple of a setting fixed on resume.
FIXED = "fixed on resume"

# Flags every script accepts.
BASE_SETTINGS = {
    "data_dir": (None, "folder with MNIST/, FashionMNIST/, cifar10-jpeg/ "
                       "(default: $GENMODELS_DATA, else ./data, downloaded there if absent)"),
    "out_dir": (None, "where config.json, metrics.json, figures and checkpoints go (default: outputs/<script>)"),
    "device": ("auto", "auto | cpu | cuda | mps; auto picks a GPU when one is present", ("auto", "cpu", "cuda", "mps")),
    "seed": (0, "seed for every random choice: two CPU runs with the same seed print the same numbers", FIXED),
    "overwrite": (False, "start this run in an --out-dir that holds another run (of other settings or another "
                         "script), replacing its files of the same names"),
}

# Flags every script that trains a model accepts, besides its own --epochs and --batch-size.
TRAINING_SETTINGS = {
    **BASE_SETTINGS,
    "limit": (0, "train on the first N training examples only (0: all)", FIXED),
    "resume": (False, "continue from the checkpoint in the output folder instead of starting over"),
    "num_samples": (0, "also write N generated images to samples.npz (key 'images', uint8)"),
    "tensorboard": (False, "also log every curve to <out-dir>/tensorboard/ (needs pip install tensorboard)"),
}

DEFAULT_INTERVAL = "[0, inf)"  # every count, size and rate here: none has a meaningful negative value


class UserError(Exception):
    """A problem the user can fix (a flag, a path, a file): shown as one line, exit code 2, no traceback."""


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(f"{message} (see --help)")


class _HelpFormatter(argparse.HelpFormatter):
    """--help at one width, the terminal's up to 120 columns, for the description's prose and the flags' help alike;
    indented lines (the example commands) stay as written, and flags are never split at their hyphens."""

    def __init__(self, prog):
        super().__init__(prog, width=min(shutil.get_terminal_size().columns, 120) - 2)

    def _split_lines(self, text, width):
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False, break_long_words=False)

    def _fill_text(self, text, width, indent):
        lines, prose = [], ""
        for line in text.splitlines() + [""]:
            if line.strip() and not line[0].isspace():
                # A word broken at a line's end ("10-nearest-" / "neighbour") is joined again.
                joined = not prose or (prose.endswith("-") and not prose.endswith(" -"))
                prose += line.strip() if joined else " " + line.strip()
                continue
            if prose:
                lines += textwrap.wrap(prose, width, initial_indent=indent, subsequent_indent=indent,
                                       break_on_hyphens=False, break_long_words=False)
                prose = ""
            lines.append(line)
        return "\n".join(lines).strip("\n")


def parse_interval(text):
    """ "[1, inf)" -> (1.0, inf, True, False): the bounds and whether each is included."""
    match = re.fullmatch(r"([\[(])\s*(\S+)\s*,\s*(\S+)\s*([\])])", text)
    if match is None:
        raise ValueError(f"not an interval: {text!r}")
    opening, low, high, closing = match.groups()
    return float(low), float(high), opening == "[", closing == "]"


def describe_interval(text):
    """ "[1, inf)" -> ">= 1", "(0, 1)" -> "between 0 and 1 (both excluded)": the words of an error message."""
    low, high, low_closed, high_closed = parse_interval(text)
    if math.isinf(high):
        return f"{'>=' if low_closed else '>'} {low:g}"
    ends = {(True, True): "both included", (False, False): "both excluded",
            (True, False): f"{high:g} excluded", (False, True): f"{low:g} excluded"}[low_closed, high_closed]
    return f"between {low:g} and {high:g} ({ends})"


def in_interval(value, text):
    low, high, low_closed, high_closed = parse_interval(text)
    above = value >= low if low_closed else value > low
    below = value <= high if high_closed else value < high
    return above and below


def defaults(settings):
    """``{name: default}`` of a settings dict: what a run gets without flags."""
    return {name: default for name, (default, *_) in settings.items()}


def fixed_on_resume(settings):
    """The names of the settings marked ``FIXED``: those a run continued with --resume must keep."""
    return tuple(name for name, setting in settings.items() if FIXED in setting[2:])


def _unpack(setting):
    """(default, help, allowed or None, fixed on resume) of a settings tuple."""
    default, help_text, *rest = setting
    allowed = [item for item in rest if item != FIXED]
    return default, help_text, allowed[0] if allowed else None, FIXED in rest


def _help(help_text, default, fixed):
    """The help line with what a run gets without the flag: its default (none shown where the help says what an
    unset value means) and, for a script that can resume, whether --resume keeps it fixed."""
    notes = [] if default is None or default == "" or default == [] else [
        "default: " + ({True: "on", False: "off"}[default] if isinstance(default, bool) else str(default))]
    if fixed:
        notes.append(FIXED)
    # argparse %-formats help lines: a % in a default must be doubled (the help texts double their own).
    return f"{help_text} ({'; '.join(notes).replace('%', '%%')})" if notes else help_text


def _metavar(name, default, allowed):
    """What --help writes after a flag: {the, words} a text setting may be, DIR, PATH, TEXT, INT or FLOAT."""
    if allowed is not None and isinstance(default, str):
        return "{" + ",".join(word for word in allowed if word) + "}"
    if isinstance(default, (int, float)):
        return type(default).__name__.upper()
    if name.endswith("_dir"):
        return "DIR"
    return "PATH" if not default or "/" in default else "TEXT"


def parse(settings, description, argv=None):
    """Turn a script's settings dict into flags and parse ``argv`` (default: the command line)."""
    parser = _OneLineParser(description=description, formatter_class=_HelpFormatter)
    resumable = "resume" in settings  # "fixed on resume" means nothing to a script that cannot resume
    for name, setting in settings.items():
        default, help_text, allowed, fixed = _unpack(setting)
        flag, help_text = "--" + name.replace("_", "-"), _help(help_text, default, fixed and resumable)
        if isinstance(default, bool):
            parser.add_argument(flag, default=default, action=argparse.BooleanOptionalAction, help=help_text)
        elif isinstance(default, list):  # a list of whole numbers: --classes 3 8
            parser.add_argument(flag, default=default, nargs="*", type=int, help=help_text, metavar="N")
        elif isinstance(default, str) and allowed:  # one of a few words: argparse names them on a bad value
            parser.add_argument(flag, default=default, choices=allowed, help=help_text,
                                metavar=_metavar(name, default, allowed))
        else:
            parser.add_argument(flag, default=default, type=str if default is None else type(default),
                                help=help_text, metavar=_metavar(name, default, allowed))
    args = parser.parse_args(argv)
    for name, setting in settings.items():
        default, _, allowed, _ = _unpack(setting)
        if isinstance(default, bool) or not isinstance(default, (int, float, list)):
            continue
        interval = allowed or DEFAULT_INTERVAL
        value = getattr(args, name)
        values = value if isinstance(value, list) else [value]
        if not all(math.isfinite(v) and in_interval(v, interval) for v in values):
            raise UserError(f"--{name.replace('_', '-')} must be {describe_interval(interval)}, got {value}")
    return args


def as_flag(name, value):
    """How a setting's value is spelled on the command line: ``--latent-dim 64``, ``--no-minibatch-std``."""
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else "--no-" + flag[2:]
    if isinstance(value, list):
        return " ".join([flag, *map(str, value)])
    return f"{flag} {value}"


# What Ctrl-C leaves behind, in words that hold for the step the run is in: common/run_folder.py and
# common/checkpoints.py keep it current (a run opened, a checkpoint saved, a step that writes nothing until it ends);
# run() prints it. "kept" is what is kept alone, without the script's own next command: run_all.py, which runs the
# scripts' mains and has a next command of its own, says it with that.
_interruption = {"while": None, "then": "rerun the same command to start again", "kept": None}


def reset_interruption():
    """A new run or stage begins: nothing in progress, nothing kept yet (an earlier one's interrupted step, in the
    same process, says nothing about it)."""
    _interruption.update({"while": None, "then": "rerun the same command to start again", "kept": None})


def on_interrupt(then, kept=None):
    """From now on, Ctrl-C tells the user ``then``: what is kept and how to go on; ``kept``: the first half alone
    (None where nothing is)."""
    _interruption["then"], _interruption["kept"] = then, kept


@contextlib.contextmanager
def step_without_saving(description):
    """Within the block, Ctrl-C says that the run was stopped while ``description`` (a step that saves nothing
    until it ends, such as training the cached classifier)."""
    outer = _interruption["while"]
    _interruption["while"] = description
    try:
        yield
    except KeyboardInterrupt:
        raise  # run() prints the description on its way out
    except BaseException:
        _interruption["while"] = outer
        raise
    _interruption["while"] = outer


def run_script(script, *flags):
    """Run another of the six scripts as its own process, as a user would type it, with ``flags``; its output goes to
    the console as it comes. Ctrl-C meanwhile says how to finish it; a failure is one line naming the command."""
    command = [sys.executable, str(Path(__file__).resolve().parent.parent / script), *map(str, flags)]
    typed = shlex.join(["python", script, *map(str, flags)])
    outer = _interruption["then"]
    on_interrupt(f"finish it first with {typed} --resume, then rerun this command")
    if subprocess.run(command).returncode != 0:
        raise UserError(f"{typed} failed (its error is above): run it by hand to see why")
    on_interrupt(outer)


def interruption_message(where="", then=None):
    """What Ctrl-C says now: "interrupted[ where][ while the step]: what is kept; how to go on". ``then``: another
    way on than the script's own (run_all.py's), said after what is kept."""
    during = f" while {_interruption['while']}" if _interruption["while"] else ""
    if then is None:
        return f"interrupted{where}{during}: {_interruption['then']}"
    kept = _interruption["kept"]
    return f"interrupted{where}{during}: {kept + '; ' if kept else ''}{then}"


def run(main):
    """Call ``main()`` as a command: user errors become one line on stderr and exit code 2; Ctrl-C exits with 130
    and one line saying what was kept (every file is written atomically) and how to go on. The line also ends the
    run's log.txt, where the run has begun one (common/run_folder.py). Under torchrun every process reports its own
    error (it may be its own, such as a missing GPU), and rank 0 alone speaks for the run on Ctrl-C."""
    try:
        main()
    except UserError as error:
        _say(f"error: {error}")
        sys.exit(2)
    except KeyboardInterrupt:
        if os.environ.get("RANK", "0") == "0":
            _say(interruption_message(), start="\n" if sys.stderr.isatty() else "")  # the progress bar's line
        sys.exit(130)


def _say(text, start=""):
    line = f"{sys.argv[0]}: {text}"
    print(f"{start}{line}", file=sys.stderr)
    log = getattr(sys.stdout, "log_only", None)  # the console's copy in log.txt (run_folder.open_run)
    if log is not None:
        log(line + "\n")
