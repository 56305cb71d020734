"""The variational autoencoder that vae_mnist.py trains and the anomaly and latent-space scripts reuse.

Model: q(z|x) = N(mu(x), diag(exp(logvar(x)))), p(z) = N(0, I), p(x|z) = Bernoulli(sigmoid(decoder(z))) per pixel,
with MNIST's grey levels in [0, 1] as the Bernoulli targets, as in pytorch/examples' vae so the numbers compare.
"""
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common import checkpoints, cli, data, distributed, progress
from common.cli import UserError

# 10,000 of MNIST's 60,000 training images (split_indices) are never trained on: vae_anomaly_detection.py makes its
# choices on these unseen normal digits, and the test set stays for reported numbers. As many as the test set, so
# the development mix mirrors the test mix.
VALIDATION_SIZE = 10_000
SPLIT_SEED = 0  # the split's seed, fixed: every script and every --seed gets the same split
MNIST_TRAINING_IMAGES = 60_000


class VAE(nn.Module):
    """What every VAE here shares: ``encoder`` maps images to (mu, logvar), ``decoder`` maps z to pixel logits."""

    def encode(self, x):
        return self.encoder(x).chunk(2, dim=1)  # mu, logvar

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x):
        mu, logvar = self.encode(x)
        # Reparameterisation trick: z = mu + sigma * eps keeps the sample differentiable in mu and sigma.
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar


class ConvVAE(VAE):
    """Two strided convolutions and a hidden layer down to (mu, logvar); the mirror image back to pixel logits. SiLU
    rather than ReLU: a lower test loss for the same cost (BENCHMARKS.md)."""

    def __init__(self, latent_dim=32, channels=32, hidden=512):
        super().__init__()
        self.config = dict(architecture="conv", latent_dim=latent_dim, channels=channels, hidden=hidden)
        c = channels
        self.encoder = nn.Sequential(                           # 1 x 28 x 28 in [0, 1]
            nn.Conv2d(1, c, 4, stride=2, padding=1), nn.SiLU(),      # c x 14 x 14
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), nn.SiLU(),  # 2c x 7 x 7
            nn.Flatten(),
            nn.Linear(2 * c * 7 * 7, hidden), nn.SiLU(),
            nn.Linear(hidden, 2 * latent_dim),                       # mu and logvar
        )
        self.decoder = nn.Sequential(                           # latent_dim
            nn.Linear(latent_dim, hidden), nn.SiLU(),
            nn.Linear(hidden, 2 * c * 7 * 7), nn.SiLU(),
            nn.Unflatten(1, (2 * c, 7, 7)),                          # 2c x 7 x 7
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1), nn.SiLU(),  # c x 14 x 14
            nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1),        # 1 x 28 x 28 Bernoulli logits
        )


class MLPVAE(VAE):
    """pytorch/examples' VAE shape, 784 - hidden - z - hidden - 784, with SiLU."""

    def __init__(self, latent_dim=32, hidden=512):
        super().__init__()
        self.config = dict(architecture="mlp", latent_dim=latent_dim, hidden=hidden)
        self.encoder = nn.Sequential(                           # 1 x 28 x 28 in [0, 1]
            nn.Flatten(),
            nn.Linear(28 * 28, hidden), nn.SiLU(),
            nn.Linear(hidden, 2 * latent_dim),                       # mu and logvar
        )
        self.decoder = nn.Sequential(                           # latent_dim
            nn.Linear(latent_dim, hidden), nn.SiLU(),
            nn.Linear(hidden, 28 * 28),
            nn.Unflatten(1, (1, 28, 28)),                            # 1 x 28 x 28 Bernoulli logits
        )


def negative_elbo(model, x):
    """Per image: reconstruction = -log p(x|z) for one z ~ q(z|x), and KL(q(z|x) || N(0, I)), whose sum is the
    negative ELBO (Kingma & Welling 2014, eq. 10); the KL in the closed form of their Appendix B."""
    logits, mu, logvar = model(x)
    reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
    return reconstruction, kl


@torch.no_grad()
def evaluate(model, images, batch_size=1000):
    """Mean (negative ELBO, reconstruction, KL) in nats per image over uint8 ``images``."""
    model.eval()
    totals = torch.zeros(2, device=images.device)
    for batch in images.split(batch_size):
        reconstruction, kl = negative_elbo(model, data.to_unit_range(batch))
        totals += torch.stack([reconstruction.sum(), kl.sum()])
    reconstruction, kl = (totals / len(images)).tolist()
    return reconstruction + kl, reconstruction, kl


