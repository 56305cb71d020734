"""DCGAN on CIFAR-10 or your own images, at 32 x 32 or 64 x 64: generated images beside real ones, judged by a
classifier the project trains itself.

The convolutional GAN of Radford et al. (2016) (common/dcgan.py) with their recipe, Adam at 2e-4 with beta1 0.5, z of
size 100, the non-saturating loss, but batches of 32 instead of 128: on a CPU, four times the steps at nearly the same
images per second reach a given quality in far less time (bench/dcgan_race.py races it against the plain recipe).
main() below shows the whole algorithm: the networks (build), the step (train_step: D updated first on a real and a
generated batch, then G) and the epoch loop around it; each piece of bookkeeping (resume, the weight average, the
quality measurement, the epoch's grid, the checkpoints) is one call into common/. Real images get random horizontal
flips, on the device. Samples come from an exponential moving average of G's weights whose half-life grows with the
images seen, its batch-norm statistics re-estimated (common/weight_average.py). Sample quality is tracked after every
epoch as the Frechet distance in the features of a small CIFAR-10 classifier the project trains itself
(common/classifier.py) to the first 5,000 training images, which G trains on, and the epoch with the lowest one is
kept as best.pt beside the last checkpoint: DCGAN is known to degrade late in training. The final numbers compare
10,000 samples with the 10,000 test images and other z, which the choice of epoch never saw. The other well-known
stabilisers are flags: --spectral-norm, --loss hinge, --lr-g/--lr-d (two time scales); BENCHMARKS.md compares them.

--dataset folder --data-dir DIR trains on every image under DIR instead (class sub-folders optional, ignored),
resized and centre-cropped to --image-size; 64 is the paper's size, with one more strided layer in both networks.
Such a folder has no CIFAR-10 classes: no classifier judges it, and samples come from the last epoch. --fid inception
adds the standard FID and KID (common/fid.py; optional weights) against the 10k test images (a folder: its images).

    python dcgan_cifar10.py                                  # CPU: about 90 s per epoch on 2 cores, 11 epochs
    python dcgan_cifar10.py --device cuda --batch-size 128 --base-channels 64 --epochs 100   # GPU (bf16)
    torchrun --standalone --nproc_per_node 4 dcgan_cifar10.py --device cuda --batch-size 128 --epochs 100   # 4 GPUs
    python dcgan_cifar10.py --epochs 0 --num-samples 10000   # sample from the best checkpoint, no training
    python dcgan_cifar10.py --dataset folder --data-dir faces/ --image-size 64 --device cuda --epochs 25

Writes to outputs/dcgan_cifar10/: losses.png, discriminator.png, grids/epoch_NNN.png, progress.png, quality.png,
real_vs_generated.png, metrics.json, config.json, checkpoint.pt, best.pt and, with --num-samples, samples.npz
(quality.png and best.pt for CIFAR-10 only).
"""
import contextlib
import functools
from pathlib import Path

import torch
import torch.nn.functional as F

from common import (checkpoints, classifier, cli, data, dcgan, devices, distributed, fid, gan, plots, progress,
                    run_folder, seeds, weight_average)

