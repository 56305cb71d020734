"""Sample-quality numbers from a classifier's view of images: Frechet distance and inception score, the definitions
behind FID and IS (Heusel et al. 2017; Salimans et al. 2016), fed with any network's features and class probabilities.
"""
import torch


def frechet_distance(features_a, features_b):
    """Frechet distance between Gaussians fitted to two N x D feature sets (Heusel et al. 2017, eq. 6)."""
    a, b = features_a.double(), features_b.double()
    return frechet_distance_of_statistics(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T))


def frechet_distance_of_statistics(mean_a, covariance_a, mean_b, covariance_b):
    """d^2 = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)) between two Gaussians. The last trace is the
    sum of the square roots of the eigenvalues of the symmetric S_a^(1/2) S_b S_a^(1/2): no general matrix square
    root (and no scipy) is needed. Float64 throughout: the difference of large traces is small."""
    mean_a, mean_b = mean_a.double(), mean_b.double()
    covariance_a, covariance_b = covariance_a.double(), covariance_b.double()
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance_a)
    sqrt_a = eigenvectors @ torch.diag(eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T
    cross = torch.linalg.eigvalsh(sqrt_a @ covariance_b @ sqrt_a).clamp(min=0).sqrt().sum()
    distance = (mean_a - mean_b).pow(2).sum() + covariance_a.trace() + covariance_b.trace() - 2 * cross
    return float(distance.clamp(min=0))


def inception_score(probabilities, eps=1e-12):
    """exp(E_x KL(p(y|x) || p(y))) from N x K class probabilities (Salimans et al. 2016): between 1 (every image the
    same class mix) and K (each image confidently one class, classes equally common)."""
    p = probabilities.double()
    marginal = p.mean(0, keepdim=True)
    kl = (p * ((p + eps).log() - (marginal + eps).log())).sum(1)
    return float(kl.mean().exp())


def class_shares(probabilities):
    """The fraction of images whose most probable class is each of the K classes: where mode collapse shows."""
    counts = torch.bincount(probabilities.argmax(1), minlength=probabilities.shape[1])
    return (counts.double() / len(probabilities)).tolist()
