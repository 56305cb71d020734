"""Settings and command-line flags, the same for every script, and how a script ends: one line on an error or Ctrl-C.

Each script keeps its settings in one dict, ``name: (default, help)`` or ``name: (default, help, allowed)``, and
calls ``parse``: ``batch_size`` becomes ``--batch-size``, of the default's type. ``allowed`` is the interval a number
must lie in ("[1, inf)", "(0, 1)"; >= 0 without it) or the words a text setting may be. A tuple ending in ``FIXED``
marks a setting that shapes the model, the data or the optimizer, which a run continued with --resume must keep.
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

FIXED = "fixed on resume"  # the marker that ends the tuple of a setting fixed on resume

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
}


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
        lines = []  # prose lines joined into paragraphs; indented (the example commands) and blank lines as written
        for line in text.strip("\n").splitlines():
            if lines and lines[-1][:1].strip() and line[:1].strip():
                broken = lines[-1].endswith("-") and not lines[-1].endswith(" -")  # "10-nearest-" / "neighbour"
                lines[-1] += line.strip() if broken else " " + line.strip()
            else:
                lines.append(line.rstrip() if line[:1].strip() else line)
        return "\n".join("\n".join(indent + part for part in self._split_lines(line, width - len(indent)))
                         if line[:1].strip() else line for line in lines)


def _check_interval(name, value, interval):
    """Refuse a number, or a list of them, outside ``interval``: "[1, inf)", "(0, 1)", ..."""
    opening, low, high, closing = re.fullmatch(r"([\[(])\s*(\S+)\s*,\s*(\S+)\s*([\])])", interval).groups()
    low, high, low_closed, high_closed = float(low), float(high), opening == "[", closing == "]"
    if all(math.isfinite(v) and (v >= low if low_closed else v > low) and (v <= high if high_closed else v < high)
           for v in (value if isinstance(value, list) else [value])):
        return
    if math.isinf(high):
        words = f"{'>=' if low_closed else '>'} {low:g}"
    else:
        ends = {(True, True): "both included", (False, False): "both excluded",
                (True, False): f"{high:g} excluded", (False, True): f"{low:g} excluded"}[low_closed, high_closed]
        words = f"between {low:g} and {high:g} ({ends})"
    raise UserError(f"{_flag(name)} must be {words}, got {value}")


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


def _metavar(name, default):
    """What --help writes after a flag that takes one value: INT, FLOAT, DIR, PATH or TEXT."""
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
        flag, help_text = _flag(name), _help(help_text, default, fixed and resumable)
        if isinstance(default, bool):
            kind = {"action": argparse.BooleanOptionalAction}
        elif isinstance(default, list):  # a list of whole numbers: --classes 3 8
            kind = {"nargs": "*", "type": int, "metavar": "N"}
        elif isinstance(default, str) and allowed:  # one of a few words: argparse names them on a bad value
            kind = {"choices": allowed, "metavar": "{" + ",".join(word for word in allowed if word) + "}"}
        else:
            kind = {"type": str if default is None else type(default), "metavar": _metavar(name, default)}
        parser.add_argument(flag, default=default, help=help_text, **kind)
    args = parser.parse_args(argv)
    for name, setting in settings.items():
        default, _, allowed, _ = _unpack(setting)
        if isinstance(default, (int, float, list)) and not isinstance(default, bool):
            # No count, size or rate here has a meaningful negative value.
            _check_interval(name, getattr(args, name), allowed or "[0, inf)")
    return args


def _flag(name):
    return "--" + name.replace("_", "-")


def flag_words(name, value):
    """How a setting's value is typed on the command line: ``["--latent-dim", "64"]``, ``["--no-minibatch-std"]``."""
    if isinstance(value, bool):
        return [_flag(name) if value else "--no-" + _flag(name)[2:]]
    return [_flag(name), *map(str, value if isinstance(value, list) else [value])]


def as_flag(name, value):
    """``flag_words`` as one string, for messages: ``--latent-dim 64``."""
    return " ".join(flag_words(name, value))


# What Ctrl-C leaves behind, in words that hold for the step the run is in, kept current by common/run_folder.py and
# common/checkpoints.py and printed by run(). "kept" is the same without the script's own next command, for
# run_all.py, which has a next command of its own.
_interruption = {"while": None, "then": "rerun the same command to start again", "kept": None}


def reset_interruption():
    """A new run or stage begins: nothing in progress or kept yet, whatever an earlier one in this process said."""
    _interruption.update({"while": None, "then": "rerun the same command to start again", "kept": None})


def on_interrupt(then, kept=None):
    """From now on, Ctrl-C says ``then``: what is kept and how to go on; ``kept``: the first half alone, or None."""
    _interruption["then"], _interruption["kept"] = then, kept


@contextlib.contextmanager
def step_without_saving(description):
    """Within the block, Ctrl-C says that the run was stopped while ``description``: a step that saves nothing until
    it ends, such as training the cached classifier."""
    outer, _interruption["while"] = _interruption["while"], description
    try:
        yield
    except KeyboardInterrupt:
        outer = description  # kept, for run() to print on the way out
        raise
    finally:
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
    kept = _interruption["kept"]
    way_on = _interruption["then"] if then is None else f"{kept + '; ' if kept else ''}{then}"
    return f"interrupted{where}{during}: {way_on}"


def run(main):
    """Call ``main()`` as a command: a user error is one line on stderr (and in log.txt) and exit code 2; Ctrl-C exits
    with 130 and one line saying what was kept and how to go on. Under torchrun every process reports its own error
    (such as a missing GPU), and rank 0 alone speaks for the run on Ctrl-C."""
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