# ----- the epoch loop's bookkeeping (vae_mnist.py shows the loop) -----

HISTORY_KEYS = ("train_loss", "train_reconstruction", "train_kl", "test_loss", "test_reconstruction", "test_kl",
                "seconds")


def start(cfg, train_examples, checkpoint_path, fixed, model, optimizer):
    """Where training starts: (history, first epoch to train). With ``cfg.resume`` and a checkpoint trained on as many
    images (``train_examples``) with the same settings ``fixed``, the model and optimizer continue from it."""
    distributed.check_batch_size(cfg.batch_size)
    checkpoint = distributed.from_main(_resumed, cfg, train_examples, checkpoint_path, fixed)
    if checkpoint is None:
        return {key: [] for key in HISTORY_KEYS}, 1
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    return checkpoint["history"], checkpoint["epoch"] + 1


def _resumed(cfg, train_examples, checkpoint_path, fixed):
    if not cfg.resume:
        return None
    if not checkpoint_path.exists():
        print(f"no checkpoint at {checkpoint_path} to resume from: starting from scratch")
        return None
    checkpoint = checkpoints.load_checkpoint(checkpoint_path, "cpu", kind="vae")
    if checkpoint["train_examples"] != train_examples:
        raise UserError(f"{checkpoint_path} was trained on {checkpoint['train_examples']} images, this run has "
                        f"{train_examples} (--limit): pass the same --limit to continue it, or another --out-dir to "
                        f"start a new run")
    checkpoints.check_resumable(checkpoint, cfg, fixed, checkpoint_path)
    if checkpoint["settings"]["lr"] != cfg.lr:
        print(f"note: continuing with --lr {cfg.lr}; the epochs so far were trained with --lr "
              f"{checkpoint['settings']['lr']}")
    print(f"resuming from {checkpoint_path} after epoch {checkpoint['epoch']}")
    return checkpoint


def record_epoch(history, totals, timer, model, test_images, epoch, checkpoint_path):
    """The epoch's training terms (``totals``: summed reconstruction, summed KL, images) and seconds into ``history``,
    then the test numbers after it; stops before anything is saved if the loss diverged."""
    totals = distributed.total(totals)
    seconds = timer.elapsed()
    train_reconstruction, train_kl = (totals[:2] / totals[2]).tolist()
    checkpoints.stop_if_diverged({"the training loss (-ELBO)": train_reconstruction + train_kl}, epoch,
                                 checkpoint_path, "lower --lr")
    values = [train_reconstruction + train_kl, train_reconstruction, train_kl, *evaluate(model, test_images), seconds]
    for key, value in zip(HISTORY_KEYS, values):
        history[key].append(value)


def epoch_summary(history, epoch, epochs):
    """The one line printed after each epoch."""
    return (f"epoch {epoch:3d}/{epochs}  train -ELBO {history['train_loss'][-1]:7.2f}  test -ELBO "
            f"{history['test_loss'][-1]:7.2f} (reconstruction {history['test_reconstruction'][-1]:6.2f} + KL "
            f"{history['test_kl'][-1]:5.2f})  {history['seconds'][-1]:5.1f} s")


def load_vae(checkpoint_path, device, flag=None):
    """(model, checkpoint): a VAE rebuilt from its checkpoint alone. ``flag``: the option that named the file."""
    checkpoint = checkpoints.load_checkpoint(checkpoint_path, device, kind="vae", flag=flag)
    config = dict(checkpoint["model_config"])
    model = {"conv": ConvVAE, "mlp": MLPVAE}[config.pop("architecture")](**config).to(device)
    model.load_state_dict(checkpoint["model"])
    return model.eval(), checkpoint


