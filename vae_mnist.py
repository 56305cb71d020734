"""A variational autoencoder on MNIST: reconstructions, new digits from the prior, and ELBO and KL curves.

Trains the convolutional VAE of common/vae.py (Kingma & Welling 2014) by minimising the negative ELBO: a Bernoulli
reconstruction term summed over the 784 pixels plus KL(q(z|x) || p(z)). main() below shows the whole algorithm: the
step (the ELBO, backward, Adam) and the epoch loop around it; each piece of bookkeeping (resume, the epoch's test
numbers, the checkpoint) is one call into common/. By default the Bernoulli targets are MNIST's grey levels, as in
pytorch/examples' vae, so the test loss compares with that example's: a Bernoulli negative ELBO on grey levels, not a
log-likelihood of any image distribution. --binarize trains and tests on binarised MNIST as the VAE papers do
(dynamic binarisation), where -log p(x), estimated by importance sampling with --iw-samples 5000 as Burda et al.
(2016) do, compares with the papers' numbers (BENCHMARKS.md).

    python vae_mnist.py                                  # CPU: about 3 minutes
    python vae_mnist.py --device cuda --epochs 50        # GPU: seconds per epoch
    torchrun --standalone --nproc_per_node 4 vae_mnist.py --device cuda   # 4 GPUs (README: More than one GPU)
    python vae_mnist.py --epochs 0 --num-samples 1000    # sample from the saved checkpoint, no training
    python vae_mnist.py --binarize --iw-samples 5000 --out-dir outputs/vae_binarized   # the papers' protocol

Writes to outputs/vae_mnist/: elbo.png, kl.png, reconstructions.png, samples.png, metrics.json, config.json,
checkpoint.pt and, with --num-samples, samples.npz.
"""
import math

import numpy as np
import torch

from common import checkpoints, cli, data, devices, distributed, files, plots, progress, run_folder, seeds, vae
from common.seeds import epoch_batches

SETTINGS = {
    # Shared with the other scripts (common/cli.py): --data-dir, --out-dir, --device auto, --seed 0, --overwrite,
    # --limit 0, --resume, --num-samples 0.
    # cli.FIXED marks a setting that --resume must keep: it shapes the model, the data or its order, or the
    # learning-rate schedule (a function of the epochs); --lr may change, every step sets its rate from it anew.
    **cli.TRAINING_SETTINGS,
    "architecture": ("conv", "conv | mlp: the convolutional VAE (lower loss per epoch), or a one-hidden-layer MLP "
                             "(several times cheaper per epoch: the fastest to a modest loss on a CPU)",
                     ("conv", "mlp"), cli.FIXED),
    "epochs": (9, "passes over the 50,000 training images (10,000 random ones are held out); 0: evaluate and "
                  "sample the saved checkpoint, no training", cli.FIXED),
    "batch_size": (64, "images per Adam step", "[1, inf)", cli.FIXED),
    "lr": (3e-3, "peak Adam learning rate: linear warm-up over the first tenth of training, cosine decay to 0",
           "(0, inf)"),
    "latent_dim": (32, "size of z", "[1, inf)", cli.FIXED),
    "channels": (16, "convolution channels next to the image (twice as many one layer further in)", "[1, inf)",
                 cli.FIXED),
    "hidden": (256, "width of the fully connected layer on each side of z", "[1, inf)", cli.FIXED),
    "digit": ("all", "train on this digit's training images only (a one-class VAE, as vae_anomaly_detection.py's "
                     "--normal-digit trains; its test numbers are on the same digit's test images) or on all",
              ("all", *"0123456789"), cli.FIXED),
    "binarize": (False, "the binarised-MNIST protocol of the VAE papers: every training image drawn anew each time as "
                        "black and white pixels, its grey levels their probabilities (dynamic binarisation), the test "
                        "images binarised once (seed 0); the test numbers then compare with theirs", cli.FIXED),
    "iw_samples": (16, "importance samples per test image for the estimate of -log p(x) (1000+ on a GPU)", "[1, inf)"),
}


def binarize(images, generator=None):
    """uint8 grey levels -> uint8 0 or 255, each pixel white with probability (its level / 255)."""
    return torch.bernoulli(data.to_unit_range(images), generator=generator).mul_(255).to(torch.uint8)


