"""PyTorch-GAN's gan.py against gan_mnist.py for the same wall time, both judged by the project's MNIST classifier.

The baseline re-implements eriklindernoren/PyTorch-GAN implementations/gan/gan.py faithfully: generator
100-128-256-512-1024-784 (LeakyReLU 0.2, BatchNorm1d(eps=0.8) as its `BatchNorm1d(out_feat, 0.8)` sets, no batch norm
on the first layer, Tanh), discriminator 784-512-256-1 with LeakyReLU 0.2 and a Sigmoid, nn.BCELoss, Adam 2e-4 with
betas (0.5, 0.999) for both, batch 64, G updated before D on each batch as there. One change, in its favour: batches
come from the same uint8 tensor as ours instead of a DataLoader with per-image PIL transforms, so it gets more steps
in the same time. Its samples are drawn as its script draws them, in training mode (batch norm with the statistics of
each batch of 64). Ours is gan_mnist.py with its defaults. Both clocks count the training steps only: ours stops
after each epoch's steps (its train_seconds), the baseline's while it is measured.

    python bench/gan_mnist_vs_pytorch_gan.py --data-dir ../shared/data
    python bench/gan_mnist_vs_pytorch_gan.py --data-dir ../shared/data --device cuda

Writes to outputs/bench_gan_mnist/: samples.png (100 digits of each side by side), quality.png (the numbers against
wall time), results.json; ours' own run goes to outputs/bench_gan_mnist/ours/.
"""
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import gan_mnist  # noqa: E402
from common import classifier, cli, data, devices, files, gan, plots, progress, run_folder, seeds  # noqa: E402
from common.plots import plt  # noqa: E402

SETTINGS = {
    **cli.BASE_SETTINGS,
    **classifier.MNIST_SETTINGS,
    "our_epochs": (0, "epochs of gan_mnist.py (0: its default); the baseline trains for the same wall time"),
    "measure_every": (60.0, "seconds of baseline training between quality measurements"),
}

LATENT_DIM = 100


class BaselineGenerator(nn.Module):
    """PyTorch-GAN gan.py's generator, layer for layer."""

    def __init__(self):
        super().__init__()

        def block(in_feat, out_feat, normalize=True):
            layers = [nn.Linear(in_feat, out_feat)]
            if normalize:
                layers.append(nn.BatchNorm1d(out_feat, 0.8))  # 0.8 is eps (the second argument), as in the original
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            return layers

        self.config = dict(latent_dim=LATENT_DIM)
        self.model = nn.Sequential(*block(LATENT_DIM, 128, normalize=False), *block(128, 256), *block(256, 512),
                                   *block(512, 1024), nn.Linear(1024, 784), nn.Tanh())

    def forward(self, z):
        return self.model(z).view(len(z), 1, 28, 28)


class BaselineDiscriminator(nn.Module):
    """PyTorch-GAN gan.py's discriminator, layer for layer."""

    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(nn.Linear(784, 512), nn.LeakyReLU(0.2, inplace=True), nn.Linear(512, 256),
                                   nn.LeakyReLU(0.2, inplace=True), nn.Linear(256, 1), nn.Sigmoid())

    def forward(self, img):
        return self.model(img.view(len(img), -1))


