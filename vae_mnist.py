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
import torch

from common import cli, data, distributed, plots, runs, vae

SETTINGS = {
    # Shared with the other scripts (common/cli.py): --data-dir, --out-dir, --device auto, --seed 0, --limit 0,
    # --resume, --num-samples 0.
    **cli.TRAINING_SETTINGS,
    # The VAE's recipe, in common/vae.py because the scripts that reuse the VAE train one with it when none is saved:
    # --architecture conv, --epochs 9, --batch-size 64, --lr 3e-3, --latent-dim 32, --channels 16, --hidden 256.
    # --resume must keep all of them but --lr, and --seed and --limit (cli.FIXED marks them).
    **vae.SETTINGS,
    "iw_samples": (16, "importance samples per test image for the estimate of -log p(x) (1000+ on a GPU)", "[1, inf)"),
}


def plot_curves(history, out):
    epochs = range(1, len(history["test_loss"]) + 1)
    # The first epoch's training loss, averaged over a model that starts from noise, would flatten the rest.
    top = max(history["test_loss"] + history["train_loss"][1:]) + 2
    plots.plot_curves(out / "elbo.png", {"train": (epochs, history["train_loss"]),
                                         "test": (epochs, history["test_loss"])},
                      "epoch", "negative ELBO (nats per image)", "VAE on MNIST: loss = -ELBO",
                      ylim=(min(history["test_loss"] + history["train_loss"]) - 2, top))
    plots.plot_curves(out / "kl.png", {"train": (epochs, history["train_kl"]),
                                       "test": (epochs, history["test_kl"])},
                      "epoch", "KL(q(z|x) || p(z)) (nats per image)", "VAE on MNIST: KL term")


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


def main(argv=None):
    cfg = cli.parse(SETTINGS, __doc__, argv)
    device = runs.pick_device(cfg.device)
    out = runs.output_folder(__file__, cfg.out_dir)
    checkpoint_path = out / "checkpoint.pt"
    runs.write_json(out / "config.json", vars(cfg))
    test_images, test_labels = data.load_mnist(cfg.data_dir, train=False, device=device)

    if cfg.epochs == 0:
        model, checkpoint = vae.load_vae(checkpoint_path, device)
        history = checkpoint["history"]
    else:
        train_images = vae.load_training_split(cfg.data_dir, device, cfg.limit)
        model, history = vae.train_vae(cfg, train_images, test_images, device, checkpoint_path)
    if not distributed.is_main():
        return None  # under torchrun: the other processes' part was the training, rank 0 evaluates and plots
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
        with torch.no_grad():
            z = torch.randn(cfg.num_samples, model.config["latent_dim"], device=device)
            images = torch.cat([torch.sigmoid(model.decode(chunk)) for chunk in z.split(1000)])
        runs.write_samples(out / "samples.npz", data.to_uint8(images))
    print(f"wrote {out}/")
    return metrics


if __name__ == "__main__":
    cli.run(main)
