"""A walk through a trained GAN's latent space: one digit morphing into another, by linear and spherical paths.

Loads the generator of a GAN checkpoint (gan_mnist.py's by default, trained first with its defaults if absent;
dcgan_cifar10.py's with --dcgan), picks pairs of latent vectors that the cached classifier reads as two different
classes (--classes A B fixes them), and generates the images between them along two paths: the straight line
(lerp) and the great circle (slerp). z ~ N(0, I) in d dimensions concentrates near the sphere of radius sqrt(d); the
midpoint of a straight line between two such vectors has only about 1/sqrt(2) of that norm, a region the generator
never saw in training, while slerp stays on the shell (White 2016, "Sampling generative networks").

    python latent_interpolation.py                              # CPU: seconds (plus gan_mnist.py once, if needed)
    python latent_interpolation.py --classes 1 7 --steps 16
    python latent_interpolation.py --dcgan --device cuda        # dcgan_cifar10.py's checkpoint

Writes to outputs/latent_interpolation/: strips/pair_N_{lerp,slerp}.png, grid.png, steps.png, norms.png,
metrics.json, config.json.
"""
from pathlib import Path

import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from common import classifier, cli, data, devices, distributed, files, gan, plots, run_folder
from common.plots import plt

MNIST_CHECKPOINT = Path("outputs/gan_mnist/checkpoint.pt")
DCGAN_CHECKPOINTS = (Path("outputs/dcgan_cifar10/best.pt"), Path("outputs/dcgan_cifar10/checkpoint.pt"))

SETTINGS = {
    # Shared with the other scripts (common/cli.py, classifier.py): --data-dir, --out-dir, --device auto, --seed 0,
    # --overwrite, --classifier outputs/classifiers/mnist.pt.
    **cli.BASE_SETTINGS,
    **classifier.MNIST_SETTINGS,
    "checkpoint": ("", f"GAN checkpoint to walk through (default {MNIST_CHECKPOINT}, trained first if absent)"),
    "dcgan": (False, f"walk through the generator dcgan_cifar10.py reports ({DCGAN_CHECKPOINTS[0]}) instead"),
    "cifar10_classifier": ("outputs/classifiers/cifar10.pt", "cached CIFAR-10 classifier, used with --dcgan"),
    # The upper bounds keep the figures readable and the pool in memory: grid.png has two rows per pair and one image
    # per step, and the pool's generated images are held at once (50,000 of 64 x 64 colour: 600 MB).
    "pairs": (4, "pairs of endpoints, each a different pair of classes (at most 20: two rows of grid.png each)",
              "[1, 20]"),
    "steps": (12, "images along each path, both endpoints included (at most 64: one row of grid.png)", "[2, 64]"),
    "classes": ([], "A B: every pair goes from class A to class B (default: random different classes)"),
    "pool": (2000, "latent vectors drawn to find endpoints the classifier reads confidently as each class (at most "
                   "50,000, held in memory at once)", "[2, 50000]"),
}
METHODS = ("lerp", "slerp")


def lerp(z0, z1, t):
    """(1 - t) z0 + t z1 for each t: the straight line, whose norm dips between two vectors of similar norm."""
    t = t.view(-1, 1)
    return (1 - t) * z0 + t * z1


def slerp(z0, z1, t):
    """Spherical interpolation (Shoemake 1985) of the directions, with the norm interpolated linearly.

    sin((1 - t) omega) / sin(omega) u0 + sin(t omega) / sin(omega) u1, omega the angle between the unit vectors
    u0, u1, moves along the great circle at constant speed; scaling by (1 - t)|z0| + t|z1| keeps the norm between
    the endpoints' norms (the plain formula on unnormalised vectors does so only approximately).
    """
    t = t.view(-1, 1)
    norm0, norm1 = z0.norm(), z1.norm()
    u0, u1 = z0 / norm0, z1 / norm1
    omega = torch.arccos((u0 * u1).sum().clamp(-1, 1))
    if omega < 1e-4:  # (nearly) the same direction: the great circle is the straight line
        direction = lerp(u0, u1, t)
        direction = direction / direction.norm(dim=1, keepdim=True)
    else:
        direction = (torch.sin((1 - t) * omega) * u0 + torch.sin(t * omega) * u1) / torch.sin(omega)
    return ((1 - t) * norm0 + t * norm1) * direction