@torch.no_grad()
def baseline_samples(generator, num_images, device, seed):
    """uint8 samples as gan.py makes them: in training mode, batches of 64 normalised by their own statistics."""
    generator.train()
    rng = torch.Generator(device=device).manual_seed(seed)
    images = [data.to_uint8(generator(torch.randn(64, LATENT_DIM, device=device, generator=rng)), -1, 1)
              for _ in range(-(-num_images // 64))]
    return torch.cat(images)[:num_images]


def run_baseline(cfg, device, seconds, quality):
    """Train for ``seconds`` of wall time; returns (generator, [(seconds, epoch, quality)] measured along the way)."""
    seeds.seed_everything(cfg.seed)
    train_images, _ = data.load_mnist(cfg.data_dir, train=True, device=device)
    generator, discriminator = BaselineGenerator().to(device), BaselineDiscriminator().to(device)
    adversarial_loss = nn.BCELoss()
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    elapsed, next_measurement, epoch, measurements = 0.0, cfg.measure_every, 0, []
    while elapsed < seconds:
        epoch += 1
        timer = progress.Timer(device)
        for index in seeds.shuffled_batches(len(train_images), 64, seeds.seed_epoch(cfg.seed, epoch), device):
            real_imgs = data.to_signed_range(train_images[index])
            valid = torch.ones(len(real_imgs), 1, device=device)
            fake = torch.zeros(len(real_imgs), 1, device=device)

            optimizer_g.zero_grad()
            gen_imgs = generator(torch.randn(len(real_imgs), LATENT_DIM, device=device))
            g_loss = adversarial_loss(discriminator(gen_imgs), valid)
            g_loss.backward()
            optimizer_g.step()

            optimizer_d.zero_grad()
            real_loss = adversarial_loss(discriminator(real_imgs), valid)
            fake_loss = adversarial_loss(discriminator(gen_imgs.detach()), fake)
            d_loss = (real_loss + fake_loss) / 2
            d_loss.backward()
            optimizer_d.step()

            if elapsed + timer.elapsed() >= min(seconds, next_measurement):
                elapsed += timer.elapsed()
                measurements.append((elapsed, epoch, quality(baseline_samples(generator, 10000, device, cfg.seed))))
                print(f"  baseline {elapsed:6.1f} s, epoch {epoch}: {summary(measurements[-1][2])}", flush=True)
                next_measurement += cfg.measure_every
                timer = progress.Timer(device)
                if elapsed >= seconds:
                    break
        else:
            elapsed += timer.elapsed()
    return generator, measurements


def summary(scores):
    return (f"FD {scores['frechet_distance']:7.2f}  IS {scores['inception_score']:.2f}  "
            f"rarest digit {100 * scores['min_class_share']:4.1f}%")


def plot_results(out, ours, baseline, our_history, baseline_measurements, our_seconds):
    figure, axes = plt.subplots(1, 2, figsize=(11, 5.6))
    plots.show_tiles(axes[0], data.to_unit_range(baseline), 10, "PyTorch-GAN gan.py")
    plots.show_tiles(axes[1], data.to_unit_range(ours), 10, "gan_mnist.py")
    figure.suptitle(f"100 random samples of each after {our_seconds:.0f} s of training")
    plots.save_figure(figure, out / "samples.png")

    our_time = torch.tensor(our_history["seconds"]).cumsum(0)
    our_time = [float(our_time[epoch - 1]) for epoch in our_history["quality_epoch"]]
    baseline_time = [seconds for seconds, _, _ in baseline_measurements]
    figure, (fd, share) = plt.subplots(1, 2, figsize=(11, 4))
    fd.plot(baseline_time, [scores["frechet_distance"] for _, _, scores in baseline_measurements], "o-",
            label="PyTorch-GAN gan.py")
    fd.plot(our_time, our_history["frechet_distance"], "o-", label="gan_mnist.py")
    fd.set(xlabel="training wall time (s)", ylabel="Frechet distance (lower is better)", yscale="log")
    share.plot(baseline_time, [100 * scores["min_class_share"] for _, _, scores in baseline_measurements], "o-",
               label="PyTorch-GAN gan.py")
    share.plot(our_time, [100 * value for value in our_history["min_class_share"]], "o-", label="gan_mnist.py")
    share.axhline(10, color="grey", linestyle=":", label="balanced")
    share.set(xlabel="training wall time (s)", ylabel="rarest digit's share of generated images (%)", ylim=(0, None))
    for axes in (fd, share):
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle("MLP GANs on MNIST against the test set in the project classifier's features "
                    "(baseline: 10k samples, ours: its 5k per epoch)")
    plots.save_figure(figure, out / "quality.png")


def main(argv=None):
    cfg = cli.parse(SETTINGS, __doc__, argv)
    device = devices.pick_device(cfg.device)
    out = run_folder.output_folder("bench_gan_mnist", cfg.out_dir)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    judge, _ = classifier.mnist_classifier(cfg.data_dir, device, cfg.classifier)
    test_images, _ = data.load_mnist(cfg.data_dir, train=False, device=device)
    real_features, _ = classifier.features_and_probabilities(judge, test_images)

    def quality(images):
        return classifier.sample_quality(judge, images.to(device), real_features)

    print("ours: gan_mnist.py with its defaults")
    flags = ["--out-dir", str(out / "ours"), "--device", cfg.device, "--seed", str(cfg.seed),
             "--classifier", cfg.classifier]
    flags += ["--data-dir", cfg.data_dir] if cfg.data_dir else []
    flags += ["--epochs", str(cfg.our_epochs)] if cfg.our_epochs else []
    our_metrics = gan_mnist.main(flags)
    our_generator, checkpoint = gan.load_generator(out / "ours" / "checkpoint.pt", device)
    seconds = our_metrics["train_seconds"]

    print(f"baseline: PyTorch-GAN gan.py for {seconds:.0f} s")
    baseline_generator, measurements = run_baseline(cfg, device, seconds, quality)
    baseline_final = measurements[-1][2]
    ours_final = quality(gan.generate(our_generator, 10000, device, seed=cfg.seed))

    plot_results(out, gan.generate(our_generator, 100, device, seed=1),
                 baseline_samples(baseline_generator, 100, device, seed=1), checkpoint["history"], measurements,
                 seconds)
    results = {"seconds": seconds, "baseline_epochs": measurements[-1][1], "our_epochs": our_metrics["epochs"],
               "baseline": baseline_final, "ours": ours_final}
    files.write_json(out / "results.json", results)
    print(f"\n{'after ' + format(seconds, '.0f') + ' s':22s}{'epochs':>8s}{'FD':>10s}{'IS':>8s}{'rarest digit':>14s}")
    for name, epochs, scores in [("PyTorch-GAN gan.py", measurements[-1][1], baseline_final),
                                 ("gan_mnist.py", our_metrics["epochs"], ours_final)]:
        print(f"{name:22s}{epochs:8d}{scores['frechet_distance']:10.2f}{scores['inception_score']:8.2f}"
              f"{100 * scores['min_class_share']:13.1f}%")
    print("digit shares (%), baseline: " + " ".join(f"{100 * s:.1f}" for s in baseline_final["class_shares"]))
    print("digit shares (%), ours:     " + " ".join(f"{100 * s:.1f}" for s in ours_final["class_shares"]))
    print(f"wrote {out}/")
    return results


if __name__ == "__main__":
    cli.run(main)
