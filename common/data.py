"""Datasets as uint8 tensors on the run's device, batched by slicing a random permutation: the airbench recipe
without its CUDA-only parts. Each dataset is decoded once; no training loop has a DataLoader or per-image PIL work."""
import hashlib
import itertools
import math
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import datasets, io
from torchvision.transforms.v2 import functional as TF

from common import distributed, files, progress
from common.cli import UserError

DATA_ENV = "GENMODELS_DATA"  # environment variable naming the data folder, like --data-dir
DEFAULT_DATA_DIR = Path("data")  # torchvision downloads here when neither --data-dir nor $GENMODELS_DATA is set
MNIST_LIKE = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CACHE_DIR = DEFAULT_DATA_DIR / "cache"  # decoded image folders; never inside a folder the user named
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")  # what load_image_folder reads, in any letter case
USER_ARRAYS = "N x 28 x 28 or N x 1 x 28 x 28, uint8 0..255 or float 0..1"  # what load_user_images reads


def data_folder(data_dir=None):
    """The folder to read from, and whether downloading into it is allowed: only the default ./data is, never the
    user's own copy (``--data-dir`` or ``$GENMODELS_DATA``), so nothing reaches for the network behind their back."""
    if data_dir or os.environ.get(DATA_ENV):
        return Path(data_dir or os.environ[DATA_ENV]), False
    return DEFAULT_DATA_DIR, True


def _torchvision_dataset(dataset_class, folder, train, may_download):
    """torchvision's ``dataset_class``, downloaded into ``folder`` first where that is allowed. Under torchrun the
    processes of a machine take turns (a file lock): the first downloads what is missing, the others then read it."""
    if not (may_download and distributed.launched_by_torchrun()):
        return dataset_class(folder, train=train, download=may_download)
    import fcntl  # POSIX only, like torchrun's multi-process runs
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".download.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return dataset_class(folder, train=train, download=may_download)


def load_mnist(data_dir=None, train=True, device="cpu", name="mnist", limit=0):
    """MNIST or Fashion-MNIST as (images, labels): uint8 N x 1 x 28 x 28 and int64 N, both on ``device``."""
    folder, may_download = data_folder(data_dir)
    dataset_class = MNIST_LIKE[name]
    raw = folder / dataset_class.__name__ / "raw"
    damaged = damaged_idx_file(raw, train)
    if damaged:
        again = ("delete it and rerun to download it again" if may_download else
                 f"replace it with a good copy: delete it, then python -c \"from torchvision import datasets; "
                 f"datasets.{dataset_class.__name__}('{folder}', download=True)\" downloads one")
        raise UserError(f"{damaged[0]} is damaged ({damaged[1]}): {again}")
    try:
        dataset = _torchvision_dataset(dataset_class, folder, train, may_download)
    except Exception as error:  # torchvision raises RuntimeError for missing files, URLError and others when offline
        hint = "it could not be downloaded" if may_download else "downloads go only to the default ./data"
        raise UserError(f"{dataset_class.__name__} not found in {raw} ({hint}: {error.__class__.__name__}); "
                        f"pass --data-dir DIR or set {DATA_ENV}=DIR, where DIR holds "
                        f"{dataset_class.__name__}/raw/*-ubyte") from None
    return dataset.data[:limit or None].unsqueeze(1).to(device), dataset.targets[:limit or None].to(device)


def damaged_idx_file(raw, train):
    """(path, why) for the first of a split's two MNIST files that is there but not whole; None where both are whole
    or absent (an absent file is torchvision's to report). An IDX file is a magic number (2051 images, 2049 labels),
    one big-endian int32 per dimension, then uint8 values: damage shows in its header, length or labels' range."""
    prefix = "train" if train else "t10k"
    images, labels = raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"
    counts = []
    for path, magic, trailing in [(images, 2051, (28, 28)), (labels, 2049, ())]:
        if not path.is_file():
            return None
        size, dimensions = path.stat().st_size, 1 + len(trailing)
        with open(path, "rb") as file:
            header = file.read(4 * (1 + dimensions))
        if len(header) < 4 * (1 + dimensions):
            return path, f"{size} bytes, shorter than its header"
        found = struct.unpack(f">{1 + dimensions}i", header)
        if found[0] != magic or tuple(found[2:]) != trailing:
            return path, f"not an IDX file of {'28 x 28 images' if trailing else 'labels'}: its header reads {found}"
        expected = len(header) + found[1] * math.prod(trailing)
        if size != expected:
            return path, f"{size} bytes where its header promises {expected}"
        counts.append(found[1])
    if counts[0] != counts[1]:
        return labels, f"{counts[1]} labels for {counts[0]} images"
    if labels.read_bytes()[8:].translate(None, bytes(range(10))):
        return labels, "labels outside 0 to 9"
    return None


