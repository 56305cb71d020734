"""The exponential moving average of G's weights that every GAN sample is drawn from.

An average of a generator's recent weights draws cleaner samples than the generator, whose weights jitter from step
to step (Yazici et al. 2019). It starts after a burn-in, as tail (Polyak-Ruppert) averaging does: in its first epoch
a GAN's generator changes too fast to average. Its half-life then grows with the images seen, as in StyleGAN2-ADA
(Karras et al. 2020): it follows a generator that still changes fast, and the initial weights never linger in it.
Batch norm's statistics copied from G blur the average's samples: ``reestimate_batch_norm`` measures its own,
BigGAN's "standing statistics" (Brock et al. 2019, appendix C.1).
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
    """beta = 0.5 ** (batch size / half-life) of training step ``step`` (0, 1, ...), the half-life min(ema_half_life,
    ema_rampup * images since the burn-in); 0, the average being G itself, through the burn-in."""
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
    """The batch-norm statistics of ``average`` measured anew from its outputs for ``num_images`` fresh z; returns it
    in eval mode. The z come from their own seeded generator: training's noise stays untouched."""
    rng = torch.Generator(device=device).manual_seed(seed)
    latent_dim = average.config["latent_dim"]
    batches = [torch.randn(batch_size, latent_dim, device=device, generator=rng)
               for _ in range(num_images // batch_size)]
    update_bn(batches, average)
    return average.eval()
