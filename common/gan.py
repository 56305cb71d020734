"""The GAN pieces gan_mnist.py and dcgan_cifar10.py share: MLP networks, the loss, weight averaging, figures, loading.

Every GAN checkpoint of the project holds ``architecture`` ("mlp" or "dcgan"), ``generator`` and
``generator_config``, ``discriminator`` and ``discriminator_config``, ``optimizer_g``, ``optimizer_d``, ``epoch``,
``history``, ``settings``, ``generator_ema``: the average of the generator's weights, with batch-norm statistics
re-estimated for it (None in older DCGAN files trained without an average), and ``generator_sampled``: None where
samples come from that average, else the weights they come from (G itself, with statistics re-estimated for it: early
in training G can be ahead of its average). ``load_generator`` rebuilds the sampled generator from the file alone. A
generator maps z ~ N(0, I) of size ``config["latent_dim"]`` to images in [-1, 1] (Tanh), N x C x H x W.
"""
import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common import classifier, cli, data, distributed, fid, plots, runs
from common.plots import plt


class MLPGenerator(nn.Module):
    """z -> fully connected layers with batch norm and ReLU -> Tanh pixels, the "simple GAN" generator."""

    def __init__(self, latent_dim=64, hidden=(256, 512, 1024), image_shape=(1, 28, 28)):
        super().__init__()
        self.config = dict(latent_dim=latent_dim, hidden=list(hidden), image_shape=list(image_shape))
        layers, width = [], latent_dim                                 # latent_dim
        for size in hidden:
            layers += [nn.Linear(width, size), nn.BatchNorm1d(size), nn.ReLU()]  # size
            width = size
        layers += [nn.Linear(width, math.prod(image_shape)), nn.Tanh(),          # C*H*W in [-1, 1]
                   nn.Unflatten(1, tuple(image_shape))]                          # C x H x W
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)


class MinibatchStd(nn.Module):
    """Appends the features' standard deviation across the batch, averaged, as one more feature (Karras et al. 2018,
    sec. 3): a batch of near-identical fakes has a tell-tale low value, so D can punish a generator that collapses."""

    def forward(self, h):
        spread = h.std(dim=0, unbiased=False).mean().expand(len(h), 1)
        return torch.cat([h, spread], dim=1)


class MLPDiscriminator(nn.Module):
    """Image -> fully connected layers with LeakyReLU(0.2) -> one logit (D(x) = sigmoid(logit))."""

    def __init__(self, image_shape=(1, 28, 28), hidden=(512, 256), dropout=0.0, minibatch_std=True):
        super().__init__()
        self.config = dict(image_shape=list(image_shape), hidden=list(hidden), dropout=dropout,
                           minibatch_std=minibatch_std)
        layers, width = [nn.Flatten()], math.prod(image_shape)         # C*H*W
        for size in hidden:
            layers += [nn.Linear(width, size), nn.LeakyReLU(0.2)]      # size
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = size
        if minibatch_std:
            layers.append(MinibatchStd())                              # width + 1
            width += 1
        layers.append(nn.Linear(width, 1))                             # 1 logit
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x).squeeze(1)


def discriminator_loss(real_logits, fake_logits, real_target=1.0):
    """-log D(x) - log(1 - D(G(z))), D = sigmoid(logit): the discriminator's side of Goodfellow et al. 2014, eq. 1.

    ``real_target`` < 1 is one-sided label smoothing (Salimans et al. 2016, sec. 3.4): D is not rewarded for
    ever more confident "real" calls, which keeps its gradients for G informative.
    """
    real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_target))
    fake = F.softplus(fake_logits).mean()                              # -log(1 - sigmoid(l)) = softplus(l)
    return real + fake


def generator_loss(fake_logits):
    """Non-saturating generator loss -log D(G(z)) (Goodfellow et al. 2014, sec. 3).

    Minimising log(1 - D(G(z))), the game of eq. 1, gives G almost no gradient early on, when D rejects its samples
    with confidence; maximising log D(G(z)) has the same fixed point and strong gradients there.
    """
    return F.softplus(-fake_logits).mean()                             # -log sigmoid(l) = softplus(-l)


