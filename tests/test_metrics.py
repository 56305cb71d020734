"""The sample-quality numbers of common/metrics.py on sets whose answer is known."""
import pytest
import torch

from common import metrics


def test_frechet_distance_is_zero_for_a_set_with_itself_and_grows_with_noise():
    features = torch.randn(2000, 16, generator=torch.Generator().manual_seed(0))
    assert metrics.frechet_distance(features, features) == pytest.approx(0, abs=1e-6)
    distances = [metrics.frechet_distance(features, features + noise * torch.randn_like(features))
                 for noise in (0.1, 0.5, 1.0)]
    assert distances[0] < distances[1] < distances[2]


def test_frechet_distance_matches_the_closed_form_for_shifted_scaled_gaussians():
    # N(0, I) against N(m, s^2 I) in D dimensions: |m|^2 + D (1 - s)^2.
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(200_000, 4, generator=generator)
    b = 2.0 + 3.0 * torch.randn(200_000, 4, generator=generator)
    assert metrics.frechet_distance(a, b) == pytest.approx(4 * 4.0 + 4 * (1 - 3.0) ** 2, rel=0.02)


def test_inception_score_runs_from_one_to_the_number_of_classes():
    confident_and_diverse = torch.eye(10).repeat(50, 1)
    one_class_only = torch.eye(10)[[3] * 500]
    uniform = torch.full((500, 10), 0.1)
    assert metrics.inception_score(confident_and_diverse) == pytest.approx(10, rel=1e-6)
    assert metrics.inception_score(one_class_only) == pytest.approx(1, rel=1e-6)
    assert metrics.inception_score(uniform) == pytest.approx(1, rel=1e-6)


def test_class_shares_count_the_most_probable_class():
    probabilities = torch.eye(3)[[0, 0, 1, 2]] * 0.8 + 0.05
    assert metrics.class_shares(probabilities) == pytest.approx([0.5, 0.25, 0.25])
