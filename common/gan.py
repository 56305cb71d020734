"""The GAN losses and the bookkeeping of the GAN scripts' training loops: gan_mnist.py and dcgan_cifar10.py each
show their own step (D, then G) and epoch loop, and every piece of bookkeeping inside it is one call here. Every
sample comes from the weight average (common/weight_average.py), saved as the checkpoint's ``generator_ema``.
"""
import copy
import math

import torch
import torch.nn.functional as F

from common import checkpoints, classifier, cli, data, dcgan, distributed, fid, files, mlp_gan, plots, progress
from common.seeds import epoch_batches

QUALITY_KEYS = ("frechet_distance", "inception_score", "class_shares", "min_class_share")
GENERATORS = {"mlp": mlp_gan.Generator, "dcgan": dcgan.Generator}  # a checkpoint's architecture -> its generator


def discriminator_loss(real_logits, fake_logits, real_target=1.0):
    """-log D(x) - log(1 - D(G(z))), D = sigmoid(logit): D's side of Goodfellow et al. 2014, eq. 1. ``real_target``
    < 1 is one-sided label smoothing (Salimans et al. 2016, sec. 3.4): D is not rewarded for ever more confident
    "real" calls, which keeps its gradients for G informative."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_target))
    fake = F.softplus(fake_logits).mean()                              # -log(1 - sigmoid(l)) = softplus(l)
    return real + fake


def generator_loss(fake_logits):
    """Non-saturating generator loss -log D(G(z)) (Goodfellow et al. 2014, sec. 3): minimising log(1 - D(G(z))), as
    in eq. 1, gives G almost no gradient early on, when D rejects its samples with confidence; maximising
    log D(G(z)) has the same fixed point and strong gradients there."""
    return F.softplus(-fake_logits).mean()                             # -log sigmoid(l) = softplus(-l)


def sample_quality(judge, generator, real_features, device, seed):
    """QUALITY_KEYS in the classifier ``judge``'s eyes, of as many samples (z from ``seed``) as there are real images
    behind ``real_features``: the distance's bias depends on both counts."""
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


def generate(generator, num_images, device, seed):
    """``num_images`` uint8 images (CPU) from z ~ N(0, I) drawn from ``seed``, the global generator untouched."""
    return torch.cat(list(generate_batches(generator, num_images, device, seed)))


@torch.no_grad()
def generate_batches(generator, num_images, device, seed, batch_size=1000):
    """The images of ``generate``, one uint8 batch at a time, so that samples.npz's need not fit in memory at once."""
    generator.eval()
    rng = torch.Generator(device=device).manual_seed(seed)
    for start in range(0, num_images, batch_size):
        z = torch.randn(min(batch_size, num_images - start), generator.config["latent_dim"], device=device,
                        generator=rng)
        yield data.to_uint8(generator(z), -1, 1)


# ----- the epoch loop's bookkeeping -----

def start(checkpoint_path, cfg, architecture, fixed, generator, discriminator, optimizer_g, optimizer_d):
    """Where training starts: (the weight average, history, first epoch to train). With ``cfg.resume`` and a
    checkpoint of an ``architecture`` GAN trained with the same settings ``fixed``, everything continues from it but
    the learning rates, which are the flags' (a run resumed after a divergence may lower them)."""
    distributed.check_batch_size(cfg.batch_size)
    checkpoint = distributed.from_main(_resumed, checkpoint_path, cfg, architecture, fixed)
    average = copy.deepcopy(generator)
    if checkpoint is None:
        keys = ["step_loss_d", "step_loss_g", "step_d_real", "step_d_fake", "loss_d", "loss_g", "d_real", "d_fake",
                "seconds", "quality_epoch", *QUALITY_KEYS]
        history, first_epoch = {key: [] for key in keys}, 1
    else:
        for network, key in [(generator, "generator"), (average, "generator_ema"), (discriminator, "discriminator")]:
            network.load_state_dict(checkpoint[key])
        for optimizer, key, rate in [(optimizer_g, "optimizer_g", cfg.lr_g), (optimizer_d, "optimizer_d", cfg.lr_d)]:
            optimizer.load_state_dict(checkpoint[key])
            for group in optimizer.param_groups:
                group["lr"] = rate
        history, first_epoch = checkpoint["history"], checkpoint["epoch"] + 1
    distributed.broadcast_parameters(generator, discriminator)  # the average is rank 0's alone: it samples
    return average, history, first_epoch