def checkpoint_path(cfg, out):
    """The checkpoint to load; gan_mnist.py's default one is trained first (with its defaults) if absent."""
    if cfg.checkpoint:
        return Path(cfg.checkpoint)
    if cfg.dcgan:  # the generator dcgan_cifar10.py reports: best.pt, or the last epoch's for a folder of images
        for path in DCGAN_CHECKPOINTS:
            if path.exists():
                return path
        raise cli.UserError(f"no DCGAN checkpoint at {DCGAN_CHECKPOINTS[0]}: run dcgan_cifar10.py first, or pass "
                            f"--checkpoint PATH")
    if not MNIST_CHECKPOINT.exists():
        print(f"no GAN at {MNIST_CHECKPOINT}: training one with gan_mnist.py's defaults first", flush=True)
        data_dir = ["--data-dir", cfg.data_dir] if cfg.data_dir else []
        cli.run_script("gan_mnist.py", "--out-dir", MNIST_CHECKPOINT.parent, "--device", cfg.device, "--seed",
                       cfg.seed, "--classifier", cfg.classifier, *data_dir)
    return MNIST_CHECKPOINT


def load_judge(cfg, checkpoint, device):
    """The classifier for the generator's dataset and its class names; (None, None) where there is none."""
    if checkpoint["architecture"] == "mlp":
        judge, _ = classifier.mnist_classifier(cfg.data_dir, device, cfg.classifier)
        return judge, [str(digit) for digit in range(10)]
    if checkpoint["settings"]["dataset"] != "cifar10":
        print("note: the DCGAN was trained on a folder of images without CIFAR-10 classes: feature distances, "
              "predicted classes and --classes are skipped")
        return None, None
    judge, _ = classifier.cifar10_classifier(cfg.data_dir, device, cfg.cifar10_classifier)
    return judge, list(data.CIFAR10_CLASSES)


@torch.no_grad()
def pick_endpoints(generator, judge, cfg, device, num_classes):
    """(z0, z1, class0, class1) for each pair: latent vectors whose images the classifier reads most confidently as
    the pair's classes, each used once. Without a classifier, random pairs (classes None)."""
    latent_dim = generator.config["latent_dim"]
    rng = torch.Generator().manual_seed(cfg.seed)
    pool = torch.randn(cfg.pool, latent_dim, generator=rng).to(device)
    if judge is None:
        return [(pool[2 * i], pool[2 * i + 1], None, None) for i in range(cfg.pairs)]
    if cfg.classes:
        if len(cfg.classes) != 2:
            raise cli.UserError(f"--classes takes two class numbers like --classes 3 8, got {len(cfg.classes)}")
        first, second = cfg.classes
        if not (first < num_classes and second < num_classes):
            raise cli.UserError(f"--classes must name classes 0 to {num_classes - 1}, got {first} {second}")
    images = torch.cat([data.to_uint8(generator(chunk), -1, 1) for chunk in pool.split(1000)]).to(device)
    _, probabilities = classifier.features_and_probabilities(judge, images)
    predicted = probabilities.argmax(1)
    if cfg.classes:
        class_pairs = [(first, second)] * cfg.pairs
    else:
        # Different classes for the two ends of a pair, drawn from those the generator actually draws, each class only
        # as often as the pool holds images of it (every endpoint is a different image).
        left = torch.bincount(predicted, minlength=num_classes).tolist()
        order = torch.randperm(num_classes, generator=rng).tolist()
        class_pairs = []
        for pair in range(cfg.pairs):
            drawn = [c for c in order if left[c]]
            if len(drawn) < 2:
                raise cli.UserError(f"the {cfg.pool} generated images hold too few classes for {cfg.pairs} pairs: "
                                    f"raise --pool, lower --pairs or train the GAN longer")
            first, second = drawn[(2 * pair) % len(drawn)], drawn[(2 * pair + 1) % len(drawn)]
            left[first] -= 1
            left[second] -= 1
            class_pairs.append((first, second))
    used, endpoints = set(), []
    for first, second in class_pairs:
        chosen = []
        for wanted in (first, second):
            ranked = [i for i in probabilities[:, wanted].argsort(descending=True).tolist()
                      if i not in used and predicted[i] == wanted]
            if not ranked:
                raise cli.UserError(f"none of {cfg.pool} generated images reads as class {wanted}: "
                                    f"raise --pool or train the GAN longer")
            used.add(ranked[0])
            chosen.append(pool[ranked[0]])
        endpoints.append((chosen[0], chosen[1], first, second))
    return endpoints