SETTINGS = {
    # Shared with the other scripts (common/cli.py, classifier.py, fid.py, weight_average.py): --data-dir,
    # --out-dir, --device auto, --seed 0, --overwrite, --limit 0, --resume, --num-samples 0,
    # --classifier outputs/classifiers/cifar10.pt, --fid none, --fid-samples 10000, --fid-reference test,
    # --inception-weights, --ema-burn-in 1, --ema-rampup 0.1.
    # cli.FIXED marks a setting that --resume must keep: it shapes the networks, the data or its order, the loss or
    # the optimizers' betas (--seed and --limit are fixed too, and --data-dir for a folder).
    **cli.TRAINING_SETTINGS,
    **classifier.CIFAR10_SETTINGS,
    "dataset": ("cifar10", "cifar10 (its 50k training images), or folder: every image under --data-dir, in "
                           "sub-folders or not (jpg, jpeg, png, webp, bmp)", ("cifar10", "folder"), cli.FIXED),
    "image_size": (32, "pixels on a side, 32 or 64 (the paper's size); images are resized on the short side and "
                       "centre-cropped", "[32, 64]", cli.FIXED),
    "epochs": (11, "passes over the training images (0: sample the saved checkpoint, no training); --resume may add "
                   "more"),
    "batch_size": (32, "real images per step (and as many generated ones); the paper's 128 learns slower per second "
                       "on a CPU", "[1, inf)", cli.FIXED),
    "latent_dim": (100, "size of z, the paper's 100", "[1, inf)", cli.FIXED),
    "base_channels": (48, "channels of G's last and D's first hidden layer, doubling layer by layer (paper: 128)",
                      "[1, inf)", cli.FIXED),
    "lr_g": (2e-4, "Adam learning rate of G; a resumed run takes the new rate", "(0, inf)"),
    "lr_d": (2e-4, "Adam learning rate of D; e.g. 4e-4 with --lr-g 1e-4 for two time scales (Heusel et al. 2017); "
                   "a resumed run takes the new rate", "(0, inf)"),
    "beta1": (0.5, "Adam beta1 of both networks (beta2 = 0.999), as in Radford et al. 2016", "[0, 1)", cli.FIXED),
    "loss": ("bce", "bce (the non-saturating loss of Goodfellow et al. 2014) or hinge (Lim & Ye 2017)",
             ("bce", "hinge"), cli.FIXED),
    "spectral_norm": (False, "spectral normalisation instead of batch norm in D (Miyato et al. 2018)", cli.FIXED),
    "ema_half_life": (22000, "samples come from an exponential moving average of G's weights with this half-life "
                             "in images (0: G itself); about 0.999 per step of 32", "[0, inf)", cli.FIXED),
    **weight_average.SETTINGS,
    "quality_every": (1, "measure sample quality every N epochs and after the last (0: after the last only)"),
    "quality_samples": (5000, "generated images per quality measurement during training, against as many of the "
                               "first training images (more than the classifier's features, so that their "
                               "covariance is not singular)", f"[{classifier.MIN_IMAGES}, 5000]"),
    "eval_images": (10000, "generated and real test images behind the final quality numbers (10k, as for FID)",
                    f"[{classifier.MIN_IMAGES}, 10000]"),
    "sample_from": ("best", "generator of the final figures, metrics and samples: best (lowest tracked Frechet "
                            "distance, best.pt) or last (checkpoint.pt); a folder has no best.pt", ("best", "last")),
    **fid.SETTINGS,
}
NO_CLASSES_NOTE = ("a folder of images has no CIFAR-10 classes: no classifier-based distance, inception score or "
                   "class shares, no best.pt; the samples come from the last epoch. --fid inception adds the "
                   "standard FID against the folder's images")


def discriminator_loss(real_logits, fake_logits, loss):
    """bce: -log D(x) - log(1 - D(G(z))) (common/gan.py). hinge: E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))] on the
    logits (Lim & Ye 2017, eq. 7): D stops pushing on images it already separates by a margin."""
    if loss == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    return gan.discriminator_loss(real_logits, fake_logits)


def generator_loss(fake_logits, loss):
    """bce: the non-saturating -log D(G(z)) (common/gan.py). hinge: -E[D(G(z))] on the logits (Lim & Ye 2017, eq. 8)."""
    if loss == "hinge":
        return -fake_logits.mean()
    return gan.generator_loss(fake_logits)


def train_step(generator, discriminator, optimizer_g, optimizer_d, images, cfg, autocast, memory_format):
    """One step of Goodfellow et al.'s Algorithm 1 on a batch of uint8 training images; returns
    gan.step_statistics (D loss, G loss, mean D(x), mean D(G(z))), on the device."""
    real = data.to_signed_range(data.random_horizontal_flip(images))          # B x 3 x S x S in [-1, 1]
    real = real.contiguous(memory_format=memory_format)
    with autocast:
        fake = generator(torch.randn(len(real), cfg.latent_dim, device=real.device))

        # (1) Update D on a real and a generated batch. G's output is detached: this step moves D only.
        # The logits go to fp32 (a no-op on a CPU): the losses and the statistics below need no bf16 rounding.
        real_logits = discriminator(real).float()
        fake_logits = discriminator(fake.detach()).float()
        loss_d = discriminator_loss(real_logits, fake_logits, cfg.loss)
    gan.optimizer_step(optimizer_d, loss_d, discriminator)

    # (2) Update G against the D just updated. D's weights need no gradient here: skipping them saves a third of
    # D's backward pass.
    discriminator.requires_grad_(False)
    with autocast:
        loss_g = generator_loss(discriminator(fake).float(), cfg.loss)
    gan.optimizer_step(optimizer_g, loss_g, generator)
    discriminator.requires_grad_(True)
    return gan.step_statistics(loss_d, loss_g, real_logits, fake_logits)


def precision(device):
    """(autocast context, memory format) of the training step on ``device``.

    channels_last (NHWC) everywhere: the tensor cores' native layout on a GPU, and 15% faster steps on this CPU too
    (oneDNN's convolutions, bench/dcgan_speed.py). bf16 autocast on a GPU only (about twice the convolution
    throughput; unlike fp16 it needs no loss scaling); a CPU stays in fp32, where bf16 convolutions are slower on most.
    """
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    return autocast, torch.channels_last


