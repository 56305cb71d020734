"""A race at equal wall-clock time: dcgan_cifar10.py's default recipe against a plain DCGAN, over several seeds,
judged by the Inception KID.

In one process, first every recipe trains, one after the other, for --minutes of training steps (by default as long
as dcgan_cifar10.py's default run trains on 2 CPU cores), stopped every --every minutes to draw its samples and take
their classifier distance; then, with the training over, every point's samples are judged by Inception-v3. A machine
must be left alone during the first part only (its minutes decide how far each recipe gets); the Inception part's
numbers do not depend on the load. Everything is measured against the 10,000 CIFAR-10 test images, which neither
recipe trains on or chooses anything with (--reference train, to choose a recipe on, takes the first 10,000 training
images instead):

- the Inception KID (Binkowski et al. 2018, common/fid.py) of --kid-samples generated images, with its standard error
  (from disjoint fifths of the samples: conservative; the verdict weighs the seeds' range);
- the classifier distance: the Frechet distance of --eval-samples generated images to as many of those real images in
  the features of the project's CIFAR-10 classifier (common/classifier.py), a cheap second opinion;
- at the last point of each recipe's first seed only, the standard FID (and the KID) of --fid-samples generated images.

The judging is not counted as training time. The table gives, at every point, each recipe's mean KID over the seeds
and its range (lowest to highest); a recipe is ahead of another there when its worst seed beats the other's best.

- plain: pytorch/examples' dcgan recipe at 32 x 32 (bench/dcgan_speed.py's networks, ngf = ndf = 64, BCE, Adam 2e-4
  with beta1 0.5, batch 128, N(0, 0.02) weights, float32, no flips, no weight average), sampled as that example
  draws its samples: batch norm in training mode.
- default: dcgan_cifar10.py's train_step with its default settings, sampled as the script samples (the weight
  average, its batch-norm statistics re-estimated).
- --also "base_channels=64 lr_d=4e-4; loss=hinge": more variants of the default, each a set of the script's settings
  (separated by ";"), raced the same way.

It needs the original FID's Inception-v3 (docs/fid.md) and stops at the start without it. On 2 CPU cores Inception-v3
reads about 7 images a second, so the defaults take about 2.5 hours there: 68 minutes of training (2 recipes x 2 seeds x
17 minutes, the part to leave the machine alone for), then 14 KIDs of 1,000 samples (about 2.3 minutes each), 2 FIDs of
10,000 (about 23 minutes each; their first 1,000 samples give the other 2 KIDs) and seconds a point of sampling and
classifier distance; once more 23 minutes for the real images' Inception features unless outputs/fid_cache/ holds them.
The script prints its estimate at the start.

    python bench/dcgan_race.py --data-dir ../shared/data                   # 2 CPU cores: about 2.5 hours
    python bench/dcgan_race.py --data-dir DATA --device cuda --minutes 5 --every 1

Writes to outputs/bench_dcgan_race/: race.json (every measurement), quality_vs_time.png and samples.png (each
recipe's images at the end of the first seed's race).
"""
import collections
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
from common import classifier, cli, data, devices, fid, files, gan, plots, progress, seeds, weight_average  # noqa: E402

INCEPTION_IMAGES_PER_SECOND = 7.2  # Inception-v3 on 2 CPU cores: the rate behind the estimate printed at the start
REFERENCE_IMAGES = 10000  # the real images of the KID and FID: all the test images, or as many training images