def _resumed(checkpoint_path, cfg, architecture, fixed):
    if cfg.resume and checkpoint_path.exists():
        checkpoint = checkpoints.load_checkpoint(checkpoint_path, "cpu", kind="gan")
        if checkpoint["architecture"] != architecture:
            raise cli.UserError(f"{checkpoint_path} holds a {checkpoint['architecture']} GAN, not the "
                                f"{architecture} GAN this script trains: pass another --out-dir")
        checkpoints.check_resumable(checkpoint, cfg, fixed, checkpoint_path)
        print(f"resuming from {checkpoint_path} after epoch {checkpoint['epoch']}")
        return checkpoint
    if cfg.resume:
        print(f"no checkpoint at {checkpoint_path} to resume from: starting from scratch")
    return None


def batches(train_images, cfg, epoch, device):
    """The epoch's batches of indices (common/seeds.py), under a progress bar."""
    return progress.progress(epoch_batches(len(train_images), cfg.batch_size, cfg.seed, epoch, device), epoch,
                             cfg.epochs)


def record_epoch(history, steps, epoch, checkpoint_path, timer, generator, discriminator):
    """The epoch's ``steps`` (``step_statistics``) and seconds into ``history``; stops before anything is saved if a
    loss diverged. Steps and batch norm's running statistics are averaged over the processes."""
    steps = distributed.total(torch.stack(steps)) / distributed.world_size()
    checkpoints.stop_if_diverged({"the discriminator's loss": steps[:, 0], "the generator's loss": steps[:, 1]},
                                 epoch, checkpoint_path, "lower --lr-g and --lr-d")
    for key, values in zip(["loss_d", "loss_g", "d_real", "d_fake"], steps.T.tolist()):
        history["step_" + key] += values
        history[key].append(sum(values) / len(values))
    distributed.average_buffers(generator, discriminator)
    history["seconds"].append(timer.elapsed())


def quality_due(cfg, epoch):
    """Whether sample quality is measured after ``epoch``: every --quality-every epochs and after the last."""
    return (cfg.quality_every and epoch % cfg.quality_every == 0) or epoch == cfg.epochs


def record_quality(history, epoch, scores):
    history["quality_epoch"].append(epoch)
    for key in QUALITY_KEYS:
        history[key].append(scores[key])


def is_best(history, epoch):
    """Whether ``epoch`` was measured and scored the lowest tracked distance so far (ties: the later epoch)."""
    return history["quality_epoch"][-1:] == [epoch] and \
        history["frechet_distance"][-1] == min(history["frechet_distance"])


