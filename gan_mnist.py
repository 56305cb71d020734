"""A fully connected GAN on MNIST that draws every digit, judged by a classifier the project trains itself.

The "simple GAN": an MLP generator and an MLP discriminator trained with the non-saturating loss (Goodfellow et al.
2014), D updated first on a real and a generated batch, then G. What keeps it from collapsing onto a few digit shapes,
as PyTorch-GAN's gan.py does here (bench/gan_mnist_vs_pytorch_gan.py): a minibatch standard-deviation feature in D,
one-sided label smoothing, a learning rate of 1e-3, and samples from an average of G's weights, warmed up over the
first steps, whose batch-norm statistics are re-estimated (BENCHMARKS.md measures each). Quality is judged in the
features of the cached MNIST classifier (common/classifier.py): Frechet distance, inception score and each digit's
share, of 5k samples against the first 5k training images after each epoch (in the first epochs G itself is sampled
where it beats its average there), and of 10k against the 10k test images at the end. --fid inception adds the
standard FID (common/fid.py; optional weights) against the 60k training images. train_step below is the algorithm;
the epoch loop around it (resume, the weight average, checkpoints, quality tracking) is common/gan.py's train, shared
with dcgan_cifar10.py.

    python gan_mnist.py                                  # CPU: about 3.5 minutes on 2 cores
    python gan_mnist.py --device cuda --epochs 100       # GPU
    torchrun --standalone --nproc_per_node 4 gan_mnist.py --device cuda --epochs 100   # 4 GPUs (README)
    python gan_mnist.py --epochs 0 --num-samples 10000   # sample from the saved checkpoint, no training

Writes to outputs/gan_mnist/: losses.png, discriminator.png, grids/epoch_NNN.png, progress.png, quality.png,
samples.png, metrics.json, config.json, checkpoint.pt and, with --num-samples, samples.npz.
"""
import functools

import torch

from common import classifier, cli, data, distributed, fid, gan, plots, runs

SETTINGS = {
    # Shared with the other scripts (common/cli.py, classifier.py, fid.py): --data-dir, --out-dir, --device auto,
    # --seed 0, --overwrite, --limit 0, --resume, --num-samples 0, --tensorboard,
    # --classifier outputs/classifiers/mnist.pt, --fid none, --fid-samples 50000, --inception-weights.
    # cli.FIXED marks a setting that --resume must keep: it shapes the networks, the data or its order, or the
    # optimizers' betas (--seed and --limit are fixed too).
    **cli.TRAINING_SETTINGS,
    **classifier.MNIST_SETTINGS,
    **fid.SETTINGS,
    "epochs": (11, "passes over the 60k training images (0: sample the saved checkpoint, no training); --resume "
                   "may add more"),
    "batch_size": (64, "real images per step (and as many generated ones); G's batch norm needs 2 or more per process",
                   "[2, inf)", cli.FIXED),
    "latent_dim": (64, "size of z", "[1, inf)", cli.FIXED),
    "g_width": (256, "generator hidden layers: g_width, 2 g_width, 4 g_width units", "[1, inf)", cli.FIXED),
    "d_width": (512, "discriminator hidden layers: d_width, d_width / 2 units", "[2, inf)", cli.FIXED),
    "lr_g": (1e-3, "Adam learning rate of G (2e-4, the usual GAN rate, needs about three times the epochs); a "
                   "resumed run takes the new rate", "(0, inf)"),
    "lr_d": (1e-3, "Adam learning rate of D; a resumed run takes the new rate", "(0, inf)"),
    "beta1": (0.5, "Adam beta1 of both networks (beta2 = 0.999), as in Radford et al. 2016", "[0, 1)", cli.FIXED),
    "real_label": (0.9, "target for real images in D's loss; below 1 is one-sided label smoothing", "(0, 1]",
                   cli.FIXED),
    "minibatch_std": (True, "give D the batch's feature spread as one more input (Karras et al. 2018)", cli.FIXED),
    "ema_decay": (0.999, "sample from an exponential moving average of G's weights with this decay, reached by a "
                         "warm-up of (1+t)/(10+t) at step t (0: from G itself)", "[0, 1)", cli.FIXED),
    "quality_every": (1, "measure sample quality every N epochs and after the last (0: after the last only)"),
    "quality_samples": (5000, "generated images per quality measurement during training, against as many of the "
                               "first training images (more than the classifier's features, so that their covariance "
                               "is not singular)", f"[{classifier.MIN_IMAGES}, 60000]"),
    "eval_images": (10000, "generated and real test images behind the final quality numbers (10k, as for FID)",
                    f"[{classifier.MIN_IMAGES}, 10000]"),
}


def build(cfg, device):
    """G, D and their Adam optimizers, from the flags."""
    generator = gan.MLPGenerator(cfg.latent_dim, (cfg.g_width, 2 * cfg.g_width, 4 * cfg.g_width)).to(device)
    discriminator = gan.MLPDiscriminator(hidden=(cfg.d_width, cfg.d_width // 2),
                                         minibatch_std=cfg.minibatch_std).to(device)
    fused = device.type in ("cpu", "cuda")  # one kernel for the whole Adam update
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, 0.999), fused=fused)
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, 0.999), fused=fused)
    return generator, discriminator, optimizer_g, optimizer_d