SETTINGS = {
    **cli.BASE_SETTINGS,
    "out_dir": ("outputs/bench_dcgan_race", "where race.json and the figures go"),
    "classifier": classifier.CIFAR10_SETTINGS["classifier"],
    "minutes": (17.0, "training minutes of each recipe and seed (the default dcgan_cifar10.py run's on 2 CPU cores)",
                "(0, inf)"),
    "every": (4.25, "minutes of training between two measurements (4 points by default)", "(0, inf)"),
    "seeds": (2, "seeds --seed .. --seed + N - 1, each racing every recipe", "[1, inf)"),
    "kid_samples": (1000, "generated images per Inception KID, against the 10,000 real images (subsets of up to "
                          "1,000 of each)", "[2, inf)"),
    "fid_samples": (10000, "generated images for the FID (and their KID) at the last point of each recipe's first "
                           "seed, against the 10,000 real images; at least 2049 (below, the covariance of Inception's "
                           "2048 features is singular)", fid.SETTINGS["fid_samples"][2]),
    "eval_samples": (10000, "generated images per classifier distance, against as many real ones",
                     f"[{classifier.MIN_IMAGES}, {REFERENCE_IMAGES}]"),
    "reference": ("test", "the real images of the measurements: test (the 10,000 test images: the reported race) or "
                          "train (the first 10,000 training images: to choose a recipe on, without looking at the "
                          "test images)", ("test", "train")),
    "also": ("", "more variants of the default recipe, e.g. \"base_channels=64 lr_d=4e-4; loss=hinge\""),
    "baselines": (True, "race plain and default too (--no-baselines: the --also variants alone)"),
    "inception_weights": fid.SETTINGS["inception_weights"],
}
Row = collections.namedtuple("Row", "minutes kid low high distance steps")  # one point of the table, over the seeds


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
        seeds.shuffled_batches(len(images), cfg.batch_size, seeds.seed_epoch(seed, epoch), device)
        for epoch in itertools.count(1))
    steps = itertools.count()

    def step():
        dcgan_cifar10.train_step(*networks, images[next(order)], cfg, autocast, memory_format)
        weight_average.update(average, generator, weight_average.decay(next(steps), cfg, len(images)))

    def sample(count, seed):
        weight_average.reestimate_batch_norm(average, device)
        return gan.generate(average, count, device, seed=seed)
    return step, sample


def judge_function(cfg, inception, real_inception, device):
    """judge(images, fid_samples): the Inception KID of the first --kid-samples ``images``; with ``fid_samples``, also
    the FID and KID of that many, under "fid"."""
    def judge(images, fid_samples):
        generated = fid.inception_features(images[:max(cfg.kid_samples, fid_samples)], inception, device)
        # The KID's subsets of real images come from one seed, the same at every point and for every recipe.
        kid, _, kid_error = fid.kernel_inception_distance(real_inception, generated[:cfg.kid_samples])
        scores = {"kid_inception": kid, "kid_inception_standard_error": kid_error}
        if fid_samples:
            scores["fid"] = fid.fid_and_kid(real_inception, generated[:fid_samples])
        return scores
    return judge


def measurement_minutes(cfg):
    """The training minutes at which the race stops to judge: every --every minutes up to --minutes."""
    return np.arange(cfg.every, cfg.minutes + 1e-9, cfg.every)


def race(step, sample, distance, cfg, device, fid_samples=0):
    """Train with ``step`` for cfg.minutes, stopping every cfg.every minutes to draw ``sample``'s images and take
    their ``distance`` (the classifier's scores); returns one dict per point, the images each point keeps for the
    Inception judge (at the last point ``fid_samples`` of them, if more than --kid-samples) and the last samples."""
    points = measurement_minutes(cfg) * 60
    measured, kept, trained, steps = [], [], 0.0, 0
    for index, point in enumerate(points):
        timer = progress.Timer(device)
        while trained + timer.elapsed() < point:
            step()
            steps += 1
        trained += timer.elapsed()
        count = fid_samples if index == len(points) - 1 else 0
        images = sample(max(cfg.eval_samples, cfg.kid_samples, count), cfg.seed + 2).to(device)
        measured.append({"minutes": trained / 60, "steps": steps, **distance(images[:cfg.eval_samples])})
        kept.append((images[:max(cfg.kid_samples, count)].cpu(), count))
        print(f"    {trained / 60:5.2f} min  {steps:6d} steps  classifier distance "
              f"{measured[-1]['frechet_distance']:7.2f}", flush=True)
    return measured, kept, images[:64].cpu()


