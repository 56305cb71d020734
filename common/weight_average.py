"""The exponential moving average of G's weights that every GAN sample is drawn from.

An average of a generator's recent weights draws cleaner samples than the generator itself, whose weights jitter
from step to step (Yazici et al. 2019). Its half-life is counted in images and grows with the images seen, as in
StyleGAN2-ADA (Karras et al. 2020, ``ema_kimg`` and ``ema_rampup``): after n images it is min(half_life, rampup * n),
and a step of B images moves the average by 1 - beta toward G, beta = 0.5 ** (B / half-life). Early in training
the average spans only the last few percent of the images seen, so it follows a generator that changes fast and is
worth sampling from the first epoch on; later it spans ``half_life`` images. The random initial weights never
linger in it, as they would under a fixed decay (0.999 ** 938 = 39% of them after an MNIST epoch).

Batch norm's running statistics cannot be averaged with the weights: those copied from G belong to G's weights and
blur the average's samples. ``reestimate_batch_norm`` measures the average's own from its outputs, BigGAN's
"standing statistics" (Brock et al. 2019, appendix C.1), before anything samples it.
"""
import torch
from torch.optim.swa_utils import update_bn

from common import cli

SETTINGS = {  # the flags of both GAN scripts; each sets its own --ema-half-life
    "ema_rampup": (0.05, "the average's half-life is at most this share of the images seen so far (StyleGAN2-ADA's "
                         "ramp-up); 0: the full half-life from the first step", "[0, 1]", cli.FIXED),
}


def decay(images_seen, batch_images, half_life, rampup):
    """beta of the step that brings the images seen to ``images_seen``, ``batch_images`` of them in this step.
    A half-life of 0 makes the average a copy of G."""
    span = min(half_life, rampup * images_seen) if rampup else half_life
    return 0.5 ** (batch_images / span) if span > 0 else 0.0


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
