"""A race at equal wall-clock time: dcgan_cifar10.py's default recipe against a plain DCGAN, over several seeds.

In one process, one after the other, each recipe trains for --minutes of training steps and is stopped every --every
minutes to be judged: --eval-samples generated images against as many CIFAR-10 test images (which neither recipe
trains on or chooses anything with; --reference train, to choose a recipe on, takes training images instead), by the Frechet distance in the features of the project's CIFAR-10 classifier
(common/classifier.py), and, with --fid inception, by the standard FID (common/fid.py). The judging is not counted as
training time, for either recipe. The table gives, at every point, each recipe's mean over the seeds and its range
(lowest to highest); "ahead" means the default's worst seed beats the plain recipe's best there.

- plain: pytorch/examples' dcgan recipe at 32 x 32 (bench/dcgan_speed.py's networks, ngf = ndf = 64, BCE, Adam 2e-4
  with beta1 0.5, batch 128, N(0, 0.02) weights, float32, no flips, no weight average), sampled as that example
  draws its samples: batch norm in training mode.
- default: dcgan_cifar10.py's train_step with its default settings, sampled as the script samples (the weight
  average, its batch-norm statistics re-estimated).
- --also "base_channels=64 lr_d=4e-4; loss=hinge": more variants of the default, each a set of the script's settings
  (separated by ";"), raced the same way.

    python bench/dcgan_race.py --data-dir ../shared/data                   # 2 CPU cores: about 55 minutes
    python bench/dcgan_race.py --data-dir DATA --device cuda --minutes 5 --every 1 --fid inception

Writes to outputs/bench_dcgan_race/: race.json (every measurement), quality_vs_time.png and samples.png (each
recipe's images at the end of the first seed's race).
"""
import copy
import itertools
import json
import os
import platform
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import dcgan_cifar10  # noqa: E402
import dcgan_speed  # noqa: E402  (bench/, beside this file)
import gpu_defaults_and_fid  # noqa: E402
from common import (batches, classifier, cli, data, devices, fid, files, gan, plots, progress, seeds,  # noqa: E402
                    weight_average)

SETTINGS = {
    **cli.BASE_SETTINGS,
    "out_dir": ("outputs/bench_dcgan_race", "where race.json and the figures go"),
    "classifier": classifier.CIFAR10_SETTINGS["classifier"],
    "minutes": (8.0, "training minutes of each recipe and seed", "(0, inf)"),
    "every": (2.0, "minutes of training between two measurements", "(0, inf)"),
    "seeds": (3, "seeds --seed .. --seed + N - 1, each racing every recipe", "[1, inf)"),
    "eval_samples": (10000, "generated images per measurement, against as many real ones",
                     f"[{classifier.MIN_IMAGES}, 10000]"),
    "reference": ("test", "the real images of the measurements: test (the reported race) or train (the first "
                          "--eval-samples training images: to choose a recipe on, without looking at the test "
                          "images)", ("test", "train")),
    "also": ("", "more variants of the default recipe, e.g. \"base_channels=64 lr_d=4e-4; loss=hinge\""),
    "baselines": (True, "race plain and default too (--no-baselines: the --also variants alone)"),
    "fid": ("none", "also the standard FID at every point (inception; slow on a CPU)", ("none", "inception")),
    "inception_weights": fid.SETTINGS["inception_weights"],
}


def parse_variants(text):
    """{"name": {setting: value}} from --also: "base_channels=64 lr_d=4e-4; loss=hinge", each value of its
    setting's type in dcgan_cifar10.SETTINGS."""
    defaults, variants = cli.defaults(dcgan_cifar10.SETTINGS), {}
    for variant in filter(None, (part.strip() for part in text.split(";"))):
        overrides = {}
        for assignment in variant.split():
            name, _, value = assignment.partition("=")
            if name not in defaults or not value:
                raise cli.UserError(f"--also: {assignment!r} is not SETTING=VALUE of a dcgan_cifar10.py setting "
                                    f"(e.g. base_channels=64)")
            kind = type(defaults[name])
            overrides[name] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
        variants[variant] = overrides
    return variants


