"""Seconds per training step: dcgan_cifar10.py's step against a plain 64-filter DCGAN, side by side in one process.

The target ratio and the plain implementation's epoch time it comes from are in BENCHMARKS.md (DCGAN step speed).
On a shared machine absolute times mean little, so the two are timed in alternation, step by step, under the same load,
and the ratio of their median step times is what this prints. The plain step is pytorch/examples' dcgan/main.py with
its 64 x 64 layers cut to 32 x 32: Adam (not fused) at 2e-4, BCE on a Sigmoid output, G's fake batch reused for its
update, D's weights receiving gradients in G's step. Its generator starts at 4 x 64 channels ("plain-4x") or, as a
literal cut of the example, at 8 x 64 ("plain-8x"). Ours is the script's own train_step, batch flips and the weight
average included.

    python bench/dcgan_speed.py                      # CPU, one thread: OMP_NUM_THREADS=1 for a shared machine
    python bench/dcgan_speed.py --device cuda
"""
import copy
import statistics
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import dcgan_cifar10  # noqa: E402
from common import cli, data, dcgan, devices, progress, seeds, weight_average  # noqa: E402

SETTINGS = {
    **cli.BASE_SETTINGS,
    "steps": (12, "timed steps of each variant (after 3 untimed warm-up steps)"),
    "batch_size": (128, "images per step"),
}


def plain_generator(top):
    ngf = 64
    return nn.Sequential(
        nn.ConvTranspose2d(100, ngf * top, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * top), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * top, ngf * top // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * top // 2),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * top // 2, ngf * top // 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * top // 4),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * top // 4, 3, 4, 2, 1, bias=False), nn.Tanh())


def plain_discriminator():
    ndf = 64
    return nn.Sequential(
        nn.Conv2d(3, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, 1, 4, 1, 0, bias=False), nn.Sigmoid())


def plain_step_function(top, images, batch_size, device):
    """pytorch/examples' training step, as written there (real batches drawn from the uint8 tensor), and its weights'
    N(0, 0.02) initialisation (its weights_init is common/dcgan.py's init_weights); returns (step, generator)."""
    net_g, net_d = plain_generator(top).to(device), plain_discriminator().to(device)
    net_g.apply(dcgan.init_weights)
    net_d.apply(dcgan.init_weights)
    optimizer_g = torch.optim.Adam(net_g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizer_d = torch.optim.Adam(net_d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    criterion = nn.BCELoss()

    def step():
        real = data.to_signed_range(images[torch.randint(len(images), (batch_size,), device=device)])
        net_d.zero_grad()
        output = net_d(real).view(-1)
        error_real = criterion(output, torch.ones_like(output))
        error_real.backward()
        fake = net_g(torch.randn(batch_size, 100, 1, 1, device=device))
        output = net_d(fake.detach()).view(-1)
        error_fake = criterion(output, torch.zeros_like(output))
        error_fake.backward()
        optimizer_d.step()
        net_g.zero_grad()
        output = net_d(fake).view(-1)
        error_g = criterion(output, torch.ones_like(output))
        error_g.backward()
        optimizer_g.step()
    return step, net_g


def our_step_function(overrides, images, batch_size, device):
    """dcgan_cifar10.py's step with its default settings, changed by ``overrides``."""
    cfg = SimpleNamespace(**cli.defaults(dcgan_cifar10.SETTINGS))
    cfg.batch_size, cfg.contiguous = batch_size, False
    for name, value in overrides.items():
        setattr(cfg, name, value)
    generator, discriminator, optimizer_g, optimizer_d = dcgan_cifar10.build(cfg, device)
    autocast, memory_format = dcgan_cifar10.precision(device)
    if cfg.contiguous:
        memory_format = torch.contiguous_format
    generator.to(memory_format=memory_format)
    discriminator.to(memory_format=memory_format)
    average = copy.deepcopy(generator)
    beta = 0.5 ** (batch_size / cfg.ema_half_life)  # past the burn-in and the ramp-up

    def step():
        batch = images[torch.randint(len(images), (batch_size,), device=device)]
        dcgan_cifar10.train_step(generator, discriminator, optimizer_g, optimizer_d, batch, cfg, autocast,
                                 memory_format)
        weight_average.update(average, generator, beta)
    return step


def median_seconds_side_by_side(steps_a, steps_b, count, device):
    """Median seconds per step of two step functions run in alternation, after three warm-up steps each."""
    timer = progress.Timer(device)
    times_a, times_b = [], []
    for i in range(count + 3):
        for step, times in [(steps_a, times_a), (steps_b, times_b)]:
            start = timer.now()
            step()
            if i >= 3:
                times.append(timer.now() - start)
    return statistics.median(times_a), statistics.median(times_b)


def main(argv=None):
    cfg = cli.parse(SETTINGS, __doc__, argv)
    device = devices.pick_device(cfg.device)
    seeds.seed_everything(cfg.seed)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch {cfg.batch_size}")
    images = torch.randint(0, 256, (5000, 3, 32, 32), dtype=torch.uint8, device=device)  # speed does not see pixels
    ours = {
        "ours (default: 48 filters)": {},
        "ours, 64 filters": {"base_channels": 64},
        "ours, NCHW (contiguous)": {"contiguous": True},
        "ours, spectral norm": {"spectral_norm": True},
    }
    print(f"\n{'variant':30s}{'reference':>12s}{'ours ms':>10s}{'ref ms':>10s}{'ratio':>8s}")
    for name, overrides in ours.items():
        for top in (4, 8):
            plain, _ = plain_step_function(top, images, cfg.batch_size, device)
            our = our_step_function(overrides, images, cfg.batch_size, device)
            our_seconds, plain_seconds = median_seconds_side_by_side(our, plain, cfg.steps, device)
            ratio = our_seconds / plain_seconds
            print(f"{name:30s}{f'plain-{top}x':>12s}{1000 * our_seconds:10.0f}{1000 * plain_seconds:10.0f}"
                  f"{ratio:8.3f}", flush=True)


if __name__ == "__main__":
    cli.run(main)