@torch.no_grad()
def walk(generator, judge, endpoints, steps, device):
    """For each pair and method: the latent path, its images and their step sizes, predictions and norms."""
    t = torch.linspace(0, 1, steps, device=device)
    paths = []
    for z0, z1, class0, class1 in endpoints:
        pair = {"classes": (class0, class1)}
        for method, interpolate in zip(METHODS, (lerp, slerp)):
            z = interpolate(z0, z1, t)
            images = (generator(z) + 1) / 2                                      # steps x C x H x W in [0, 1]
            path = {"images": images, "norms": z.norm(dim=1).tolist(),
                    "pixel_steps": (images[1:] - images[:-1]).flatten(1).norm(dim=1).tolist()}
            if judge is not None:
                features, probabilities = classifier.features_and_probabilities(
                    judge, data.to_uint8(images).to(device))
                path["feature_steps"] = (features[1:] - features[:-1]).norm(dim=1).tolist()
                path["predicted"] = probabilities.argmax(1).tolist()
            pair[method] = path
        paths.append(pair)
    return paths


def pair_title(number, pair, names):
    class0, class1 = pair["classes"]
    return f"pair {number}" + (f": {names[class0]} to {names[class1]}" if names else "")


def plot_paths(paths, names, out):
    rows = []
    for number, pair in enumerate(paths, start=1):
        for method in METHODS:
            images = pair[method]["images"]
            plots.save_labelled_rows(out / "strips" / f"pair_{number}_{method}.png", [(method, images)],
                                     f"{pair_title(number, pair, names)}, {method}")
            # Each row says what it shows: the pair (pairs may share their classes), the path and, where a classifier
            # picked the ends, their classes.
            class0, class1 = pair["classes"]
            rows.append((f"pair {number}, {method}" + (f": {names[class0]} to {names[class1]}" if names else ""),
                         images))
    plots.save_labelled_rows(out / "grid.png", rows, "Latent interpolation: left endpoint to right endpoint, "
                                                     "linear (lerp) and spherical (slerp)")


def plot_steps(paths, names, out):
    """Per pair: pixel and classifier-feature distance between consecutive images, and the predicted class."""
    has_classes = "predicted" in paths[0]["lerp"]
    rows = 3 if has_classes else 1
    figure, all_axes = plt.subplots(rows, len(paths), figsize=(3.6 * len(paths), 2.6 * rows + 0.6), squeeze=False,
                                    sharex=True, layout="constrained")
    for column, (number, pair) in enumerate(zip(range(1, len(paths) + 1), paths)):
        axes = all_axes[:, column]
        for method, marker, offset in zip(METHODS, ("o", "s"), (-0.1, 0.1)):
            path = pair[method]
            steps = np.arange(1.5, len(path["pixel_steps"]) + 1.5)  # a step lies between images i and i + 1
            axes[0].plot(steps, path["pixel_steps"], marker=marker, markersize=3, label=method)
            if has_classes:
                axes[1].plot(steps, path["feature_steps"], marker=marker, markersize=3, label=method)
                # Shifted apart by a tenth of a class so that identical predictions of the two paths both show.
                axes[2].step(np.arange(1, len(path["predicted"]) + 1), np.array(path["predicted"]) + offset,
                             where="mid", marker=marker, markersize=3, label=method)
        axes[0].set_title(pair_title(number, pair, names))
        axes[0].set_ylabel("pixel distance" if column == 0 else None)
        if has_classes:
            axes[1].set_ylabel("feature distance" if column == 0 else None)
            axes[2].set(ylabel="predicted class" if column == 0 else None, yticks=range(len(names)))
            axes[2].set_yticklabels(names if column == 0 else [])
        axes[-1].set_xlabel("image along the path")
        for panel in axes:
            plots.style_axes(panel, epochs_from=None)
            panel.xaxis.set_major_locator(MaxNLocator(integer=True))
    # One legend for all panels, below them: inside, it would cover some panel's curves.
    figure.legend(*all_axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncols=2)
    figure.suptitle("How far each image moves from the one before it (pixels in [0, 1], L2; classifier features, L2)")
    plots.save_figure(figure, out / "steps.png")