def learning_rate(peak, step, warmup_steps, total_steps):
    """Linear warm-up, then cosine decay to 0: a function of the step alone, so resuming needs no scheduler state."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def plot_curves(history, out, dataset):
    # A training number is the mean over an epoch's batches, while the model improves: it belongs to the middle of
    # the epoch, the test number (measured after it) to its end. The first epoch's, averaged over a model that starts
    # from noise, would flatten the rest: the second panel leaves it out.
    test_epochs = np.arange(1, len(history["test_loss"]) + 1)
    for name, key, ylabel, title in [("elbo.png", "loss", "negative ELBO (nats per image)", "loss = -ELBO"),
                                     ("kl.png", "kl", "KL(q(z|x) || p(z)) (nats per image)", "KL term")]:
        plots.plot_curves(out / name, {"train (mean over the epoch)": (test_epochs - 0.5, history[f"train_{key}"]),
                                       "test (after the epoch)": (test_epochs, history[f"test_{key}"])},
                          "epoch", ylabel, f"VAE on {dataset}: {title}", zoom_after=1)


@torch.no_grad()
def plot_images(model, test_images, test_labels, out, latent_dim):
    # Two test digits of each class, each above its reconstruction from the posterior mean.
    picks = torch.cat([torch.nonzero(test_labels == digit)[:2, 0] for digit in range(10)])
    originals = data.to_unit_range(test_images[picks])
    reconstructions = torch.sigmoid(model.decode(model.encode(originals)[0]))
    plots.save_labelled_rows(out / "reconstructions.png",
                             [("test digit", originals), ("reconstruction", reconstructions)],
                             "MNIST test digits and their VAE reconstructions")
    samples = torch.sigmoid(model.decode(torch.randn(100, latent_dim, device=test_images.device)))
    plots.save_grid(out / "samples.png", samples, 10, "New digits: z ~ N(0, I), pixel means of p(x|z)")


@torch.no_grad()
def sample_batches(model, count, device, batch_size=1000):
    """``count`` new digits, z ~ N(0, I) decoded to pixel means, as uint8 batches (streamed into samples.npz)."""
    for start in range(0, count, batch_size):
        z = torch.randn(min(batch_size, count - start), model.config["latent_dim"], device=device)
        yield data.to_uint8(torch.sigmoid(model.decode(z)))


def main(argv=None):
    cfg = cli.parse(SETTINGS, __doc__, argv)
    device = devices.pick_device(cfg.device)
    out = run_folder.open_run(__file__, cfg, device, checkpoint="checkpoint.pt", sample_shape=(1, 28, 28))
    checkpoint_path = out / "checkpoint.pt"
    test_images, test_labels = data.load_mnist(cfg.data_dir, train=False, device=device)
    if cfg.binarize:
        test_images = binarize(test_images, torch.Generator(device=device).manual_seed(0))
    tested = test_images if cfg.digit == "all" else test_images[test_labels == int(cfg.digit)]

    if cfg.epochs == 0:  # evaluate and sample the saved checkpoint
        model, checkpoint = vae.load_vae(checkpoint_path, device)
        history = checkpoint["history"]
    else:
        train_images, train_labels = vae.load_split("training", cfg.data_dir, device, cfg.limit)
        if cfg.digit != "all":
            train_images = train_images[train_labels == int(cfg.digit)]
        seeds.seed_everything(cfg.seed)  # the initial weights are the seed's too
        model = (vae.MLPVAE(cfg.latent_dim, cfg.hidden) if cfg.architecture == "mlp"
                 else vae.ConvVAE(cfg.latent_dim, cfg.channels, cfg.hidden)).to(device)
        # The fused Adam kernel (CPU and CUDA) does the whole update in one pass: ~20% faster steps on a CPU here.
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=device.type in ("cpu", "cuda"))
        history, first_epoch = vae.start(cfg, len(train_images), checkpoint_path, cli.fixed_on_resume(SETTINGS),
                                         model, optimizer)
        trained = distributed.wrap(model)  # under torchrun, DDP averages the gradients during backward()
        steps_per_epoch = -(-len(train_images) // cfg.batch_size)
        total_steps = cfg.epochs * steps_per_epoch
        for epoch in range(first_epoch, cfg.epochs + 1):
            timer = progress.Timer(device)
            model.train()
            totals = torch.zeros(3, device=device)  # summed terms and images, on the device: no GPU sync per step
            batches = epoch_batches(len(train_images), cfg.batch_size, cfg.seed, epoch, device)
            for step, index in enumerate(progress.progress(batches, epoch, cfg.epochs),
                                         start=(epoch - 1) * steps_per_epoch):
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(cfg.lr, step, total_steps // 10, total_steps)
                images = binarize(train_images[index]) if cfg.binarize else train_images[index]
                # Minimise the negative ELBO, reconstruction + KL, averaged over the batch's images.
                reconstruction, kl = vae.negative_elbo(trained, data.to_unit_range(images))
                loss = (reconstruction + kl).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                totals += torch.stack([reconstruction.sum(), kl.sum(), kl.new_full((), len(kl))]).detach()
            vae.record_epoch(history, totals, timer, model, tested, epoch, checkpoint_path)
            checkpoints.save_checkpoint(checkpoint_path, "vae", model=model.state_dict(), model_config=model.config,
                                        optimizer=optimizer.state_dict(), epoch=epoch, history=history,
                                        train_examples=len(train_images), settings=vars(cfg))
            print(vae.epoch_summary(history, epoch, cfg.epochs), flush=True)
    if not distributed.is_main():
        return None  # under torchrun: the other processes' part was the training, rank 0 evaluates and plots
    run_folder.start_record()
    model.eval()
    seeds.seed_everything(cfg.seed)

    plot_curves(history, out, "binarised MNIST" if cfg.binarize else "MNIST")
    plot_images(model, test_images, test_labels, out, model.config["latent_dim"])
    iw_nll = vae.importance_weighted_nll_per_image(model, data.to_unit_range(tested), cfg.iw_samples)
    metrics = {  # the test numbers are the last epoch's evaluation, which the curves end with
        "test_loss": history["test_loss"][-1],
        "test_reconstruction": history["test_reconstruction"][-1],
        "test_kl": history["test_kl"][-1],
        "train_loss": history["train_loss"][-1],
        "active_units": vae.active_units(model, tested),
        "latent_dim": model.config["latent_dim"],
        "iw_nll": iw_nll.mean().item(),
        "iw_samples": cfg.iw_samples,
        "epochs": len(history["test_loss"]),
        "train_seconds": sum(history["seconds"]),
    }
    files.write_json(out / "metrics.json", metrics)
    print("  ".join(f"{key} {value:.2f}" if isinstance(value, float) else f"{key} {value}"
                    for key, value in metrics.items()))

    if cfg.num_samples:
        files.write_samples(out / "samples.npz", sample_batches(model, cfg.num_samples, device), cfg.num_samples)
    print(f"wrote {out}/")
    return metrics


if __name__ == "__main__":
    cli.run(main)