def plain_recipe(images, device):
    """(one training step, sampler) of the plain DCGAN."""
    step, generator = dcgan_speed.plain_step_function(4, images, 128, device)
    return step, lambda count, seed: gpu_defaults_and_fid.plain_samples(generator, count, device)


def default_recipe(overrides, seed, images, device):
    """(one training step, sampler) of dcgan_cifar10.py's recipe with ``overrides``: its train_step on batches of a
    new random order every epoch, the weight average updated after every step, as the script's loop does."""
    cfg = SimpleNamespace(**{**cli.defaults(dcgan_cifar10.SETTINGS), **overrides, "seed": seed})
    networks = dcgan_cifar10.build(cfg, device)
    autocast, memory_format = dcgan_cifar10.precision(device)
    generator, average = networks[0], copy.deepcopy(networks[0])
    order = itertools.chain.from_iterable(
        batches.shuffled_batches(len(images), cfg.batch_size, seeds.seed_epoch(seed, epoch), device)
        for epoch in itertools.count(1))
    steps = itertools.count()

    def step():
        dcgan_cifar10.train_step(*networks, images[next(order)], cfg, autocast, memory_format)
        weight_average.update(average, generator, weight_average.decay(next(steps), cfg, len(images)))

    def sample(count, seed):
        weight_average.reestimate_batch_norm(average, device)
        return gan.generate(average, count, device, seed=seed)
    return step, sample


def race(step, sample, judge, cfg, device):
    """Train with ``step`` for cfg.minutes, judging ``sample``'s images every cfg.every minutes; returns one dict
    per measurement and the last samples."""
    points = np.arange(cfg.every, cfg.minutes + 1e-9, cfg.every) * 60
    measured, trained, steps = [], 0.0, 0
    for point in points:
        timer = progress.Timer(device)
        while trained + timer.elapsed() < point:
            step()
            steps += 1
        trained += timer.elapsed()
        images = sample(cfg.eval_samples, cfg.seed + 2).to(device)
        scores = judge(images)
        measured.append({"minutes": trained / 60, "steps": steps, **scores})
        print(f"    {trained / 60:5.2f} min  {steps:5d} steps  FD {scores['frechet_distance']:7.2f}"
              + (f"  FID {scores['fid_inception']:6.2f}" if "fid_inception" in scores else ""), flush=True)
    return measured, images[:64].cpu()


def summarise(results, names, every):
    """Per recipe and point: (minutes, mean FD, lowest, highest, mean steps) over the seeds."""
    table = {}
    for name in names:
        per_seed = np.array([[m["frechet_distance"] for m in run] for run in results[name]])
        steps = np.array([[m["steps"] for m in run] for run in results[name]])
        minutes = every * np.arange(1, per_seed.shape[1] + 1)
        table[name] = list(zip(minutes, per_seed.mean(0), per_seed.min(0), per_seed.max(0), steps.mean(0)))
    return table


def print_table(table, names, reference):
    print(f"\nFrechet distance to {reference} (classifier features), mean [lowest, highest] over seeds")
    print(f"{'minutes':>8s}" + "".join(f"{name[:30]:>34s}" for name in names))
    for row in range(len(table[names[0]])):
        cells = [table[name][row] for name in names]
        print(f"{cells[0][0]:8.1f}" + "".join(f"{mean:9.1f} [{low:6.1f}, {high:6.1f}] {steps:6.0f} st"
                                             for _, mean, low, high, steps in cells))
    plain = table.get("plain")
    for name in names[1:] if plain else []:
        ahead = [high < plain_low for (_, _, _, high, _), (_, _, plain_low, _, _) in zip(table[name], plain)]
        print(f"{name}: ahead of plain beyond the seed spread at {sum(ahead)} of {len(ahead)} points"
              + ("" if all(ahead) else " (not at minutes " + ", ".join(f"{table[name][i][0]:g}" for i, a in enumerate(ahead) if not a) + ")"))