def plot_norms(paths, out, latent_dim):
    figure, axes = plt.subplots(figsize=(6, 4))
    for number, pair in enumerate(paths, start=1):
        for method, style in zip(METHODS, ("-", "--")):
            norms = pair[method]["norms"]
            axes.plot(np.linspace(0, 1, len(norms)), norms, style, color=f"C{number - 1}",
                      label=f"pair {number}, {method}")
    axes.axhline(np.sqrt(latent_dim), color="grey", linestyle=":", label="sqrt(latent size)")
    axes.set(xlabel="t (position along the path)", ylabel="|z|",
             title="Latent norm along each path: lerp dips, slerp stays on the shell")
    plots.style_axes(axes, epochs_from=None)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    plots.save_figure(figure, out / "norms.png")


def summarise(paths):
    metrics = {}
    for method in METHODS:
        pixel = [step for pair in paths for step in pair[method]["pixel_steps"]]
        metrics[f"{method}_mean_step"] = float(np.mean(pixel))
        metrics[f"{method}_max_step"] = float(np.max(pixel))
        if "feature_steps" in paths[0][method]:
            feature = [step for pair in paths for step in pair[method]["feature_steps"]]
            metrics[f"{method}_mean_feature_step"] = float(np.mean(feature))
            metrics[f"{method}_max_feature_step"] = float(np.max(feature))
            metrics[f"{method}_label_changes"] = [
                int(sum(a != b for a, b in zip(pair[method]["predicted"], pair[method]["predicted"][1:])))
                for pair in paths]
        metrics[f"{method}_norms"] = [pair[method]["norms"] for pair in paths]
        # Lowest norm along a path relative to the smaller endpoint's: 1 means the path never leaves the shell.
        metrics[f"{method}_min_norm_ratio"] = min(min(pair[method]["norms"]) / min(pair[method]["norms"][0],
                                                                                  pair[method]["norms"][-1])
                                                  for pair in paths)
    return metrics


def main(argv=None):
    cfg = cli.parse(SETTINGS, __doc__, argv)
    if distributed.launched_by_torchrun():
        raise cli.UserError("latent_interpolation.py trains nothing and gains nothing from torchrun: run it as "
                            "python latent_interpolation.py")
    device = devices.pick_device(cfg.device)
    if cfg.steps < 2 or cfg.pairs < 1 or cfg.pool < 2 * cfg.pairs:
        raise cli.UserError(f"--steps must be >= 2, --pairs >= 1 and --pool >= 2 * pairs, got {cfg.steps}, "
                            f"{cfg.pairs} and {cfg.pool}")
    out = run_folder.open_run(__file__, cfg, device)
    path = checkpoint_path(cfg, out)
    generator, checkpoint = gan.load_generator(path, device, flag="--checkpoint")
    judge, names = load_judge(cfg, checkpoint, device)
    if cfg.classes and judge is None:
        raise cli.UserError("--classes needs a classifier for this dataset; drop --classes")

    endpoints = pick_endpoints(generator, judge, cfg, device, len(names) if names else 0)
    run_folder.start_record()
    paths = walk(generator, judge, endpoints, cfg.steps, device)
    plot_paths(paths, names, out)
    plot_steps(paths, names, out)
    plot_norms(paths, out, generator.config["latent_dim"])

    metrics = {"checkpoint": str(path), "pairs": [list(pair["classes"]) for pair in paths], "steps": cfg.steps,
               **summarise(paths)}
    files.write_json(out / "metrics.json", metrics)
    for method in METHODS:
        line = (f"{method:5s}  mean step {metrics[f'{method}_mean_step']:.2f}  "
                f"largest {metrics[f'{method}_max_step']:.2f}  "
                f"lowest norm / endpoint norm {metrics[f'{method}_min_norm_ratio']:.2f}")
        if f"{method}_label_changes" in metrics:
            line += f"  label changes per path {metrics[f'{method}_label_changes']}"
        print(line)
    print(f"wrote {out}/")
    return metrics


if __name__ == "__main__":
    cli.run(main)
