"""Files written atomically (to a temporary name, then renamed into place), so that an interrupted run never leaves a
half-written file behind; under torchrun by the main process alone."""
import csv
import json
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from common import distributed
from common.cli import UserError


def unwritable(path):
    """Why no folder could be created or written at ``path``, in words; None where one can. One look at each part of
    the path (another process, torchrun's main one, may be creating the folder meanwhile)."""
    for part in [path, *path.parents]:
        try:
            folder = stat.S_ISDIR(part.stat().st_mode)
        except OSError:  # absent (or under a file, which a later part shows)
            if not part.is_symlink():
                continue
            folder = False  # a link to nothing
        if folder:
            return None if os.access(part, os.W_OK | os.X_OK) else f"{part} is not writable"
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


def atomic_write(path, write):
    """Call ``write(temporary_path)``, then rename the result onto ``path`` (atomic on one filesystem)."""
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
    atomic_write(path, lambda temporary: Path(temporary).write_text(json.dumps(data, indent=2, default=str) + "\n"))


def check_samples_fit(folder, count, image_shape):
    """Refuse, before any work, a --num-samples whose samples.npz (uncompressed, at worst) ``folder`` cannot hold."""
    size = count * int(np.prod(image_shape))
    free = shutil.disk_usage(folder).free
    if size > free:
        raise UserError(f"--num-samples {count} needs up to {size / 1e9:.1f} GB for samples.npz ({count} images of "
                        f"{' x '.join(map(str, image_shape))} bytes) but {folder} has {free / 1e9:.1f} GB free: "
                        f"pass a smaller --num-samples")


def write_samples(path, batches, count):
    """Generated images as ``samples.npz``, as ``np.savez_compressed`` writes it (key ``images``, uint8, ``count`` x C
    x H x W), written batch by batch as ``batches`` come: memory holds one batch, never all of them."""
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


def write_csv(path, rows):
    """Rows of numbers as a CSV file with a header of every column any row has (blank where a row has none)."""
    columns = list(dict.fromkeys(column for row in rows for column in row))

    def write(temporary):
        with open(temporary, "w", newline="") as file:
            writer = csv.DictWriter(file, columns)
            writer.writeheader()
            writer.writerows(rows)
    atomic_write(path, write)
