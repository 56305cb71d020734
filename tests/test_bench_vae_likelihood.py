"""bench/vae_likelihood.py's difference estimator: the k = 5,000 bound of all test images from a subset of them."""
import sys

import torch

from common import vae
from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import vae_likelihood  # noqa: E402


def tiny_vae_and_images(count=40):
    torch.manual_seed(0)
    model = vae.MLPVAE(latent_dim=4, hidden=32).eval()
    return model, torch.bernoulli(torch.full((count, 1, 28, 28), 0.2))


def test_on_the_whole_set_the_estimate_is_the_large_k_mean_with_no_error():
    model, images = tiny_vae_and_images()
    estimate, error, cheap, gap = vae_likelihood.difference_estimate(model, images, 2, 512, len(images),
                                                                     torch.Generator().manual_seed(0))
    direct = vae.importance_weighted_nll_per_image(model, images, 512).mean().item()
    assert error == 0
    assert abs(estimate - direct) < 0.05  # two Monte Carlo estimates of one number, 512 samples each
    assert gap < 0  # more samples, a tighter bound (Burda et al., Theorem 1)
    assert abs(estimate - (cheap + gap)) < 1e-9


def test_a_random_subset_estimates_the_whole_sets_mean_within_its_standard_error():
    model, images = tiny_vae_and_images(200)
    whole = vae_likelihood.difference_estimate(model, images, 2, 256, len(images), torch.Generator().manual_seed(0))
    estimate, error, _, _ = vae_likelihood.difference_estimate(model, images, 2, 256, 50,
                                                               torch.Generator().manual_seed(1))
    assert 0 < error < 1
    assert abs(estimate - whole[0]) < 4 * error
