"""A fully connected GAN on MNIST that draws every digit, judged by a classifier the project trains itself.

The "simple GAN": an MLP generator and an MLP discriminator trained with the non-saturating loss (Goodfellow et al.
2014), D updated first on a real and a generated batch, then G. What keeps it from collapsing onto a few digit shapes,
as PyTorch-GAN's gan.py does here (bench/gan_mnist_vs_pytorch_gan.py): a minibatch standard-deviation feature in D,
one-sided label smoothing, a learning rate of 1e-3, and samples from an average of G's weights whose batch-norm
statistics are re-estimated (BENCHMARKS.md measures each). Quality is tracked in the features of the cached MNIST
classifier (common/classifier.py): Frechet distance, inception score and each digit's share of 10k generated images.
--fid inception adds the standard FID (common/fid.py; optional packages) against the 60k training images.

    python gan_mnist.py                                  # CPU: about 4.5 minutes on 2 cores
    python gan_mnist.py --device cuda --epochs 100       # GPU
    torchrun --standalone --nproc_per_node 4 gan_mnist.py --device cuda --epochs 100   # 4 GPUs (README)
    python gan_mnist.py --epochs 0 --num-samples 10000   # sample from the saved checkpoint, no training

Writes to outputs/gan_mnist/: losses.png, discriminator.png, grids/epoch_NNN.png, progress.png, quality.png,
samples.png, metrics.json, config.json, checkpoint.pt and, with --num-samples, samples.npz.
"""
import copy

import torch

from common import classifier, cli, data, distributed, fid, gan, plots, runs

SETTINGS = {
    # Shared with the other scripts (common/cli.py, classifier.py, fid.py): --data-dir, --out-dir, --device auto,
    # --seed 0, --limit 0, --resume, --num-samples 0, --classifier outputs/classifiers/mnist.pt, --fid none,
    # --fid-samples 50000. cli.FIXED marks a setting that --resume must keep: it shapes the networks, the data or its
    # order, or the optimizers' betas (--seed and --limit are fixed too).
    **cli.TRAINING_SETTINGS,
    **classifier.MNIST_SETTINGS,
    **fid.SETTINGS,
    "epochs": (11, "passes over the 60k training images (0: sample the saved checkpoint, no training); --resume "
                   "may add more"),
    "batch_size": (64, "real images per step (and as many generated ones)", "[1, inf)", cli.FIXED),
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
    "ema_decay": (0.999, "sample from an exponential moving average of G's weights with this decay (0: off)",
                  "[0, 1)", cli.FIXED),
    "quality_every": (1, "measure sample quality every N epochs and after the last (0: after the last only)"),
    "quality_samples": (5000, "generated images per quality measurement during training", "[2, inf)"),
    "eval_images": (10000, "generated and real test images behind the final quality numbers (10k, as for FID)",
                    "[2, 10000]"),
}
GRID_SIZE = 64  # fixed-noise images shown after every epoch, 8 x 8