def data_settings(cfg):
    """The settings that choose the training images: a run continues, and is sampled with --epochs 0, only on the
    same. The folder counts for --dataset folder; for CIFAR-10 --data-dir only says where the same images lie."""
    return ("dataset", "image_size") + (("data_dir",) if cfg.dataset == "folder" else ())


def build(cfg, device):
    """G, D and their Adam optimizers, from the flags."""
    generator = dcgan.Generator(latent_dim=cfg.latent_dim, base_channels=cfg.base_channels,
                                image_size=cfg.image_size).to(device)
    discriminator = dcgan.Discriminator(base_channels=cfg.base_channels, spectral_norm=cfg.spectral_norm,
                                        image_size=cfg.image_size).to(device)
    memory_format = precision(device)[1]
    generator.to(memory_format=memory_format)
    discriminator.to(memory_format=memory_format)
    fused = device.type in ("cpu", "cuda")  # one kernel for the whole Adam update
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, 0.999), fused=fused)
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, 0.999), fused=fused)
    return generator, discriminator, optimizer_g, optimizer_d


def load_training_images(cfg, device):
    """The training images at --image-size (uint8 N x 3 x S x S on ``device``) and the names of unreadable files
    skipped (always none for CIFAR-10)."""
    if cfg.dataset == "folder":
        return data.load_image_folder(cfg.data_dir, cfg.image_size, device, cfg.limit)
    images, _ = data.load_cifar10(cfg.data_dir, train=True, device=device, limit=cfg.limit)
    return data.resize_and_crop(images, cfg.image_size), []


def plot_real_vs_generated(generator, real_images, title, real_title, out, device):
    # The same number of real and generated images, side by side at the same scale: a small folder may hold fewer
    # real ones than the grid.
    count = min(plots.GRID_SIZE, len(real_images))
    generated = gan.generate(generator, count, device, seed=1)
    real = real_images[torch.randperm(len(real_images), generator=torch.Generator().manual_seed(1))[:count]]
    real = data.resize_and_crop(real, generated.shape[-1])
    figure, (left, right) = plots.plt.subplots(1, 2, figsize=(9, 4.9), layout="constrained")  # title near the grids
    plots.show_tiles(left, data.to_unit_range(real), 8, f"real: {real_title}")
    plots.show_tiles(right, data.to_unit_range(generated), 8, "generated: G(z), z ~ N(0, I)")
    figure.suptitle(title)
    plots.save_figure(figure, out / "real_vs_generated.png")