def load_cifar10(data_dir=None, train=True, device="cpu", limit=0, log=print):
    """CIFAR-10 as (images, labels): uint8 N x 3 x 32 x 32 and int64 N, both on ``device``. Reads torchvision's
    ``cifar-10-batches-py/`` when present (or downloads it into the default ./data), else the image folder
    ``cifar10-jpeg/{train,test}/<class>/*.jpg``, decoded once (about 10 s for the 50k training images) and cached."""
    folder, may_download = data_folder(data_dir)
    split = folder / "cifar10-jpeg" / ("train" if train else "test")
    if (folder / datasets.CIFAR10.base_folder).is_dir() or (may_download and not split.is_dir()):
        try:
            dataset = _torchvision_dataset(datasets.CIFAR10, folder, train, may_download)
        except Exception as error:  # RuntimeError for missing or corrupt batches, URLError and others when offline
            hint = "it could not be downloaded" if may_download else "its checksums do not match the original files"
            raise UserError(f"CIFAR-10 not readable in {folder / datasets.CIFAR10.base_folder} ({hint}: "
                            f"{error.__class__.__name__}); pass --data-dir DIR holding the original "
                            f"{datasets.CIFAR10.base_folder}/ or cifar10-jpeg/<split>/<class>/*.jpg") from None
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # N x 32 x 32 x 3 -> N x 3 x 32 x 32
        labels = torch.tensor(dataset.targets, dtype=torch.int64)
    elif split.is_dir():
        images, labels = _read_image_folder(split, limit, log)
    else:
        raise UserError(f"CIFAR-10 not found in {folder} (downloads go only to the default ./data): pass --data-dir "
                        f"DIR or set {DATA_ENV}=DIR, where DIR holds {datasets.CIFAR10.base_folder}/ or "
                        f"cifar10-jpeg/{split.name}/<class>/*.jpg")
    return images[:limit or None].to(device), labels[:limit or None].to(device)


def _read_image_folder(split, limit, log):
    """``split/<class>/*.jpg``, in an order that interleaves the classes, decoded through the cache."""
    per_class = [sorted((split / name).glob("*.jpg")) for name in CIFAR10_CLASSES]
    empty = [name for name, paths in zip(CIFAR10_CLASSES, per_class) if not paths]
    if empty:
        raise UserError(f"no images in {split / empty[0]} ({len(empty)} of the 10 class folders are missing or empty): "
                        f"{split} must hold one folder of *.jpg images per CIFAR-10 class, airplane/ to truck/")
    # Round robin over the classes (the first image of each class, then the second, ...): the first N images, which
    # --limit keeps, then hold every class equally often, like the first N of torchvision's shuffled batches.
    order = [(label, path) for rank in itertools.zip_longest(*per_class)
             for label, path in enumerate(rank) if path is not None]
    times = [(split / name).stat().st_mtime_ns for name in CIFAR10_CLASSES]
    key = f"{split.resolve()}|{[len(paths) for paths in per_class]}|{times}"
    decoded = _through_cache(f"cifar10-jpeg-{split.name}", key, f"{len(order)} JPEG images in {split}",
                             lambda limit: _decode_jpegs(order[:limit or None]), limit, log)
    return decoded["images"], decoded["labels"]


def _through_cache(name, key, what, decode, limit, log):
    """``decode(limit)``, a dict of tensors, cached under ./data/cache by ``key``, which changes with the folder's
    contents; a quick trial (``limit``) decodes only what it keeps, and caches nothing."""
    cache = CACHE_DIR / f"{name}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.pt"
    if cache.exists():
        return torch.load(cache, weights_only=True)
    if limit:
        return decode(limit)
    log(f"decoding {what} once; cached in {cache}")
    decoded = decode(0)
    try:
        files.atomic_write(cache, lambda temporary: torch.save(decoded, temporary))
    except OSError as error:  # a read-only working folder costs the decoding time again, nothing else
        log(f"could not cache the decoded images in {cache} ({error.__class__.__name__})")
    return decoded


