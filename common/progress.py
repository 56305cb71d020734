"""What a run shows while it works: progress bars, and wall-clock seconds that wait for the GPU."""
import time

import torch
from tqdm import tqdm

from common import distributed


def progress_bar(items, description):
    """A tqdm bar over ``items``, hidden where stderr is not a terminal (CI logs) and on all but the main process."""
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