def main(argv=None):
    cfg = cli.parse(SETTINGS, __doc__, argv)
    if cfg.image_size not in dcgan.IMAGE_SIZES:
        raise cli.UserError(f"--image-size must be 32 or 64 (the sizes the networks are built for), got "
                            f"{cfg.image_size}")
    if cfg.dataset == "folder" and not cfg.data_dir:
        raise cli.UserError("--dataset folder needs --data-dir DIR, the folder of your images")
    device = devices.pick_device(cfg.device)
    # Loaded first: a missing package or missing weights stops the run now, not after hours of training.
    fid_network = fid.load_network(cfg.inception_weights, device) if cfg.fid == "inception" else None
    out = run_folder.open_run(__file__, cfg, device, checkpoint="checkpoint.pt",
                              sample_shape=(3, cfg.image_size, cfg.image_size))
    checkpoint_path = out / "checkpoint.pt"
    train_images, skipped = load_training_images(cfg, device)
    judged = cfg.dataset == "cifar10"  # a classifier of CIFAR-10's classes means nothing on a folder of other images
    if judged and cfg.epochs and len(train_images) < classifier.MIN_IMAGES:
        raise cli.UserError(f"--limit {cfg.limit} leaves fewer training images than the {classifier.MIN_IMAGES} the "
                            f"tracked Frechet distance compares generated images with: pass --limit "
                            f"{classifier.MIN_IMAGES} or more")
    # Rank 0 alone judges the samples, during training too: under torchrun the other processes only train.
    if judged and distributed.is_main():
        judge, identity = classifier.cifar10_classifier(cfg.data_dir, device, cfg.classifier)
        # The 32 x 32 classifier sees 64 x 64 samples downsampled (classifier.features_and_probabilities). best.pt is
        # chosen by the distance to the first training images, which G trains on (they hold every class equally
        # often); the final numbers use the test images and other z, so the choice cannot flatter them.
        tracked_features, _ = classifier.features_and_probabilities(judge, train_images[:cfg.quality_samples])
        tracked = functools.partial(gan.sample_quality, judge, real_features=tracked_features, device=device,
                                    seed=cfg.seed)

    if cfg.epochs:
        seeds.seed_everything(cfg.seed)  # the initial weights are the seed's too
        generator, discriminator, optimizer_g, optimizer_d = build(cfg, device)
        autocast, memory_format = precision(device)
        average, history, first_epoch = gan.start(checkpoint_path, cfg, "dcgan",
                                                  cli.fixed_on_resume(SETTINGS) + data_settings(cfg), generator,
                                                  discriminator, optimizer_g, optimizer_d)
        noise = gan.fixed_noise(cfg, device)
        steps_per_epoch = -(-len(train_images) // cfg.batch_size)
        for epoch in range(first_epoch, cfg.epochs + 1):
            timer = progress.Timer(device)
            generator.train()
            discriminator.train()
            steps = []  # one row of statistics per step, kept on the device: no sync per step
            for step, index in enumerate(gan.batches(train_images, cfg, epoch, device),
                                         start=(epoch - 1) * steps_per_epoch):
                steps.append(train_step(generator, discriminator, optimizer_g, optimizer_d, train_images[index], cfg,
                                        autocast, memory_format))
                weight_average.update(average, generator, weight_average.decay(step, cfg, len(train_images)))
            gan.record_epoch(history, steps, epoch, checkpoint_path, timer, generator, discriminator)
            if not distributed.is_main():
                continue
            weight_average.reestimate_batch_norm(average, device, seed=cfg.seed)
            if judged and gan.quality_due(cfg, epoch):
                gan.record_quality(history, epoch, tracked(average))
            gan.save_grid(out, epoch, average, noise)
            state = gan.checkpoint_state("dcgan", cfg, epoch, history, generator, average, discriminator,
                                         optimizer_g, optimizer_d)
            checkpoints.save_checkpoint(checkpoint_path, "gan", **state)
            if gan.is_best(history, epoch):  # DCGAN is known to degrade late in training: keep its best epoch
                checkpoints.save_checkpoint(out / "best.pt", "gan", **state)
            print(gan.epoch_summary(history, epoch, cfg.epochs), flush=True)
    if not distributed.is_main():
        return None
    # The figures, numbers and FID compare G with the data it was trained on: a checkpoint sampled with --epochs 0
    # must hold a DCGAN of the same data settings.
    last = checkpoints.load_checkpoint(checkpoint_path, device, kind="gan")
    checkpoints.check_resumable(last, cfg, data_settings(cfg), checkpoint_path)
    history = last["history"]
    best = judged and cfg.sample_from == "best"
    generator, checkpoint = gan.load_generator(out / ("best.pt" if best else "checkpoint.pt"), device,
                                               architecture="dcgan")
    run_folder.start_record()

    size = f" at {cfg.image_size} x {cfg.image_size}" if cfg.image_size != 32 else ""
    if judged:
        test_images, _ = data.load_cifar10(cfg.data_dir, train=False, device=device, limit=cfg.eval_images)
        plots.plot_gan_training(out, history, f"DCGAN on CIFAR-10{size}", "training images")
        plot_real_vs_generated(generator, test_images, f"DCGAN on CIFAR-10{size}", "CIFAR-10 test images", out,
                               device)
        best_index = history["frechet_distance"].index(min(history["frechet_distance"]))
        test_features, _ = classifier.features_and_probabilities(judge, test_images)
        metrics = {
            **gan.final_metrics(gan.sample_quality(judge, generator, test_features, device, seed=cfg.seed + 2),
                                history, identity),
            "sampled_epoch": checkpoint["epoch"],
            "best_epoch": history["quality_epoch"][best_index],
            "tracked_frechet_distance_best": history["frechet_distance"][best_index],
            "tracked_frechet_distance_last": history["frechet_distance"][-1],
        }
    else:
        name = Path(cfg.data_dir).resolve().name
        plots.plot_gan_training(out, history, f"DCGAN on {name}{size}", "training images")
        plot_real_vs_generated(generator, train_images, f"DCGAN on {name}{size}", f"images from {name}", out, device)
        metrics = {**gan.final_metrics({}, history), "sampled_epoch": checkpoint["epoch"],
                   "images": len(train_images), "unreadable_files_skipped": len(skipped), "note": NO_CLASSES_NOTE}
    metrics["seconds_per_epoch"] = sum(history["seconds"]) / len(history["seconds"])
    reference = reference_name = None
    if fid_network is not None and not judged:  # a folder of images is its own reference
        reference, reference_name = train_images, f"the folder's {len(train_images)} images"
    elif fid_network is not None:
        reference = data.load_cifar10(cfg.data_dir, train=cfg.fid_reference == "train")[0]
        reference_name = f"CIFAR-10's {len(reference)} {cfg.fid_reference} images"
    return gan.report(metrics, generator, cfg, out, device, data.CIFAR10_CLASSES, fid_network, reference,
                      reference_name)


if __name__ == "__main__":
    cli.run(main)