def build_models(cfg, device):
    generator = gan.MLPGenerator(cfg.latent_dim, (cfg.g_width, 2 * cfg.g_width, 4 * cfg.g_width)).to(device)
    discriminator = gan.MLPDiscriminator(hidden=(cfg.d_width, cfg.d_width // 2),
                                         minibatch_std=cfg.minibatch_std).to(device)
    return generator, discriminator


def train(cfg, train_images, device, checkpoint_path, quality):
    """Train (or continue) G and D; checkpoint after every epoch. Returns (sampling generator, history)."""
    runs.seed_everything(cfg.seed)  # the initial weights are the seed's too
    distributed.check_batch_size(cfg.batch_size)
    generator, discriminator = build_models(cfg, device)
    average = copy.deepcopy(generator)  # the weight average samples come from (a copy of G while ema_decay is 0)
    fused = device.type in ("cpu", "cuda")
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, 0.999), fused=fused)
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, 0.999), fused=fused)
    checkpoint = gan.resume_or_start(checkpoint_path, cfg, "mlp", cli.fixed_on_resume(SETTINGS))
    history, first_epoch = gan.restore(checkpoint, generator, average, discriminator, optimizer_g, optimizer_d,
                                       (cfg.lr_g, cfg.lr_d))
    distributed.broadcast_parameters(generator, discriminator)  # under torchrun: the same start in every process
    fixed_noise = torch.randn(GRID_SIZE, cfg.latent_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(device)

    for epoch in range(first_epoch, cfg.epochs + 1):
        timer = runs.Timer(device)
        generator.train()
        discriminator.train()
        steps = []  # per step: D loss, G loss, mean D(x), mean D(G(z)); kept on the device, no sync per step
        batches = runs.progress(distributed.shard(data.shuffled_batches(len(train_images), cfg.batch_size,
                                                                        runs.seed_epoch(cfg.seed, epoch), device)),
                                epoch, cfg.epochs)
        for index in batches:
            real = data.to_signed_range(train_images[index])                      # B x 1 x 28 x 28 in [-1, 1]
            fake = generator(torch.randn(len(real), cfg.latent_dim, device=device))

            # (1) Update D: maximise log D(x) + log(1 - D(G(z))). G's output is detached: this step moves D only.
            real_logits = discriminator(real)
            fake_logits = discriminator(fake.detach())
            loss_d = gan.discriminator_loss(real_logits, fake_logits, cfg.real_label)
            optimizer_d.zero_grad(set_to_none=True)
            loss_d.backward()
            distributed.average_gradients(discriminator)  # under torchrun; why not DDP: common/distributed.py
            optimizer_d.step()

            # (2) Update G: maximise log D(G(z)) under the D just updated (the non-saturating loss). D's weights need
            # no gradient here: skipping them saves a third of D's backward pass.
            discriminator.requires_grad_(False)
            loss_g = gan.generator_loss(discriminator(fake))
            optimizer_g.zero_grad(set_to_none=True)
            loss_g.backward()
            distributed.average_gradients(generator)
            optimizer_g.step()
            discriminator.requires_grad_(True)
            if distributed.is_main():
                gan.update_average(average, generator, cfg.ema_decay)

            steps.append(torch.stack([loss_d, loss_g, torch.sigmoid(real_logits).mean(),
                                      torch.sigmoid(fake_logits).mean()]).detach())
        steps = distributed.mean(torch.stack(steps))  # every process's losses: the global batch's
        gan.check_losses(steps, epoch, checkpoint_path)
        gan.record_steps(history, steps)
        distributed.average_buffers(generator, discriminator)
        if not distributed.is_main():
            continue
        gan.recalibrate_batch_norm(average, device)
        with torch.no_grad():
            history["grids"].append(data.to_uint8(average(fixed_noise), -1, 1))
        if (cfg.quality_every and epoch % cfg.quality_every == 0) or epoch == cfg.epochs:
            gan.record_quality(history, epoch, quality(average, cfg.quality_samples))
        history["seconds"].append(timer.elapsed())
        runs.save_checkpoint(checkpoint_path, "gan", architecture="mlp", generator=generator.state_dict(),
                             generator_config=generator.config, generator_ema=average.state_dict(),
                             discriminator=discriminator.state_dict(), discriminator_config=discriminator.config,
                             optimizer_g=optimizer_g.state_dict(), optimizer_d=optimizer_d.state_dict(),
                             epoch=epoch, history=history, settings=vars(cfg))
        print(gan.epoch_summary(history, epoch, cfg.epochs), flush=True)
    return average.eval(), history


def plot_figures(history, generator, out, device):
    gan.plot_training(out, history, "MLP GAN on MNIST")
    samples = gan.generate(generator, 100, device, seed=1)
    plots.save_grid(out / "samples.png", data.to_unit_range(samples), 10, "New digits: G(z), z ~ N(0, I)")


def judged_quality(cfg, device):
    """``quality(generator, num_images)``: the quality numbers of that many samples in the cached classifier's eyes,
    against the test images; and the classifier's test accuracy."""
    test_images, _ = data.load_mnist(cfg.data_dir, train=False, device=device, limit=cfg.eval_images)
    judge, judge_accuracy = classifier.mnist_classifier(cfg.data_dir, device, cfg.classifier)
    real_features, _ = classifier.features_and_probabilities(judge, test_images)

    def quality(generator, num_images):
        return classifier.sample_quality(judge, gan.generate(generator, num_images, device, seed=cfg.seed).to(device),
                                         real_features)
    return quality, judge_accuracy


def main(argv=None):
    cfg = cli.parse(SETTINGS, __doc__, argv)
    device = runs.pick_device(cfg.device)
    # Loaded first: a missing package or missing weights stops the run now, not after the training.
    fid_metric = fid.load_metric(device) if cfg.fid == "inception" else None
    out = runs.output_folder(__file__, cfg.out_dir)
    checkpoint_path = out / "checkpoint.pt"
    runs.write_json(out / "config.json", vars(cfg))
    if cfg.epochs == 0:
        generator, checkpoint = gan.load_generator(checkpoint_path, device)
        history = checkpoint["history"]
    # Rank 0 alone judges the samples, during training too: under torchrun the other processes only train.
    quality, judge_accuracy = judged_quality(cfg, device) if distributed.is_main() else (None, None)
    if cfg.epochs or fid_metric is not None:
        train_images, _ = data.load_mnist(cfg.data_dir, train=True, device=device, limit=cfg.limit)
    if cfg.epochs:
        generator, history = train(cfg, train_images, device, checkpoint_path, quality)
    if not distributed.is_main():
        return None

    plot_figures(history, generator, out, device)
    metrics = gan.final_metrics(quality(generator, cfg.eval_images), history, judge_accuracy)
    if fid_metric is not None:
        metrics.update(gan.inception_fid(fid_metric, generator, train_images, cfg.fid_samples, device, cfg.seed + 3))
    runs.write_json(out / "metrics.json", metrics)
    gan.print_metrics(metrics, range(10))

    if cfg.num_samples:
        runs.write_samples(out / "samples.npz", gan.generate(generator, cfg.num_samples, device, seed=cfg.seed + 1))
    print(f"wrote {out}/")
    return metrics


if __name__ == "__main__":
    cli.run(main)