def judge_all(results, kept, judge):
    """Add the Inception judge's scores to every point of ``results`` ({recipe: [one run's points]}), from the images
    ``kept`` beside them."""
    for name, runs in results.items():
        for run, run_kept in zip(runs, kept[name]):
            for point, (images, fid_samples) in zip(run, run_kept):
                point.update(judge(images, fid_samples))
                print(f"{name[:40]:>40s} {point['minutes']:5.2f} min  KID x 10^3 {1000 * point['kid_inception']:6.2f}"
                      f" +- {1000 * point['kid_inception_standard_error']:.2f}" +
                      (f"  FID {point['fid']['fid_inception']:.2f} ({fid_samples} samples)" if fid_samples else ""),
                      flush=True)


def estimate(cfg, recipes):
    """The race's cost on 2 CPU cores, in words: its training time and the Inception-v3 passes of its judging."""
    points = len(measurement_minutes(cfg))
    images = recipes * (cfg.seeds * points * cfg.kid_samples + max(0, cfg.fid_samples - cfg.kid_samples))
    training, inception = recipes * cfg.seeds * cfg.minutes, images / INCEPTION_IMAGES_PER_SECOND / 60
    return (f"{recipes} recipes x {cfg.seeds} seeds x {cfg.minutes:g} minutes = {training:.0f} minutes of training; "
            f"Inception-v3 on {images:,} generated images ({points} KIDs of {cfg.kid_samples:,} per seed and recipe, "
            f"one FID of {cfg.fid_samples:,} per recipe): about {inception:.0f} minutes on 2 CPU cores. In all about "
            f"{(training + inception) / 60:.1f} hours there, and once {REFERENCE_IMAGES:,} real images more unless "
            f"their features are cached in {fid.CACHE_DIR}/")


def summarise(results, names, every):
    """Per recipe, a Row per point: the KID x 10^3 (mean, lowest, highest over the seeds), the mean classifier
    distance and the mean steps done."""
    table = {}
    for name in names:
        kid = 1000 * np.array([[m["kid_inception"] for m in run] for run in results[name]])
        distance = np.array([[m["frechet_distance"] for m in run] for run in results[name]])
        steps = np.array([[m["steps"] for m in run] for run in results[name]])
        minutes = every * np.arange(1, kid.shape[1] + 1)
        table[name] = [Row(*row) for row in zip(minutes, kid.mean(0), kid.min(0), kid.max(0), distance.mean(0),
                                                 steps.mean(0))]
    return table


def standing(rows, plain_rows):
    """Per point, a recipe against plain by the KID over the seeds: "ahead" where its worst seed beats plain's best,
    "behind" where plain's worst seed beats its best, else "within the spread"."""
    return ["ahead" if row.high < plain.low else "behind" if plain.high < row.low else "within the spread"
            for row, plain in zip(rows, plain_rows)]


def print_table(table, names, protocol):
    print(f"\nInception KID x 10^3 ({protocol}), mean [lowest, highest] over the seeds; classifier distance (mean); "
          f"steps (mean)")
    print(f"{'minutes':>8s}" + "".join(f"{name[:40]:>44s}" for name in names))
    for cells in zip(*(table[name] for name in names)):
        print(f"{cells[0].minutes:8.2f}" + "".join(f"{row.kid:8.2f} [{row.low:7.2f}, {row.high:7.2f}] "
                                                  f"{row.distance:7.1f} {row.steps:7.0f} st" for row in cells))
    plain = table.get("plain")
    for name in names[1:] if plain else []:
        where = standing(table[name], plain)
        minutes = {verdict: ", ".join(f"{row.minutes:g}" for row, said in zip(table[name], where) if said == verdict)
                   or "none" for verdict in ("behind", "within the spread")}
        print(f"{name}: ahead of plain beyond the seed spread at {where.count('ahead')} of {len(where)} points; plain "
              f"ahead beyond the spread at minutes: {minutes['behind']}; within the spread at minutes: "
              f"{minutes['within the spread']}")


def print_fids(results, names, protocol):
    print(f"\nFID ({protocol}) at the end of the first seed's race, with the KID x 10^3 of the same samples:")
    for name in names:
        end = results[name][0][-1]
        print(f"{name:>20s}: FID {end['fid']['fid_inception']:7.2f}  KID {1000 * end['fid']['kid_inception']:6.2f} +- "
              f"{1000 * end['fid']['kid_inception_standard_error']:.2f}  ({end['minutes']:.2f} minutes, "
              f"{end['steps']} steps)")


