"""A variational autoencoder on MNIST: reconstructions, new digits from the prior, and ELBO and KL curves.

Trains the convolutional VAE of common/vae.py with the loss of pytorch/examples' vae (Bernoulli reconstruction summed
over the 784 pixels, plus the KL term), so its test loss compares with that example's directly.

    python vae_mnist.py                                  # CPU: about 3 minutes
    python vae_mnist.py --device cuda --epochs 50        # GPU: seconds per epoch
    torchrun --standalone --nproc_per_node 4 vae_mnist.py --device cuda   # 4 GPUs (README: More than one GPU)
    python vae_mnist.py --epochs 0 --num-samples 1000    # sample from the saved checkpoint, no training

Writes to outputs/vae_mnist/: elbo.png, kl.png, reconstructions.png, samples.png, metrics.json, config.json,
checkpoint.pt and, with --num-samples, samples.npz.
"""
import numpy as np
import torch

from common import cli, data, distributed, plots, runs, vae

SETTINGS = {
    # Shared with the other scripts (common/cli.py): --data-dir, --out-dir, --device auto, --seed 0, --overwrite,
    # --limit 0, --resume, --num-samples 0, --tensorboard.
    **cli.TRAINING_SETTINGS,
    # The VAE's recipe, in common/vae.py because the scripts that reuse the VAE train one with it when none is saved:
    # --architecture conv, --epochs 9, --batch-size 64, --lr 3e-3, --latent-dim 32, --channels 16, --hidden 256.
    # --resume must keep all of them but --lr, and --seed and --limit (cli.FIXED marks them).
    **vae.SETTINGS,
    "iw_samples": (16, "importance samples per test image for the estimate of -log p(x) (1000+ on a GPU)", "[1, inf)"),
}


def plot_curves(history, out):
    # A training number is the mean over an epoch's batches, while the model improves: it belongs to the middle of
    # the epoch, the test number (measured after it) to its end. The first epoch's, averaged over a model that starts
    # from noise, would flatten the rest: the second panel leaves it out.
    test_epochs = np.arange(1, len(history["test_loss"]) + 1)
    for name, key, ylabel, title in [("elbo.png", "loss", "negative ELBO (nats per image)", "loss = -ELBO"),
                                     ("kl.png", "kl", "KL(q(z|x) || p(z)) (nats per image)", "KL term")]:
        plots.plot_curves(out / name, {"train (mean over the epoch)": (test_epochs - 0.5, history[f"train_{key}"]),
                                       "test (after the epoch)": (test_epochs, history[f"test_{key}"])},
                          "epoch", ylabel, f"VAE on MNIST: {title}", zoom_after=1)


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
    device = runs.pick_device(cfg.device)
    out = runs.open_run(__file__, cfg, device, checkpoint="checkpoint.pt", sample_shape=(1, 28, 28))
    checkpoint_path = out / "checkpoint.pt"
    test_images, test_labels = data.load_mnist(cfg.data_dir, train=False, device=device)

    if cfg.epochs == 0:
        model, checkpoint = vae.load_vae(checkpoint_path, device)
        history = checkpoint["history"]
    else:
        train_images = vae.load_training_split(cfg.data_dir, device, cfg.limit)
        model, history = vae.train_vae(cfg, train_images, test_images, device, checkpoint_path)
    if not distributed.is_main():
        return None  # under torchrun: the other processes' part was the training, rank 0 evaluates and plots
    runs.start_record()
    model.eval()
    runs.seed_everything(cfg.seed)

    plot_curves(history, out)
    plot_images(model, test_images, test_labels, out, model.config["latent_dim"])
    metrics = {  # the test numbers are the last epoch's evaluation, which the curves end with
        "test_loss": history["test_loss"][-1],
        "test_reconstruction": history["test_reconstruction"][-1],
        "test_kl": history["test_kl"][-1],
        "train_loss": history["train_loss"][-1],
        "active_units": vae.active_units(model, test_images),
        "latent_dim": model.config["latent_dim"],
        "iw_nll": vae.importance_weighted_nll(model, test_images, cfg.iw_samples),
        "iw_samples": cfg.iw_samples,
        "epochs": len(history["test_loss"]),
        "train_seconds": sum(history["seconds"]),
    }
    runs.write_json(out / "metrics.json", metrics)
    print("  ".join(f"{key} {value:.2f}" if isinstance(value, float) else f"{key} {value}"
                    for key, value in metrics.items()))

    if cfg.num_samples:
        runs.write_samples(out / "samples.npz", sample_batches(model, cfg.num_samples, device), cfg.num_samples)
    print(f"wrote {out}/")
    return metrics


if __name__ == "__main__":
    cli.run(main)
