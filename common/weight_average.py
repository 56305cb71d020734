"""The exponential moving average of G's weights that every GAN sample is drawn from.

An average of a generator's recent weights draws cleaner samples than the generator itself, whose weights jitter
from step to step (Yazici et al. 2019). Averaging starts after a burn-in, as tail (Polyak-Ruppert) averaging does:
in its first epoch a GAN's generator changes so fast that even an average of its last few steps draws worse samples
than the generator itself (BENCHMARKS.md), so through the burn-in's epochs the average is G itself. From
then on its half-life is counted in images and grows with the images seen since, as in StyleGAN2-ADA (Karras et al.
2020, ``ema_kimg`` and ``ema_rampup``): after n of them it is min(half_life, rampup * n), and a step of B images moves
the average by 1 - beta toward G, beta = 0.5 ** (B / half-life). So the average first spans only a small share of
training so far and follows a generator that still changes fast; later it spans ``half_life`` images. The random initial
weights never linger in it, as they would under a fixed decay (0.999 ** 938 = 39% of them after an MNIST epoch).

Batch norm's running statistics cannot be averaged with the weights: those copied from G belong to G's weights and
blur the average's samples. ``reestimate_batch_norm`` measures the average's own from its outputs, BigGAN's
"standing statistics" (Brock et al. 2019, appendix C.1), before anything samples it.
"""
import torch
from torch.optim.swa_utils import update_bn

from common import cli

SETTINGS = {  # the flags of both GAN scripts; each sets its own --ema-half-life
    "ema_burn_in": (1, "epochs before the average starts: until then it is G itself", "[0, inf)", cli.FIXED),
    "ema_rampup": (0.1, "the average's half-life is at most this share of the images seen since the burn-in "
                        "(StyleGAN2-ADA's ramp-up); 0: the full half-life at once", "[0, 1]", cli.FIXED),
}


def decay(step, cfg, epoch_images):
    """beta of training step ``step`` (0, 1, ...; cfg.batch_size images each, ``epoch_images`` an epoch) under the
    settings ema_half_life (images), ema_rampup and ema_burn_in (epochs) of ``cfg``: 0, the average being G itself,
    through the burn-in and for a half-life of 0."""
    averaged = (step + 1) * cfg.batch_size - cfg.ema_burn_in * epoch_images  # images seen since the burn-in
    span = min(cfg.ema_half_life, cfg.ema_rampup * averaged) if cfg.ema_rampup else cfg.ema_half_life
    return 0.5 ** (cfg.batch_size / span) if averaged > 0 and span > 0 else 0.0


@torch.no_grad()
def update(average, generator, beta):
    """average <- beta * average + (1 - beta) * generator, weight by weight; buffers (batch norm's statistics) are
    copied, to be re-estimated before sampling."""
    for averaged, current in zip(average.parameters(), generator.parameters()):
        averaged.lerp_(current, 1 - beta)
    for averaged, current in zip(average.buffers(), generator.buffers()):
        averaged.copy_(current)


def reestimate_batch_norm(average, device, num_images=10000, batch_size=500, seed=0):
    """The batch-norm statistics of ``average`` measured anew from its outputs for ``num_images`` fresh z, in
    training mode with a cumulative mean (torch.optim.swa_utils.update_bn); returns it in eval mode. The z come from
    their own generator, seeded by ``seed``: the global one, and so training's noise, stays untouched."""
    rng = torch.Generator(device=device).manual_seed(seed)
    latent_dim = average.config["latent_dim"]
    batches = [torch.randn(batch_size, latent_dim, device=device, generator=rng)
               for _ in range(num_images // batch_size)]
    update_bn(batches, average)
    return average.eval()