def _decode_jpegs(order):
    """(label, path) pairs -> {"images": uint8 N x 3 x 32 x 32, "labels": int64 N}; a damaged file is named."""
    contents = [path.read_bytes() for _, path in order]
    empty = next((path for (_, path), content in zip(order, contents) if not content), None)
    if empty:
        raise UserError(f"{empty} is empty (0 bytes), not a JPEG image: delete it or replace it with a good copy")
    encoded = [torch.frombuffer(bytearray(content), dtype=torch.uint8) for content in contents]
    try:
        decoded = io.decode_jpeg(encoded, mode=io.ImageReadMode.RGB)
    except RuntimeError:  # the batch decoder does not say which file failed: find it alone
        for (_, path), one in zip(order, encoded):
            try:
                io.decode_jpeg(one, mode=io.ImageReadMode.RGB)
            except RuntimeError as error:
                raise UserError(f"{path} is not a readable JPEG ({str(error).rsplit(', ', 1)[-1]}): delete it or "
                                f"replace it with a good copy") from None
        raise
    wrong = next((path for (_, path), image in zip(order, decoded) if image.shape != (3, 32, 32)), None)
    if wrong:
        raise UserError(f"{wrong} is not a 32 x 32 image: the image folder must hold CIFAR-10's 32 x 32 images")
    return {"images": torch.stack(decoded), "labels": torch.tensor([label for label, _ in order], dtype=torch.int64)}