def fixed_noise(cfg, device):
    """The z of the epoch grids: the same plots.GRID_SIZE vectors after every epoch, and in a resumed run."""
    return torch.randn(plots.GRID_SIZE, cfg.latent_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(device)


@torch.no_grad()
def save_grid(out, epoch, generator, noise):
    """out/grids/epoch_NNN.png: ``generator``'s images of the fixed ``noise`` after ``epoch``. A run that starts at
    epoch 1 first removes the grids of a run it replaces."""
    if epoch == 1 and distributed.is_main():
        for old in (out / "grids").glob("epoch_*.png"):
            old.unlink()
    images = data.to_unit_range(data.to_uint8(generator.eval()(noise), -1, 1))
    plots.save_tiles(out / "grids" / f"epoch_{epoch:03d}.png", images, round(math.sqrt(len(images))))


def checkpoint_state(architecture, cfg, epoch, history, generator, average, discriminator, optimizer_g, optimizer_d):
    """What a GAN checkpoint holds after ``epoch`` (checkpoints.KINDS["gan"])."""
    return dict(architecture=architecture, generator=generator.state_dict(), generator_config=generator.config,
                generator_ema=average.state_dict(), discriminator=discriminator.state_dict(),
                discriminator_config=discriminator.config, optimizer_g=optimizer_g.state_dict(),
                optimizer_d=optimizer_d.state_dict(), epoch=epoch, history=history, settings=vars(cfg))


def epoch_summary(history, epoch, epochs):
    """The one line printed after each epoch."""
    line = (f"epoch {epoch:3d}/{epochs}  loss D {history['loss_d'][-1]:.3f}  G {history['loss_g'][-1]:.3f}  "
            f"D(x) {history['d_real'][-1]:.2f}  D(G(z)) {history['d_fake'][-1]:.2f}")
    if history["quality_epoch"][-1:] == [epoch]:
        line += (f"  classifier FD {history['frechet_distance'][-1]:7.2f}  IS {history['inception_score'][-1]:.2f}  "
                 f"rarest class {100 * history['min_class_share'][-1]:.1f}%")
    return f"{line}  {history['seconds'][-1]:5.1f} s"


def final_metrics(scores, history, judge=None):
    """What a GAN script's metrics.json holds besides its own keys: the final ``scores``, the ``judge`` classifier's
    identity, the last epoch's means, the epochs and the seconds of their training steps alone."""
    judge = {} if judge is None else {"classifier": judge}
    return {**scores, **judge, **{key: history[key][-1] for key in ("loss_d", "loss_g", "d_real", "d_fake")},
            "epochs": len(history["loss_d"]), "train_seconds": sum(history["seconds"])}


def report(scores, generator, cfg, out, device, class_names, fid_network=None, reference=None, reference_name=None):
    """The end of a GAN script's run: with ``fid_network``, the standard FID and KID against ``reference`` added to
    ``scores``; metrics.json written and printed; with --num-samples, samples.npz. Returns the metrics."""
    if fid_network is not None:
        generated = generate(generator, cfg.fid_samples, device, seed=cfg.seed + 3)
        scores.update(fid.fid_and_kid(fid.reference_features(reference, fid_network, device),
                                      fid.inception_features(generated, fid_network, device), cfg.seed + 3),
                      fid_reference=reference_name)
    files.write_json(out / "metrics.json", scores)
    print("  ".join(f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}"
                    for key, value in scores.items() if not isinstance(value, (list, dict))))
    if "class_shares" in scores:
        print("class shares (%): " + " ".join(f"{name}:{100 * share:.1f}"
                                              for name, share in zip(class_names, scores["class_shares"])))
    if cfg.num_samples:
        files.write_samples(out / "samples.npz", generate_batches(generator, cfg.num_samples, device,
                                                                 seed=cfg.seed + 1), cfg.num_samples)
    print(f"wrote {out}/")
    return scores


def load_generator(path, device, flag=None, architecture=None):
    """The weight average of a GAN checkpoint (of ``architecture``, if given) and the checkpoint."""
    checkpoint = checkpoints.load_checkpoint(path, device, kind="gan", flag=flag)
    found = checkpoint["architecture"]
    if found not in GENERATORS or (architecture and found != architecture):
        wanted = f"the {architecture} GAN this script samples" if architecture else "a GAN of this project"
        raise cli.UserError(f"{path} holds a {found} GAN, not {wanted}: sample it with the script that trained it, "
                            f"or pass another path")
    generator = GENERATORS[found](**checkpoint["generator_config"]).to(device)
    generator.load_state_dict(checkpoint["generator_ema"])
    return generator.eval(), checkpoint