def plot_race(path, table, results, names, protocol, title):
    figure, axes = plots.plt.subplots(figsize=(7, 4.5), layout="constrained")
    for name, colour in zip(names, plots.plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        minutes, mean, low, high, _, _ = np.array(table[name]).T
        axes.fill_between(minutes, low, high, color=colour, alpha=0.2)
        plots.plot_line(axes, minutes, mean, color=colour, label=f"{name} (mean, range over {len(results[name])} "
                                                                 f"seeds)")
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(plots.PlainLogFormatter())
    axes.yaxis.set_minor_formatter(plots.PlainLogFormatter(minor=True))
    axes.set_xlabel("training time (minutes; judging not counted)")
    axes.set_ylabel(f"Inception KID x 10^3, lower is better\n({protocol})")
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
    names = [*(["plain"] if cfg.baselines else []), *variants]
    device = devices.pick_device(cfg.device)
    inception = fid.load_network(cfg.inception_weights, device)  # before anything else: the race needs it
    print(estimate(cfg, len(names)), flush=True)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_images, _ = data.load_cifar10(cfg.data_dir, train=True, device=device)
    if cfg.reference == "test":
        real_images, _ = data.load_cifar10(cfg.data_dir, train=False, device=device)
        real_name = f"the {len(real_images):,} test images"
    else:
        real_images = train_images[:REFERENCE_IMAGES]
        real_name = f"the first {len(real_images):,} training images"
    real_inception = fid.reference_features(real_images, inception, device)
    judge_network, judge_identity = classifier.cifar10_classifier(cfg.data_dir, device, cfg.classifier)
    real_features, _ = classifier.features_and_probabilities(judge_network, real_images[:cfg.eval_samples])
    judge = judge_function(cfg, inception, real_inception, device)

    machine = torch.cuda.get_device_name() if device.type == "cuda" else f"{platform.machine()}, {os.cpu_count()} CPUs"
    print(f"{machine}, torch {torch.__version__}, {torch.get_num_threads()} threads; judges: Inception-v3 (weights "
          f"sha1 {inception.digest[:16]}) and the classifier {judge_identity['weights_sha256']}")
    results, kept, samples = {name: [] for name in names}, {name: [] for name in names}, {}

    def save():
        files.write_json(out / "race.json", {"machine": machine, "torch": torch.__version__,
                                            "threads": torch.get_num_threads(), "settings": vars(cfg),
                                            "variants": variants, "reference": real_name,
                                            "inception": fid.IMPLEMENTATION, "inception_sha1": inception.digest,
                                            "classifier": judge_identity, "results": results})
    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        for name in names:
            print(f"seed {seed}, {name}", flush=True)
            seeds.seed_everything(seed)
            if name == "plain":
                step, sample = plain_recipe(train_images, device)
            else:
                step, sample = default_recipe(variants[name], seed, train_images, device)
            measured, run_kept, last = race(
                step, sample, lambda images: classifier.sample_quality(judge_network, images, real_features),
                SimpleNamespace(**{**vars(cfg), "seed": seed}), device,
                fid_samples=cfg.fid_samples if seed == cfg.seed else 0)
            results[name].append(measured)
            kept[name].append(run_kept)
            samples.setdefault(name, last)
            save()
    print("Training over; the Inception judge now (the machine may be used meanwhile)", flush=True)
    judge_all(results, kept, judge)
    save()
    table = summarise(results, names, cfg.every)
    print_table(table, names, f"{cfg.kid_samples:,} samples vs {real_name}")
    print_fids(results, names, f"{cfg.fid_samples:,} samples vs {real_name}")
    plot_race(out / "quality_vs_time.png", table, results, names, f"{cfg.kid_samples:,} samples vs {real_name}",
              f"DCGAN on CIFAR-10, equal training time ({machine})")
    plot_samples(out / "samples.png", samples, names)
    print(f"wrote {out}/")
    return json.loads((out / "race.json").read_text())


if __name__ == "__main__":
    cli.run(main)