def load_image_folder(folder, image_size, device="cpu", limit=0, log=print):
    """Every image under ``folder`` and its sub-folders as (uint8 N x 3 x image_size x image_size on ``device``, names
    of unreadable files skipped), decoded once and cached. The order is a fixed shuffle, so that the first ``limit``
    images, which a quick trial keeps, sample the whole folder rather than its first sub-folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"image folder {folder} not found: pass --data-dir DIR, where DIR holds your images "
                        f"({', '.join(IMAGE_SUFFIXES)}), in sub-folders or not")
    paths = sorted(path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())
    if not paths:
        raise UserError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {folder} or its sub-folders")
    paths = [paths[i] for i in torch.randperm(len(paths), generator=torch.Generator().manual_seed(0))]
    listing = [(str(path.relative_to(folder)), path.stat().st_size, path.stat().st_mtime_ns) for path in paths]
    key = f"{folder.resolve()}|{image_size}|{listing}"
    decoded = _through_cache(f"folder-{folder.resolve().name}-{image_size}px", key,
                             f"{len(paths)} images in {folder}, at {image_size} x {image_size}",
                             lambda limit: _decode_folder(folder, paths, image_size, limit), limit, log)
    images, skipped = decoded["images"], decoded["skipped"]
    if skipped:
        log(f"skipped {len(skipped)} unreadable file{'s' * (len(skipped) > 1)} in {folder}: "
            f"{', '.join(skipped[:3])}{', ...' if len(skipped) > 3 else ''}")
    return images[:limit or None].to(device), skipped


def _decode_folder(folder, paths, image_size, limit):
    """Decode ``paths`` (until ``limit`` images are readable, when set): {"images": uint8 tensor, "skipped": names}."""
    images, skipped = [], []
    for path in progress.progress_bar(paths, f"decoding {folder}"):
        try:
            image = _decode(path)
        except Exception:  # the decoders raise RuntimeError, OSError, ValueError and others for damaged files
            skipped.append(str(path.relative_to(folder)))
            continue
        images.append(resize_and_crop(image, image_size))
        if len(images) == limit:
            break
    if not images:
        raise UserError(f"none of the {len(paths)} image files in {folder} could be decoded "
                        f"(the first: {skipped[0]}): check that they are images")
    return {"images": torch.stack(images), "skipped": skipped}


def _decode(path):
    """One image file -> uint8 3 x H x W. torchvision decodes JPEG, PNG and WebP itself (in C, converting greyscale,
    palette and alpha to RGB); PIL, which torchvision installs, reads what it does not, such as BMP."""
    try:
        image = io.decode_image(io.read_file(str(path)), mode=io.ImageReadMode.RGB)
    except RuntimeError:
        with Image.open(path) as file:
            image = TF.pil_to_tensor(file.convert("RGB"))
    return TF.to_dtype(image, torch.uint8, scale=True)  # 16-bit PNGs decode to uint16


def load_user_images(path):
    """A user's own images as (ids, float N x 1 x 28 x 28 in [0, 1]): a .npy or .npz array (USER_ARRAYS; in an .npz
    the one named 'images' or its only one; ids 0, 1, ...) or a folder of PNG images (ids: the file names)."""
    path = Path(path)
    if path.is_dir():
        pngs = sorted(file for file in path.iterdir() if file.suffix.lower() == ".png" and file.is_file())
        if not pngs:
            raise UserError(f"no *.png images in {path}: expected a folder of 28 x 28 PNG images")
        return [file.name for file in pngs], torch.stack([_read_grey_png(file) for file in pngs])[:, None]
    if path.suffix not in (".npy", ".npz") or not path.is_file():
        raise UserError(f"--score {path}: expected an existing .npy or .npz file or a folder of PNG images")
    try:
        loaded = np.load(path, allow_pickle=False)
        if path.suffix == ".npz":
            keys = list(loaded.keys())
            if "images" not in keys and len(keys) != 1:
                raise UserError(f"{path} holds arrays {keys}: expected one array, or one named 'images'")
            loaded = loaded["images" if "images" in keys else keys[0]]
        array = np.asarray(loaded)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # an .npz is a zip archive
        raise UserError(f"{path} is not a readable numpy file ({error.__class__.__name__}): "
                        f"expected an array of {USER_ARRAYS}") from None
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3 or array.shape[1:] != (28, 28) or len(array) == 0:
        raise UserError(f"{path} holds an array of shape {array.shape}: expected {USER_ARRAYS}")
    expected, floating = "expected uint8 0..255 or float 0..1", np.issubdtype(array.dtype, np.floating)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):  # text, dates: no range to report
        raise UserError(f"{path} holds {array.dtype} values, not numbers: {expected}")
    if floating and not np.isfinite(array).all():
        # The one thing to fix: a range "from nan to nan" would hide which pixels are wrong.
        counts = {"NaN": int(np.isnan(array).sum()), "infinite": int(np.isinf(array).sum())}
        what = " and ".join(f"{count} {kind} value{'s' * (count > 1)}" for kind, count in counts.items() if count)
        raise UserError(f"{path} holds {what} among its {array.size} pixels: {expected}, every pixel a number")
    if array.dtype != np.uint8 and not (floating and 0 <= array.min() <= array.max() <= 1):
        raise UserError(f"{path} holds {array.dtype} values from {array.min()} to {array.max()}: {expected}")
    images = torch.from_numpy(array.astype(np.float32)) / (255 if array.dtype == np.uint8 else 1)
    return [str(i) for i in range(len(images))], images[:, None]


def _read_grey_png(file):
    """One PNG -> float 28 x 28 grey levels in [0, 1]. 8- and 16-bit greyscale keep their levels, each scaled by its
    own maximum; palette and colour images become grey as PIL converts them (ITU-R 601-2 luma). A transparent pixel
    has no grey level of its own, so an image with one is refused."""
    try:
        with Image.open(file) as image:
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):  # what PIL raises for damaged files
        raise UserError(f"{file} is not a readable PNG: expected 28 x 28 greyscale PNG images") from None
    if image.size != (28, 28):
        raise UserError(f"{file} is {image.size[0]} x {image.size[1]} pixels: expected 28 x 28")
    if image.mode in ("LA", "PA", "RGBA") or "transparency" in image.info:
        if np.asarray(image.convert("RGBA"))[..., 3].min() < 255:
            raise UserError(f"{file} has transparent pixels: expected opaque images, white digits on black as in MNIST")
    if image.mode.startswith("I"):  # 16-bit greyscale ("I;16", or "I" in older PIL)
        return torch.from_numpy(np.array(image, dtype=np.float32)) / 65535
    return to_unit_range(torch.from_numpy(np.array(image.convert("L"))))


def resize_and_crop(images, size):
    """uint8 images (C x H x W or N x C x H x W) -> short side resized to ``size`` (antialiased), centre cropped."""
    if images.shape[-2:] == (size, size):
        return images
    if images.dim() == 4 and len(images) > 1000:  # in chunks, which bounds the resize's working memory
        return torch.cat([resize_and_crop(chunk, size) for chunk in images.split(1000)])
    return TF.center_crop(TF.resize(images, size, antialias=True), [size, size])


def random_horizontal_flip(images):
    """Mirror a random half of a batch left to right, on the batch's own device (no per-image work)."""
    flip = torch.rand(len(images), device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def to_unit_range(images):
    """uint8 pixels -> floats in [0, 1] (the VAE's Bernoulli means)."""
    return images.float().div_(255)


def to_signed_range(images):
    """uint8 pixels -> floats in [-1, 1] (a GAN generator's Tanh range)."""
    return images.float().div_(127.5).sub_(1)


def to_uint8(images, low=0.0, high=1.0):
    """Floats in [low, high] -> uint8 pixels on the CPU, for samples.npz and image files."""
    scaled = (images.detach().float() - low) / (high - low)
    return scaled.clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