@torch.no_grad()
def importance_weighted_nll_per_image(model, images, samples, batch_size=64, decodes=65536):
    """-log p(x) in nats of each float image (Burda et al. 2016, eq. 8): log p(x) >= log (1/k) sum_i p(x|z_i) p(z_i)
    / q(z_i|x) for k = ``samples`` z_i ~ q(z|x). Small batches keep the work in the CPU's caches; at most ``decodes``
    images are decoded at once, in chunks whose log-sums combine exactly, so memory stays bounded for any k."""
    model.eval()
    log_2pi = math.log(2 * math.pi)
    estimates = []
    for x in progress.progress_bar(images.split(batch_size), "estimating -log p(x)"):
        mu, logvar = model.encode(x)
        chunk = max(1, decodes // len(x))
        log_sums = []
        for start in range(0, samples, chunk):
            eps = torch.randn(min(chunk, samples - start), *mu.shape, device=mu.device)
            z = mu + eps * torch.exp(0.5 * logvar)                             # k x B x D
            logits = model.decode(z.flatten(0, 1)).view(len(z), *x.shape)
            log_p_x_given_z = -F.binary_cross_entropy_with_logits(
                logits, x.expand_as(logits), reduction="none").flatten(2).sum(2)  # k x B
            log_p_z = -0.5 * (z.pow(2) + log_2pi).sum(2)
            log_q_z = -0.5 * (eps.pow(2) + logvar + log_2pi).sum(2)
            log_sums.append(torch.logsumexp(log_p_x_given_z + log_p_z - log_q_z, dim=0))
        estimates.append(-(torch.logsumexp(torch.stack(log_sums), dim=0) - math.log(samples)))
    return torch.cat(estimates)


@torch.no_grad()
def active_units(model, images, threshold=0.01, batch_size=1000):
    """Latent dimensions whose posterior mean varies across images: Cov_x(E_q[z_u]) > 0.01 (Burda et al. 2016)."""
    model.eval()
    means = torch.cat([model.encode(data.to_unit_range(batch))[0] for batch in images.split(batch_size)])
    return int((means.var(dim=0) > threshold).sum())


def split_indices():
    """(training, validation): sorted indices into MNIST's training file, disjoint, together all 60,000. Random, not
    the file's tail, whose order is not random; drawn by numpy's legacy generator, whose stream numpy keeps fixed
    across versions, so every script, machine and version gets the same split."""
    order = np.random.RandomState(SPLIT_SEED).permutation(MNIST_TRAINING_IMAGES)
    return np.sort(order[VALIDATION_SIZE:]), np.sort(order[:VALIDATION_SIZE])


def load_split(split, data_dir, device, limit=0):
    """The images of MNIST's training file in ``split``, "training" or "validation" (split_indices), or their first
    ``limit``, and their labels."""
    images, labels = data.load_mnist(data_dir, train=True, device=device)
    training, validation = split_indices()
    indices = torch.as_tensor({"training": training, "validation": validation}[split][:limit or None],
                              device=images.device)
    return images[indices], labels[indices]


DEFAULT_CHECKPOINT = Path("outputs/vae_mnist/checkpoint.pt")  # where vae_mnist.py saves its VAE by default
CHECKPOINT_SETTINGS = {
    "vae_checkpoint": (str(DEFAULT_CHECKPOINT),
                       "the trained VAE to use; if the default is absent, one is trained there first with "
                       "vae_mnist.py's defaults"),
}


def load_or_train_vae(checkpoint_path, data_dir, device, seed=0, log=print):
    """The VAE saved at ``checkpoint_path`` (--vae-checkpoint) and its checkpoint; at the default path an absent file
    is trained there first by vae_mnist.py, any other must exist. Under torchrun, (None, None) but on rank 0."""
    checkpoint_path = Path(checkpoint_path)
    if not distributed.from_main(checkpoint_path.exists):
        if checkpoint_path.resolve() != DEFAULT_CHECKPOINT.resolve():
            raise UserError(f"--vae-checkpoint {checkpoint_path} does not exist: pass the checkpoint.pt that "
                            f"vae_mnist.py wrote, or leave the flag out to use {DEFAULT_CHECKPOINT} (trained "
                            f"there first if absent)")
        log(f"no VAE at {checkpoint_path}: training one with vae_mnist.py's defaults first")
        flags = ["--out-dir", checkpoint_path.parent, "--device", device.type, "--seed", seed]
        distributed.from_main(cli.run_script, "vae_mnist.py", *flags, *(["--data-dir", data_dir] if data_dir else []))
    if not distributed.is_main():
        return None, None
    return load_vae(checkpoint_path, device, flag="--vae-checkpoint")