@torch.no_grad()
def update_average(average, model, decay):
    """average <- decay * average + (1 - decay) * model, for weights; buffers (batch-norm statistics) are copied, to
    be re-estimated with ``recalibrate_batch_norm`` before the average is sampled from.

    Sampling from an exponential moving average of G's weights (Yazici et al. 2019) smooths out the oscillation of
    the adversarial game: cleaner samples for no extra training.
    """
    for averaged, current in zip(average.parameters(), model.parameters()):
        averaged.lerp_(current, 1 - decay)
    for averaged, current in zip(average.buffers(), model.buffers()):
        averaged.copy_(current)


@torch.no_grad()
def recalibrate_batch_norm(generator, device, num_images=10000, batch_size=500, seed=0):
    """Re-estimate the batch-norm statistics of ``generator`` (the weight average) from its own outputs.

    The running means and variances copied from the trained G belong to G's weights, not to their average; used with
    the average they blur its samples (BENCHMARKS.md). One pass over fresh z in training mode with a cumulative
    average (momentum None) gives the statistics that belong to the average, as BigGAN's "standing statistics" do
    (Brock et al. 2019, appendix C.1). The z come from their own generator, seeded by ``seed``: re-estimating leaves
    the global one, and so the z of training, untouched.
    """
    norms = [module for module in generator.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return generator.eval()
    momenta = [module.momentum for module in norms]
    for module in norms:
        module.reset_running_stats()
        module.momentum = None
    generator.train()
    rng = torch.Generator(device=device).manual_seed(seed)
    for _ in range(num_images // batch_size):
        generator(torch.randn(batch_size, generator.config["latent_dim"], device=device, generator=rng))
    for module, momentum in zip(norms, momenta):
        module.momentum = momentum
    return generator.eval()


def generate(generator, num_images, device, batch_size=1000, seed=None):
    """``num_images`` uint8 images (CPU) from z ~ N(0, I); ``seed`` fixes z without touching the global generator."""
    return torch.cat(list(generate_batches(generator, num_images, device, batch_size, seed)))


@torch.no_grad()
def generate_batches(generator, num_images, device, batch_size=1000, seed=None):
    """The images of ``generate``, one uint8 batch at a time: what samples.npz streams, so that no count of samples
    has to fit in memory at once."""
    generator.eval()
    rng = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    for start in range(0, num_images, batch_size):
        z = torch.randn(min(batch_size, num_images - start), generator.config["latent_dim"], device=device,
                        generator=rng)
        yield data.to_uint8(generator(z), -1, 1)


# ----- the training loop of gan_mnist.py and dcgan_cifar10.py, and its bookkeeping -----

QUALITY_KEYS = ("frechet_distance", "inception_score", "class_shares", "min_class_share")
GRID_SIZE = 64  # fixed-noise images drawn after every epoch, 8 x 8


def sample_quality(judge, generator, real_features, device, seed):
    """QUALITY_KEYS, in the eyes of the classifier ``judge``, of as many samples of ``generator`` (z from ``seed``) as
    there are real images behind ``real_features``: the distance's bias depends on both counts."""
    generated = generate(generator, len(real_features), device, seed=seed).to(device)
    return classifier.sample_quality(judge, generated, real_features)


def optimizer_step(optimizer, loss, network):
    """One step of ``optimizer`` down ``loss``'s gradient in ``network``'s weights; under torchrun the gradients are
    averaged over the processes first (why not DDP: common/distributed.py)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    distributed.average_gradients(network)
    optimizer.step()


def step_statistics(loss_d, loss_g, real_logits, fake_logits):
    """What a training step reports, on the device: D's loss, G's loss, mean D(x), mean D(G(z))."""
    return torch.stack([loss_d, loss_g, torch.sigmoid(real_logits).mean(), torch.sigmoid(fake_logits).mean()]).detach()


def average_decay(ema_decay, step):
    """The weight average's decay at global step ``step`` (the first is 0): (1 + t) / (10 + t) until it reaches
    ``ema_decay``, the warm-up of TensorFlow's ExponentialMovingAverage(num_updates). Without it the random initial
    weights would linger: 0.999^t of them, still 39% after an MNIST epoch of 938 steps."""
    return min(ema_decay, (1 + step) / (10 + step))


def train(cfg, architecture, fixed, networks, train_step, train_images, device, out, quality=None, keep_best=False):
    """Train (or, with ``cfg.resume``, continue) a GAN, checkpointing after every epoch; returns (the generator the
    last epoch's samples come from, in eval mode, and history). The epoch loop of both GAN scripts, around each
    script's own ``train_step``.

    ``networks``: (G, D, G's optimizer, D's optimizer), just built from the seed. ``train_step(images)``: one step of
    the script's algorithm, D then G, on a batch of uint8 training images; returns its ``step_statistics``.
    ``architecture`` and ``fixed`` (the settings a resumed run must keep) go to ``resume_or_start``. ``cfg`` carries
    seed, resume, epochs, batch_size, latent_dim, lr_g, lr_d, ema_decay and quality_every.

    After each epoch the losses are checked (a diverged epoch is not saved) and recorded; then rank 0 re-estimates
    the weight average's batch-norm statistics, which every use below needs, and picks the generator to sample
    (``pick_sampler``), scoring it with ``quality(generator)`` (a dict of QUALITY_KEYS, on images the reported numbers
    do not use; None where nothing judges the samples) every ``cfg.quality_every`` epochs and after the last; draws
    its fixed-noise grid, writes out/checkpoint.pt (and, with ``keep_best``, out/best.pt whenever the tracked distance
    is the lowest so far) and prints the epoch's line.
    """
    generator, discriminator, optimizer_g, optimizer_d = networks
    checkpoint_path = out / "checkpoint.pt"
    distributed.check_batch_size(cfg.batch_size)
    checkpoint = resume_or_start(checkpoint_path, cfg, architecture, fixed)
    average = copy.deepcopy(generator)  # the weight average samples come from (a copy of G while ema_decay is 0)
    history, first_epoch = restore(checkpoint, generator, average, discriminator, optimizer_g, optimizer_d,
                                   (cfg.lr_g, cfg.lr_d))
    distributed.broadcast_parameters(generator, discriminator)  # under torchrun: the same start in every process
    sampler = average  # with no epoch left to train (a resumed run), the checkpoint's own choice
    if checkpoint is not None and checkpoint.get("generator_sampled") is not None:
        sampler = copy.deepcopy(generator)
        sampler.load_state_dict(checkpoint["generator_sampled"])
    fixed_noise = torch.randn(GRID_SIZE, cfg.latent_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    steps_per_epoch = -(-len(train_images) // cfg.batch_size)

    for epoch in range(first_epoch, cfg.epochs + 1):
        timer = runs.Timer(device)
        generator.train()
        discriminator.train()
        steps = []  # one row of step_statistics per step, kept on the device: no sync per step
        batches = runs.progress(distributed.shard(data.shuffled_batches(len(train_images), cfg.batch_size,
                                                                        runs.seed_epoch(cfg.seed, epoch), device)),
                                epoch, cfg.epochs)
        for step, index in enumerate(batches, start=(epoch - 1) * steps_per_epoch):
            steps.append(train_step(train_images[index]))
            if distributed.is_main():
                update_average(average, generator, average_decay(cfg.ema_decay, step))
        steps = distributed.mean(torch.stack(steps))  # every process's losses: the global batch's
        check_losses(steps, epoch, checkpoint_path)
        record_steps(history, steps)
        distributed.average_buffers(generator, discriminator)
        history["seconds"].append(timer.elapsed())  # the training steps only, not the bookkeeping below
        if not distributed.is_main():
            continue

        recalibrate_batch_norm(average, device, seed=cfg.seed)
        sampler = average
        if quality and ((cfg.quality_every and epoch % cfg.quality_every == 0) or epoch == cfg.epochs):
            sampler = pick_sampler(history, epoch, average, generator, quality, device, cfg)
        with torch.no_grad():
            history["grids"].append(data.to_uint8(sampler(fixed_noise), -1, 1))
        state = dict(architecture=architecture, generator=generator.state_dict(), generator_config=generator.config,
                     generator_ema=average.state_dict(),
                     generator_sampled=None if sampler is average else sampler.state_dict(),
                     discriminator=discriminator.state_dict(),
                     discriminator_config=discriminator.config, optimizer_g=optimizer_g.state_dict(),
                     optimizer_d=optimizer_d.state_dict(), epoch=epoch, history=history, settings=vars(cfg))
        runs.save_checkpoint(checkpoint_path, "gan", **state)
        measured = history["quality_epoch"][-1:] == [epoch]
        if keep_best and measured and history["frechet_distance"][-1] == min(history["frechet_distance"]):
            runs.save_checkpoint(out / "best.pt", "gan", **state)
        print(epoch_summary(history, epoch, cfg.epochs), flush=True)
    return sampler.eval(), history


def pick_sampler(history, epoch, average, generator, quality, device, cfg):
    """The generator this epoch's samples come from, its ``quality`` scores recorded in ``history``: the weight
    average, or G itself (a copy, its batch-norm statistics re-estimated from the same z) where G scores the lower
    distance. Early on G improves faster than any average of its recent weights can follow (BENCHMARKS.md, "One
    loop"); from the first epoch the average wins on, it is sampled without judging G again."""
    scores, sampler = quality(average), average
    if cfg.ema_decay and "average" not in history["sampled"]:
        own = recalibrate_batch_norm(copy.deepcopy(generator), device, seed=cfg.seed)
        own_scores = quality(own)
        if own_scores["frechet_distance"] < scores["frechet_distance"]:
            scores, sampler = own_scores, own
    history["quality_epoch"].append(epoch)
    history["sampled"].append("average" if sampler is average else "generator")
    for key in QUALITY_KEYS:
        history[key].append(scores[key])
    return sampler


def resume_or_start(checkpoint_path, cfg, architecture, fixed):
    """The checkpoint (on the CPU) to continue from when ``cfg.resume`` is set and one exists, else None; under
    torchrun rank 0 reads it and hands it to the others, whose machines may not hold it.

    The checkpoint must be a GAN of ``architecture`` trained with the same values of the settings ``fixed`` (a
    ``UserError`` names the first that differs). --epochs may grow: nothing in a GAN's training depends on it.
    """
    return distributed.from_main(_resume_or_start, checkpoint_path, cfg, architecture, fixed)


def _resume_or_start(checkpoint_path, cfg, architecture, fixed):
    if cfg.resume and checkpoint_path.exists():
        checkpoint = runs.load_checkpoint(checkpoint_path, "cpu", kind="gan")
        if checkpoint["architecture"] != architecture:
            raise cli.UserError(f"{checkpoint_path} holds a {checkpoint['architecture']} GAN, not the "
                                f"{architecture} GAN this script trains: pass another --out-dir")
        runs.check_resumable(checkpoint, cfg, fixed, checkpoint_path)
        print(f"resuming from {checkpoint_path} after epoch {checkpoint['epoch']}")
        return checkpoint
    if cfg.resume:
        print(f"no checkpoint at {checkpoint_path} to resume from: starting from scratch")
    return None


def restore(checkpoint, generator, average, discriminator, optimizer_g, optimizer_d, learning_rates):
    """Load ``checkpoint``'s states into the networks and optimizers; returns (history, first epoch to train).

    Without a checkpoint: an empty history, with one list per curve, and epoch 1. ``learning_rates`` (G's, D's)
    replace those in the optimizers' saved states, so a run resumed with a lower --lr-g / --lr-d (after a
    divergence, say) continues with it.
    """
    if checkpoint is None:
        keys = ["step_loss_d", "step_loss_g", "step_d_real", "step_d_fake", "loss_d", "loss_g", "d_real", "d_fake",
                "seconds", "grids", "quality_epoch", "sampled", *QUALITY_KEYS]
        return {key: [] for key in keys}, 1
    try:
        generator.load_state_dict(checkpoint["generator"])
        ema = checkpoint["generator_ema"]  # None where the run kept no average: it was G itself
        average.load_state_dict(ema if ema is not None else checkpoint["generator"])
        discriminator.load_state_dict(checkpoint["discriminator"])
    except RuntimeError:  # a file from before settings were recorded, whose networks have other sizes
        raise cli.UserError(f"the networks in the checkpoint (G {checkpoint['generator_config']}, D "
                            f"{checkpoint['discriminator_config']}) differ from those the flags ask for (G "
                            f"{generator.config}, D {discriminator.config}): pass the flags it was trained with, "
                            f"or another --out-dir") from None
    for optimizer, state, rate in [(optimizer_g, checkpoint["optimizer_g"], learning_rates[0]),
                                   (optimizer_d, checkpoint["optimizer_d"], learning_rates[1])]:
        optimizer.load_state_dict(state)
        for group in optimizer.param_groups:
            group["lr"] = rate
    history = checkpoint["history"]
    history.setdefault("sampled", ["average"] * len(history["quality_epoch"]))  # files from before G could be picked
    return history, checkpoint["epoch"] + 1


def check_losses(steps, epoch, checkpoint_path):
    """Stop (``UserError``) when D's or G's loss of the epoch's ``steps`` (one row per step, D's loss first, then
    G's) diverged: before the epoch is saved."""
    runs.stop_if_diverged({"the discriminator's loss": steps[:, 0], "the generator's loss": steps[:, 1]}, epoch,
                          checkpoint_path, "lower --lr-g and --lr-d")


def record_steps(history, steps):
    """One epoch's per-step rows (D loss, G loss, mean D(x), mean D(G(z))) into ``history``: every step, and the
    epoch's means."""
    for key, values in zip(["loss_d", "loss_g", "d_real", "d_fake"], steps.T.tolist()):
        history["step_" + key] += values
        history[key].append(sum(values) / len(values))


def epoch_summary(history, epoch, epochs):
    """The one line printed after each epoch: losses, D's outputs, the quality measured this epoch, seconds."""
    line = (f"epoch {epoch:3d}/{epochs}  loss D {history['loss_d'][-1]:.3f}  G {history['loss_g'][-1]:.3f}  "
            f"D(x) {history['d_real'][-1]:.2f}  D(G(z)) {history['d_fake'][-1]:.2f}")
    if history["quality_epoch"][-1:] == [epoch]:
        line += (f"  FD {history['frechet_distance'][-1]:7.2f}  IS {history['inception_score'][-1]:.2f}  "
                 f"rarest class {100 * history['min_class_share'][-1]:.1f}%")
        if history["sampled"][-1] == "generator":
            line += "  (sampled: G itself, ahead of its average)"
    return f"{line}  {history['seconds'][-1]:5.1f} s"


def final_metrics(scores, history, judge_accuracy=None):
    """What a GAN script's metrics.json holds besides its own keys: the final quality ``scores``, the judge's test
    accuracy (where a classifier judged the samples), the last epoch's mean losses and D outputs, the epochs and
    their seconds."""
    judge = {} if judge_accuracy is None else {"classifier_test_accuracy": judge_accuracy}
    return {**scores, **judge, **{key: history[key][-1] for key in ("loss_d", "loss_g", "d_real", "d_fake")},
            "epochs": len(history["loss_d"]), "train_seconds": sum(history["seconds"])}


def inception_fid(network, generator, real_images, num_samples, device, seed):
    """The standard FID (common/fid.py) of ``num_samples`` images of ``generator`` against ``real_images``, in the
    features of ``fid.load_network``'s ``network``, with what a reader needs to compare it with another: the
    implementation and both counts."""
    generated = generate(generator, num_samples, device, seed=seed)
    return {"fid_inception": fid.frechet_inception_distance(real_images, generated, network, device),
            "fid_generated_images": num_samples, "fid_real_images": len(real_images),
            "fid_implementation": fid.IMPLEMENTATION}


def print_metrics(metrics, class_names):
    print("  ".join(f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}"
                    for key, value in metrics.items() if key != "class_shares"))
    if "class_shares" in metrics:
        print("class shares (%): " + " ".join(f"{name}:{100 * share:.1f}"
                                              for name, share in zip(class_names, metrics["class_shares"])))


def report(metrics, generator, cfg, out, device, class_names, fid_network=None, real_images=None):
    """The end of a GAN script's run: the standard FID of ``generator`` against ``real_images`` added to ``metrics``
    where ``fid_network`` is given (--fid inception), metrics.json written and printed, and with --num-samples N
    samples.npz, written batch by batch. Returns ``metrics``."""
    if fid_network is not None:
        metrics.update(inception_fid(fid_network, generator, real_images, cfg.fid_samples, device, cfg.seed + 3))
    runs.write_json(out / "metrics.json", metrics)
    print_metrics(metrics, class_names)
    if cfg.num_samples:
        runs.write_samples(out / "samples.npz", generate_batches(generator, cfg.num_samples, device,
                                                                 seed=cfg.seed + 1), cfg.num_samples)
    print(f"wrote {out}/")
    return metrics


def load_generator(path, device, flag=None):
    """The generator a GAN checkpoint's samples come from, rebuilt from the file alone: ``generator_sampled`` where
    the run picked G itself, else the weight average where the run kept one, else G.

    Returns (generator in eval mode, checkpoint). The DCGAN's module is imported only when a DCGAN file is loaded.
    ``flag``: the option that named the file, for the error message when it is not a GAN checkpoint.
    """
    checkpoint = runs.load_checkpoint(path, device, kind="gan", flag=flag)
    architecture = checkpoint.get("architecture")
    if architecture == "mlp":
        generator_class = MLPGenerator
    elif architecture == "dcgan":
        from common import dcgan
        generator_class = dcgan.Generator
    else:
        raise cli.UserError(f"{path} is not a GAN checkpoint of this project (architecture {architecture!r}); "
                            f"pass one written by gan_mnist.py or dcgan_cifar10.py")
    generator = generator_class(**checkpoint["generator_config"]).to(device)
    for key in ("generator_sampled", "generator_ema", "generator"):  # older files lack the first, or hold None
        if checkpoint.get(key) is not None:
            generator.load_state_dict(checkpoint[key])
            break
    return generator.eval(), checkpoint


# ----- figures -----

def plot_training(out, history, title, reference):
    """The figures of a GAN's training from its history: losses.png, discriminator.png, grids/epoch_NNN.png,
    progress.png and, where quality was measured, quality.png (the distance to ``reference``)."""
    plot_losses(out / "losses.png", history, f"{title}: losses")
    plot_discriminator_outputs(out / "discriminator.png", history, f"{title}: discriminator outputs")
    for epoch, grid in enumerate(history["grids"], start=1):
        save_epoch_grid(out / "grids" / f"epoch_{epoch:03d}.png", grid, epoch, "Fixed noise")
    plot_progress(out / "progress.png", history["grids"], f"{title}: the same 64 z vectors after each epoch")
    if history["quality_epoch"]:
        plot_quality(out / "quality.png", history, title, reference)


def smooth(values, window):
    """Moving average over ``window`` steps (shorter at the ends), so per-iteration curves read as trends."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2 or window < 2:
        return values
    kernel = np.ones(min(window, len(values)))
    return np.convolve(values, kernel, mode="same") / np.convolve(np.ones(len(values)), kernel, mode="same")


def plot_iterations(axes, history, curves):
    """Per-iteration ``curves`` (history key, label, colour) against the epoch, each iteration faint and a moving mean
    over about a fifth of an epoch solid; with too few iterations per epoch to average, each iteration alone, solid.
    Returns the window of the mean (1: none)."""
    epochs = len(history["loss_g"])
    steps_per_epoch = len(history[curves[0][0]]) / epochs
    window = max(1, round(steps_per_epoch / 5))
    for key, label, color in curves:
        x = np.arange(1, len(history[key]) + 1) / steps_per_epoch
        if window > 1:
            axes.plot(x, history[key], color=color, alpha=0.15, linewidth=0.5)
        plots.plot_line(axes, x, smooth(history[key], window), color=color, label=label)
    axes.set_xlabel("epoch")
    return window


def iterations_title(window):
    return "per iteration" + (f" (faint: each; solid: mean of {window})" if window > 1 else "")


def plot_losses(path, history, title):
    """G and D loss per iteration (faint: raw, solid: smoothed) beside their means per epoch.

    Reads ``history["step_loss_g"]``, ``["step_loss_d"]`` (one value per iteration) and ``["loss_g"]``,
    ``["loss_d"]`` (one per epoch).
    """
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    curves = [("step_loss_d", "discriminator", "C0"), ("step_loss_g", "generator", "C1")]
    window = plot_iterations(left, history, curves)
    # The first iterations' spikes would squash the rest: the axis holds the smoothed curves and the raw losses'
    # 0.5th to 99.5th percentiles, and 0 (a hinge loss of G falls below it).
    raw = np.concatenate([history[key] for key, _, _ in curves])
    solid = np.concatenate([smooth(history[key], window) for key, _, _ in curves])
    low = min(0, np.percentile(raw, 0.5), solid.min())
    high = max(np.percentile(raw, 99.5), solid.max())
    pad = 0.05 * (high - low)
    left.set(ylabel="loss", title=iterations_title(window), ylim=(low - pad if low < 0 else 0, high + pad))
    epochs = np.arange(1, len(history["loss_g"]) + 1)
    plots.plot_line(right, epochs, history["loss_d"], color="C0", label="discriminator")
    plots.plot_line(right, epochs, history["loss_g"], color="C1", label="generator")
    right.set(xlabel="epoch", ylabel="mean loss over the epoch", title="per epoch")
    for axes in (left, right):
        plots.style_axes(axes)
    # One legend for both panels, below them: inside, it would cover the iterations' curves.
    figure.legend(*right.get_legend_handles_labels(), loc="outside lower center", ncols=2)
    figure.suptitle(title)
    plots.save_figure(figure, path)


def plot_discriminator_outputs(path, history, title):
    """Mean D(x) on real and D(G(z)) on generated batches, per iteration (smoothed), from
    ``history["step_d_real"]`` and ``["step_d_fake"]``; at the game's equilibrium both sit at 1/2."""
    figure, axes = plt.subplots(figsize=(6.5, 4), layout="constrained")
    window = plot_iterations(axes, history, [("step_d_real", "D(x), real images", "C2"),
                                             ("step_d_fake", "D(G(z)), generated", "C3")])
    axes.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="equilibrium")
    # A little beyond [0, 1]: a discriminator that wins outright puts its curves on 0 and 1, which must still show.
    axes.set(ylabel="mean discriminator output", ylim=(-0.03, 1.03), title=f"{title}\n{iterations_title(window)}")
    plots.style_axes(axes)
    figure.legend(loc="outside lower center", ncols=3)  # below the axes: inside, it would cover the curves
    plots.save_figure(figure, path)


def save_epoch_grid(path, images, epoch, title):
    """The fixed-noise batch (uint8) after one epoch, as a square grid."""
    plots.save_grid(path, data.to_unit_range(images), round(math.sqrt(len(images))), f"{title}, epoch {epoch}")


def progress_epochs(num_epochs, count=5):
    """The epochs the progress figure shows: the first, evenly spaced ones in between, the last."""
    return sorted({round(1 + i * (num_epochs - 1) / (count - 1)) for i in range(count)}) if num_epochs > 1 else [1]


def plot_progress(path, grids, title, count=5):
    """The fixed-noise grids (``grids[e - 1]``: uint8 images after epoch e) of chosen epochs side by side."""
    epochs = progress_epochs(len(grids), count)
    ncols = round(math.sqrt(len(grids[0])))
    # Each panel's axes (about 2/3 of its width) at least as many pixels wide as its grid: the one-pixel gaps between
    # 64 x 64 tiles would otherwise be dropped unevenly when the grid is scaled down.
    inches = max(2.6, 1.6 * ncols * (grids[0].shape[-1] + 1) / plots.DPI)
    figure, all_axes = plt.subplots(1, len(epochs), figsize=(inches * len(epochs), inches + 0.4), squeeze=False)
    for axes, epoch in zip(all_axes[0], epochs):
        plots.show_tiles(axes, data.to_unit_range(grids[epoch - 1]), ncols, f"epoch {epoch}")
    figure.suptitle(title)
    plots.save_figure(figure, path)


def plot_quality(path, history, title, reference):
    """Frechet distance, inception score and the rarest class's share over training, from ``history["quality_epoch"]``,
    ``["frechet_distance"]``, ``["inception_score"]`` and ``["min_class_share"]``; ``reference`` names the real
    images the distance was measured against."""
    epochs = history["quality_epoch"]
    figure, (fd, score, share) = plt.subplots(1, 3, figsize=(13, 3.8), layout="constrained")
    plots.plot_line(fd, epochs, history["frechet_distance"])
    fd.set(ylabel="Frechet distance (lower is better)", yscale="log")
    plots.plot_line(score, epochs, history["inception_score"], color="C1")
    score.set(ylabel="inception score (higher is better)")
    classes = len(history["class_shares"][-1]) if history.get("class_shares") else 10
    balanced = 100 / classes
    plots.plot_line(share, epochs, np.array(history["min_class_share"]) * 100, color="C2", label="rarest class")
    share.axhline(balanced, color="grey", linestyle=":", label="balanced")
    # The rarest share lies between 0 (a class never drawn) and the balanced one; a margin keeps both ends visible.
    share.set(ylabel="share of generated images (%)", ylim=(-0.05 * balanced, 1.05 * balanced))
    for axes in (fd, score, share):
        axes.set(xlabel="epoch")
        plots.style_axes(axes)
    share.legend()
    figure.suptitle(f"{title}: generated images against {reference}, in a classifier's eyes")
    plots.save_figure(figure, path)
