"""A fully connected GAN on MNIST that draws every digit, judged by a classifier the project trains itself.

The "simple GAN": an MLP generator and an MLP discriminator trained with the non-saturating loss (Goodfellow et al.
2014). main() below shows the whole algorithm: the networks (build), the step (train_step: D updated first on a real
and a generated batch, then G) and the epoch loop around it; each piece of bookkeeping (resume, the weight average,
the quality measurement, the epoch's grid, the checkpoint) is one call into common/. What keeps it from collapsing
onto a few digit shapes, as PyTorch-GAN's gan.py does here (bench/gan_mnist_vs_pytorch_gan.py): a minibatch
standard-deviation feature in D, one-sided label smoothing, a learning rate of 1e-3, and samples from an exponential
moving average of G's weights whose half-life grows with the images seen, its batch-norm statistics re-estimated
(common/weight_average.py; BENCHMARKS.md measures each). A run of at most 2,000 steps, such as a quick trial,
starts G's output layer as the training images' principal components (--pca-start auto), so that G draws blurred
digits from the first step. Quality is judged in the features of the cached MNIST classifier (common/classifier.py),
a network the project trains itself, named by its weights' hash in metrics.json: Frechet distance, inception score
and each digit's share, of 5k samples against the first 5k training images after each epoch, and of 10k against the
10k test images at the end, with other z. --fid inception adds the standard FID and KID (common/fid.py; optional
weights) of 10k samples against the 10k test images.

    python gan_mnist.py                                  # CPU: about 3.5 minutes on 2 cores
    python gan_mnist.py --device cuda --epochs 100       # GPU
    torchrun --standalone --nproc_per_node 4 gan_mnist.py --device cuda --epochs 100   # 4 GPUs (README)
    python gan_mnist.py --epochs 0 --num-samples 10000   # sample from the saved checkpoint, no training
    python gan_mnist.py --limit 2000 --epochs 2          # a quick trial: 64 steps, digit shapes already

Writes to outputs/gan_mnist/: losses.png, discriminator.png, grids/epoch_NNN.png, progress.png, quality.png,
samples.png, metrics.json, config.json, checkpoint.pt and, with --num-samples, samples.npz.
"""
import functools

import torch

from common import (checkpoints, classifier, cli, data, devices, distributed, fid, gan, mlp_gan, plots, progress,
                    run_folder, seeds, weight_average)

PCA_START_STEPS = 2000  # --pca-start auto: ahead after 938 and 1,876 steps, behind from 2,814 on (BENCHMARKS.md)
SETTINGS = {
    # Shared with the other scripts (common/cli.py, classifier.py, fid.py, weight_average.py): --data-dir,
    # --out-dir, --device auto, --seed 0, --overwrite, --limit 0, --resume, --num-samples 0,
    # --classifier outputs/classifiers/mnist.pt, --fid none, --fid-samples 10000, --fid-reference test,
    # --inception-weights, --ema-burn-in 1, --ema-rampup 0.1.
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
    "pca_start": ("auto", "start G's output layer as the training images' principal components, which draws blurred "
                          f"digits from the first step: auto does in runs of at most {PCA_START_STEPS:,} steps (a "
                          "quick trial), where it wins; a longer run ends worse with it (BENCHMARKS.md)",
                  ("auto", "on", "off"), cli.FIXED),
    "ema_half_life": (44000, "samples come from an exponential moving average of G's weights with this half-life "
                             "in images (0: G itself); about 0.999 per step of 64", "[0, inf)", cli.FIXED),
    **weight_average.SETTINGS,
    "quality_every": (1, "measure sample quality every N epochs and after the last (0: after the last only)"),
    "quality_samples": (5000, "generated images per quality measurement during training, against as many of the "
                               "first training images (more than the classifier's features, so that their covariance "
                               "is not singular)", f"[{classifier.MIN_IMAGES}, 60000]"),
    "eval_images": (10000, "generated and real test images behind the final quality numbers (10k, as for FID)",
                    f"[{classifier.MIN_IMAGES}, 10000]"),
}


def build(cfg, device):
    """G, D and their Adam optimizers, from the flags."""
    generator = mlp_gan.Generator(cfg.latent_dim, (cfg.g_width, 2 * cfg.g_width, 4 * cfg.g_width)).to(device)
    discriminator = mlp_gan.Discriminator(hidden=(cfg.d_width, cfg.d_width // 2),
                                         minibatch_std=cfg.minibatch_std).to(device)
    fused = device.type in ("cpu", "cuda")  # one kernel for the whole Adam update
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, 0.999), fused=fused)
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, 0.999), fused=fused)
    return generator, discriminator, optimizer_g, optimizer_d


