"""Settings and command-line flags, the same for every script.

Each script keeps its settings in one visible dict, ``name: (default, help)``, and calls ``parse``. Every setting
becomes a flag spelled the same way in every script (``batch_size`` -> ``--batch-size``); the flag's type is the
default's type (a list default takes several whole numbers). Unknown flags and bad values stop the script with one line on stderr and exit code 2.
"""
import argparse
import sys

# Flags every script accepts.
BASE_SETTINGS = {
    "data_dir": (None, "folder with MNIST/, FashionMNIST/, cifar10-jpeg/ "
                       "(default: $GENMODELS_DATA, else ./data, downloaded there if absent)"),
    "out_dir": (None, "where config.json, metrics.json, figures and checkpoints go (default: outputs/<script>)"),
    "device": ("auto", "auto | cpu | cuda | mps; auto picks a GPU when one is present"),
    "seed": (0, "seed for every random choice: two CPU runs with the same seed print the same numbers"),
}

# Flags every script that trains a model accepts; scripts override the defaults they need.
TRAINING_SETTINGS = {
    **BASE_SETTINGS,
    "epochs": (10, "passes over the training set; 0 loads the checkpoint and only evaluates and samples"),
    "batch_size": (128, "training examples per optimizer step"),
    "limit": (0, "train on the first N training examples only (0: all)"),
    "resume": (False, "continue from the checkpoint in the output folder instead of starting over"),
    "num_samples": (0, "also write N generated images to samples.npz (key 'images', uint8)"),
}


class UserError(Exception):
    """A problem the user can fix (a flag, a path, a file): shown as one line, exit code 2, no traceback."""


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(f"{message} (see --help)")


def parse(settings, description, argv=None):
    """Turn a script's settings dict into flags and parse ``argv`` (default: the command line)."""
    parser = _OneLineParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, (default, help_text) in settings.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, default=default, action=argparse.BooleanOptionalAction, help=help_text)
        elif isinstance(default, list):  # a list of whole numbers: --classes 3 8
            parser.add_argument(flag, default=default, nargs="*", type=int, help=help_text, metavar="N")
        else:
            kind = str if default is None else type(default)
            parser.add_argument(flag, default=default, type=kind, help=f"{help_text} [{default}]",
                                metavar=kind.__name__.upper())
    args = parser.parse_args(argv)
    for name, (default, _) in settings.items():
        value = getattr(args, name)
        # Every numeric setting is a count, a size or a rate: none has a meaningful negative value.
        values = value if isinstance(value, list) else [value]
        if isinstance(default, (int, float, list)) and not isinstance(default, bool) and any(v < 0 for v in values):
            raise UserError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    return args


def run(main):
    """Call ``main()`` as a command: user errors become one line on stderr and exit code 2."""
    try:
        main()
    except UserError as error:
        print(f"{sys.argv[0]}: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("\ninterrupted: rerun with --resume to continue from the last finished epoch", file=sys.stderr)
        sys.exit(130)