def plot_race(path, table, results, names, reference, title):
    figure, axes = plots.plt.subplots(figsize=(7, 4.5), layout="constrained")
    for name, colour in zip(names, plots.plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        minutes, mean, low, high, _ = map(np.array, zip(*table[name]))
        axes.fill_between(minutes, low, high, color=colour, alpha=0.2)
        plots.plot_line(axes, minutes, mean, color=colour, label=f"{name} (mean, range over {len(results[name])} "
                                                                 f"seeds)")
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(plots.PlainLogFormatter())
    axes.yaxis.set_minor_formatter(plots.PlainLogFormatter(minor=True))
    axes.set_xlabel("training time (minutes; judging not counted)")
    axes.set_ylabel(f"Frechet distance to {reference} (lower is better)")
    axes.set_title(title)
    axes.legend()
    axes.grid(alpha=0.3)
    plots.save_figure(figure, path)


def plot_samples(path, samples, names):
    figure, grid = plots.plt.subplots(1, len(names), figsize=(4.5 * len(names), 4.9), layout="constrained",
                                      squeeze=False)
    for axes, name in zip(grid[0], names):
        plots.show_tiles(axes, data.to_unit_range(samples[name]), 8, name[:40])
    figure.suptitle("After the race (the first seed)")
    plots.save_figure(figure, path)


def main(argv=None):
    cfg = cli.parse(SETTINGS, __doc__, argv)
    if cfg.every > cfg.minutes:
        raise cli.UserError(f"--every {cfg.every} is longer than --minutes {cfg.minutes}: pass a shorter --every")
    variants = {**({"default": {}} if cfg.baselines else {}), **parse_variants(cfg.also)}
    if not variants:
        raise cli.UserError("--no-baselines races the --also variants alone: name at least one")
    device = devices.pick_device(cfg.device)
    fid_network = fid.load_network(cfg.inception_weights, device) if cfg.fid == "inception" else None
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_images, _ = data.load_cifar10(cfg.data_dir, train=True, device=device)
    if cfg.reference == "test":
        real_images, _ = data.load_cifar10(cfg.data_dir, train=False, device=device, limit=cfg.eval_samples)
    else:
        real_images = train_images[:cfg.eval_samples]
    judge_network, judge_identity = classifier.cifar10_classifier(cfg.data_dir, device, cfg.classifier)
    real_features, _ = classifier.features_and_probabilities(judge_network, real_images)

    def judge(images):
        scores = classifier.sample_quality(judge_network, images, real_features)
        if fid_network is not None:
            scores["fid_inception"] = fid.frechet_inception_distance(real_images, images, fid_network, device)
        return scores

    machine = torch.cuda.get_device_name() if device.type == "cuda" else f"{platform.machine()}, {os.cpu_count()} CPUs"
    print(f"{machine}, torch {torch.__version__}, {torch.get_num_threads()} threads; judge: the classifier "
          f"{judge_identity['weights_sha256']}")
    names = [*(["plain"] if cfg.baselines else []), *variants]
    results, samples = {name: [] for name in names}, {}
    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        for name in names:
            print(f"seed {seed}, {name}", flush=True)
            seeds.seed_everything(seed)
            if name == "plain":
                step, sample = plain_recipe(train_images, device)
            else:
                step, sample = default_recipe(variants[name], seed, train_images, device)
            measured, last = race(step, sample, judge, SimpleNamespace(**{**vars(cfg), "seed": seed}), device)
            results[name].append(measured)
            samples.setdefault(name, last)
            files.write_json(out / "race.json", {"machine": machine, "torch": torch.__version__,
                                                "threads": torch.get_num_threads(), "settings": vars(cfg),
                                                "variants": variants, "classifier": judge_identity,
                                                "results": results})
    table = summarise(results, names, cfg.every)
    print_table(table, names, f"{cfg.eval_samples} {cfg.reference} images")
    plot_race(out / "quality_vs_time.png", table, results, names, f"{cfg.eval_samples} {cfg.reference} images",
              f"DCGAN on CIFAR-10, equal training time ({machine})")
    plot_samples(out / "samples.png", samples, names)
    print(f"wrote {out}/")
    return json.loads((out / "race.json").read_text())


if __name__ == "__main__":
    cli.run(main)