def starts_as_principal_components(cfg, num_images):
    """Whether G's output layer starts as the images' principal components: --pca-start on, or auto in a run of at
    most PCA_START_STEPS steps."""
    steps = cfg.epochs * -(-num_images // cfg.batch_size)
    return cfg.pca_start == "on" or (cfg.pca_start == "auto" and steps <= PCA_START_STEPS)


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
    plots.plot_gan_training(out, history, "MLP GAN on MNIST", "training images")
    samples = gan.generate(generator, 100, device, seed=1)
    plots.save_grid(out / "samples.png", data.to_unit_range(samples), 10, "New digits: G(z), z ~ N(0, I)")


def judges(cfg, device):
    """``tracked(generator)`` and ``final(generator)``: the quality numbers of samples in the cached classifier's eyes,
    during training against the first --quality-samples training images, at the end against --eval-images test
    images, with other z; and the classifier's identity (common/classifier.py)."""
    judge, identity = classifier.mnist_classifier(cfg.data_dir, device, cfg.classifier)
    features = {}
    for name, train, count in [("tracked", True, cfg.quality_samples), ("final", False, cfg.eval_images)]:
        images, _ = data.load_mnist(cfg.data_dir, train=train, device=device, limit=count)
        features[name], _ = classifier.features_and_probabilities(judge, images)
    tracked = functools.partial(gan.sample_quality, judge, real_features=features["tracked"], device=device,
                                seed=cfg.seed)
    final = functools.partial(gan.sample_quality, judge, real_features=features["final"], device=device,
                              seed=cfg.seed + 2)
    return tracked, final, identity


def main(argv=None):
    cfg = cli.parse(SETTINGS, __doc__, argv)
    device = devices.pick_device(cfg.device)
    if cfg.epochs:  # batch norm in G normalises over each process's share of a batch: a share of 1 has no spread
        distributed.check_batch_size(cfg.batch_size, per_process=2)
        if 0 < cfg.limit < 2 * distributed.world_size():
            raise cli.UserError(f"--limit {cfg.limit} leaves fewer than 2 training images per process, and batch "
                                f"norm in G needs at least 2 in a batch: pass --limit {2 * distributed.world_size()} "
                                f"or more")
    # Loaded first: a missing package or missing weights stops the run now, not after the training.
    fid_network = fid.load_network(cfg.inception_weights, device) if cfg.fid == "inception" else None
    out = run_folder.open_run(__file__, cfg, device, checkpoint="checkpoint.pt", sample_shape=(1, 28, 28))
    checkpoint_path = out / "checkpoint.pt"
    if cfg.epochs == 0:  # sample the saved checkpoint: read first, a wrong file is one line before any work
        average, checkpoint = gan.load_generator(checkpoint_path, device, architecture="mlp")
        history = checkpoint["history"]
    # Rank 0 alone judges the samples, during training too: under torchrun the other processes only train.
    tracked, final, judge = judges(cfg, device) if distributed.is_main() else (None, None, None)
    train_images = None
    if cfg.epochs or (fid_network is not None and cfg.fid_reference == "train"):
        train_images, _ = data.load_mnist(cfg.data_dir, train=True, device=device, limit=cfg.limit)

    if cfg.epochs:
        seeds.seed_everything(cfg.seed)  # the initial weights are the seed's too
        generator, discriminator, optimizer_g, optimizer_d = build(cfg, device)
        if starts_as_principal_components(cfg, len(train_images)):  # a resumed run loads its weights over it
            mlp_gan.start_as_principal_components(generator, train_images, cfg.seed)
        average, history, first_epoch = gan.start(checkpoint_path, cfg, "mlp", cli.fixed_on_resume(SETTINGS),
                                                  generator, discriminator, optimizer_g, optimizer_d)
        noise = gan.fixed_noise(cfg, device)
        steps_per_epoch = -(-len(train_images) // cfg.batch_size)
        for epoch in range(first_epoch, cfg.epochs + 1):
            timer = progress.Timer(device)
            generator.train()
            discriminator.train()
            steps = []  # one row of statistics per step, kept on the device: no sync per step
            for step, index in enumerate(gan.batches(train_images, cfg, epoch, device),
                                         start=(epoch - 1) * steps_per_epoch):
                steps.append(train_step(generator, discriminator, optimizer_g, optimizer_d, train_images[index], cfg))
                weight_average.update(average, generator, weight_average.decay(step, cfg, len(train_images)))
            gan.record_epoch(history, steps, epoch, checkpoint_path, timer, generator, discriminator)
            if not distributed.is_main():
                continue
            weight_average.reestimate_batch_norm(average, device, seed=cfg.seed)
            if gan.quality_due(cfg, epoch):
                gan.record_quality(history, epoch, tracked(average))
            gan.save_grid(out, epoch, average, noise)
            checkpoints.save_checkpoint(checkpoint_path, "gan", **gan.checkpoint_state(
                "mlp", cfg, epoch, history, generator, average, discriminator, optimizer_g, optimizer_d))
            print(gan.epoch_summary(history, epoch, cfg.epochs), flush=True)
    if not distributed.is_main():
        return None
    run_folder.start_record()

    plot_figures(history, average, out, device)
    metrics = gan.final_metrics(final(average), history, judge)
    reference = reference_name = None
    if fid_network is not None:  # the real images the standard FID and KID compare with
        reference = train_images if cfg.fid_reference == "train" else data.load_mnist(cfg.data_dir, train=False)[0]
        reference_name = f"MNIST's {len(reference)} {cfg.fid_reference} images"
    return gan.report(metrics, average, cfg, out, device, range(10), fid_network, reference, reference_name)


if __name__ == "__main__":
    cli.run(main)
