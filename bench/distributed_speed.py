"""Training throughput of one process against several under torchrun, side by side on the same machine.

On a CPU: 1 process with 2 threads against 2 processes with 1 thread each (torchrun, gloo), the two ways to spend a
2-core machine. With --device cuda: 1 process on one GPU against one process per GPU (torchrun, nccl). Each script
trains the same images with the same global batch in both set-ups. Seconds per epoch are measured as a user waits
for them, from the whole command's wall time, without its start-up, data loading and final evaluation: (time of a
run of 1 + EXTRA epochs - time of a run of 1 epoch) / EXTRA. The per-epoch test evaluation of vae_mnist.py is
inside that time (every process evaluates); the GAN scripts measure quality only after the last epoch here.

    python bench/distributed_speed.py --data-dir ../shared/data
    python bench/distributed_speed.py --data-dir ../shared/data --device cuda

Run folders go to outputs/bench_distributed_speed/. dcgan_cifar10.py uses the cached CIFAR-10 classifier
(outputs/classifiers/cifar10.pt), training it first if absent (minutes on a CPU, outside the timed difference).
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from common import cli  # noqa: E402

SETTINGS = {
    "data_dir": cli.BASE_SETTINGS["data_dir"],
    "device": ("cpu", "cpu (1 x 2 threads against 2 x 1) or cuda (1 GPU against all of them)", ("cpu", "cuda")),
    "extra_epochs": (2, "epochs beyond the first whose time is measured", "[1, inf)"),
}
# What each script trains (its --limit sets the images per epoch), with the flags that keep its evaluation short.
WORKLOADS = {
    "vae_mnist.py": ["--limit", "16384", "--iw-samples", "1"],
    "gan_mnist.py": ["--limit", "16384", "--quality-every", "0", "--quality-samples", "500", "--eval-images", "1000"],
    "dcgan_cifar10.py": ["--limit", "6400", "--quality-samples", "256", "--eval-images", "256"],
}


def wall_seconds(command, threads):
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def seconds_per_epoch(launcher, script, flags, threads, extra_epochs, out):
    times = [wall_seconds([*launcher, str(REPO / script), *flags, "--epochs", str(epochs),
                           "--out-dir", str(out / f"{epochs}_epochs")], threads)
             for epochs in (1, 1 + extra_epochs)]
    return (times[1] - times[0]) / extra_epochs


def main():
    cfg = cli.parse(SETTINGS, __doc__)
    if cfg.device == "cuda":
        processes = torch.cuda.device_count()
        if processes == 0:
            raise SystemExit("--device cuda: this machine has no GPU")
        set_ups = {"1 process, 1 GPU": ([sys.executable], 1),
                   f"{processes} processes, 1 GPU each": (torchrun(processes), 1)}
    else:
        set_ups = {"1 process x 2 threads": ([sys.executable], 2),
                   "2 processes x 1 thread": (torchrun(2), 1)}
    common = ["--device", cfg.device] + (["--data-dir", cfg.data_dir] if cfg.data_dir else [])
    root = REPO / "outputs" / "bench_distributed_speed"
    names = list(set_ups)
    print(f"{'script':18s}{'images':>8s}" + "".join(f"{name + ' (img/s)':>32s}" for name in names) + f"{'ratio':>8s}")
    for script, flags in WORKLOADS.items():
        images = int(flags[flags.index("--limit") + 1])
        speeds = [images / seconds_per_epoch(launcher, script, [*flags, *common], threads, cfg.extra_epochs,
                                             root / Path(script).stem / name.replace(" ", "_").replace(",", ""))
                  for name, (launcher, threads) in set_ups.items()]
        print(f"{script:18s}{images:8d}" + "".join(f"{speed:32.0f}" for speed in speeds) +
              f"{speeds[1] / speeds[0]:8.2f}", flush=True)


def torchrun(processes):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]


if __name__ == "__main__":
    main()