def train_step(generator, discriminator, optimizer_g, optimizer_d, images, cfg):
    """One step of Goodfellow et al.'s Algorithm 1 on a batch of uint8 training images; returns
    gan.step_statistics (D loss, G loss, mean D(x), mean D(G(z))), on the device."""
    real = data.to_signed_range(images)                                    # B x 1 x 28 x 28 in [-1, 1]
    fake = generator(torch.randn(len(real), cfg.latent_dim, device=real.device))

    # (1) Update D: maximise log D(x) + log(1 - D(G(z))). G's output is detached: this step moves D only.
    real_logits = discriminator(real)
    fake_logits = discriminator(fake.detach())
    loss_d = gan.discriminator_loss(real_logits, fake_logits, cfg.real_label)
    gan.optimizer_step(optimizer_d, loss_d, discriminator)

    # (2) Update G: maximise log D(G(z)) under the D just updated (the non-saturating loss). D's weights need no
    # gradient here: skipping them saves a third of D's backward pass.
    discriminator.requires_grad_(False)
    loss_g = gan.generator_loss(discriminator(fake))
    gan.optimizer_step(optimizer_g, loss_g, generator)
    discriminator.requires_grad_(True)
    return gan.step_statistics(loss_d, loss_g, real_logits, fake_logits)


def plot_figures(history, generator, out, device):
    gan.plot_training(out, history, "MLP GAN on MNIST", "training images")
    samples = gan.generate(generator, 100, device, seed=1)
    plots.save_grid(out / "samples.png", data.to_unit_range(samples), 10, "New digits: G(z), z ~ N(0, I)")


def judges(cfg, device):
    """``tracked(generator)`` and ``final(generator)``: the quality numbers of samples in the cached classifier's eyes,
    during training against the first --quality-samples training images (which pick the generator to sample, in
    common/gan.py), at the end against --eval-images test images, with other z; and the classifier's test accuracy."""
    judge, judge_accuracy = classifier.mnist_classifier(cfg.data_dir, device, cfg.classifier)
    features = {}
    for name, train, count in [("tracked", True, cfg.quality_samples), ("final", False, cfg.eval_images)]:
        images, _ = data.load_mnist(cfg.data_dir, train=train, device=device, limit=count)
        features[name], _ = classifier.features_and_probabilities(judge, images)
    tracked = functools.partial(gan.sample_quality, judge, real_features=features["tracked"], device=device,
                                seed=cfg.seed)
    final = functools.partial(gan.sample_quality, judge, real_features=features["final"], device=device,
                              seed=cfg.seed + 2)
    return tracked, final, judge_accuracy


def main(argv=None):
    cfg = cli.parse(SETTINGS, __doc__, argv)
    device = runs.pick_device(cfg.device)
    if cfg.epochs:  # batch norm in G normalises over each process's share of a batch: a share of 1 has no spread
        distributed.check_batch_size(cfg.batch_size, per_process=2)
        if 0 < cfg.limit < 2 * distributed.world_size():
            raise cli.UserError(f"--limit {cfg.limit} leaves fewer than 2 training images per process, and batch "
                                f"norm in G needs at least 2 in a batch: pass --limit {2 * distributed.world_size()} "
                                f"or more")
    # Loaded first: a missing package or missing weights stops the run now, not after the training.
    fid_network = fid.load_network(cfg.inception_weights, device) if cfg.fid == "inception" else None
    out = runs.open_run(__file__, cfg, device, checkpoint="checkpoint.pt", sample_shape=(1, 28, 28))
    checkpoint_path = out / "checkpoint.pt"
    if cfg.epochs == 0:
        generator, checkpoint = gan.load_generator(checkpoint_path, device)
        if checkpoint["architecture"] != "mlp":
            raise cli.UserError(f"{checkpoint_path} holds a {checkpoint['architecture']} GAN, not the mlp GAN of "
                                f"gan_mnist.py: sample it with the script that trained it, or pass another --out-dir")
        history = checkpoint["history"]
    # Rank 0 alone judges the samples, during training too: under torchrun the other processes only train.
    tracked, final, judge_accuracy = judges(cfg, device) if distributed.is_main() else (None, None, None)
    train_images = None
    if cfg.epochs or fid_network is not None:
        train_images, _ = data.load_mnist(cfg.data_dir, train=True, device=device, limit=cfg.limit)
    if cfg.epochs:
        runs.seed_everything(cfg.seed)  # the initial weights are the seed's too
        networks = build(cfg, device)
        generator, history = gan.train(cfg, "mlp", cli.fixed_on_resume(SETTINGS), networks,
                                       functools.partial(train_step, *networks, cfg=cfg), train_images, device, out,
                                       tracked)
    if not distributed.is_main():
        return None
    runs.start_record()

    plot_figures(history, generator, out, device)
    metrics = gan.final_metrics(final(generator), history, judge_accuracy)
    return gan.report(metrics, generator, cfg, out, device, range(10), fid_network, train_images)


if __name__ == "__main__":
    cli.run(main)
