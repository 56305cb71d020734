"""The fully connected GAN of gan_mnist.py: an MLP generator with batch norm and an MLP discriminator with a
minibatch standard-deviation feature; each network's ``config`` rebuilds it from a checkpoint. G's output layer
can start as the training images' principal components (start_as_principal_components)."""
import math

import torch
from torch import nn

from common import data


class Generator(nn.Module):
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


@torch.no_grad()
def start_as_principal_components(generator, images, seed=0):
    """Start G's output layer as a principal-component model of uint8 ``images`` (N x C x H x W, the first 10,000 of
    them), taken before the Tanh (atanh of the pixels, clamped to +-0.98 so that black is a finite -2.3): its bias
    the images' mean, and added to its random weights the top latent_dim components, each scaled by its standard
    deviation and read through a fixed random projection of the last hidden layer. That layer's units are ReLUs of
    batch-normalised values, N(0, 1) at the start: mean 1 / sqrt(2 pi) and variance 1/2 - 1/(2 pi) each, so the
    projection gives about N(0, I) coordinates. G then draws blurred digit shapes from the first step, which training
    sharpens; from the usual random start the first hundred steps draw grey tiles and speckle. The random weights
    stay: without them the layer has rank latent_dim, and the quick trial's digits are further from MNIST's
    (BENCHMARKS.md, "The quick trial")."""
    output = generator.net[-3]                                            # the Linear before the Tanh
    pixels = torch.atanh(data.to_signed_range(images[:10000]).flatten(1).clamp(-0.98, 0.98))  # N x C*H*W
    variances, components = torch.linalg.eigh(torch.cov(pixels.T))        # ascending
    rank = generator.config["latent_dim"]
    scaled = components[:, -rank:] * variances[-rank:].clamp(min=0).sqrt()  # C*H*W x rank
    hidden_mean, hidden_variance = 1 / math.sqrt(2 * math.pi), 0.5 - 1 / (2 * math.pi)
    projection = torch.randn(rank, output.in_features, generator=torch.Generator().manual_seed(seed))
    weight = scaled @ projection.to(scaled.device) / math.sqrt(output.in_features * hidden_variance)
    output.weight.add_(weight)
    output.bias.copy_(pixels.mean(0) - hidden_mean * output.weight.sum(1))


class MinibatchStd(nn.Module):
    """Appends the features' standard deviation across the batch, averaged, as one more feature (Karras et al. 2018,
    sec. 3): a batch of near-identical fakes has a tell-tale low value, so D can punish a generator that collapses."""

    def forward(self, h):
        spread = h.std(dim=0, unbiased=False).mean().expand(len(h), 1)
        return torch.cat([h, spread], dim=1)


class Discriminator(nn.Module):
    """Image -> fully connected layers with LeakyReLU(0.2) -> one logit (D(x) = sigmoid(logit))."""

    def __init__(self, image_shape=(1, 28, 28), hidden=(512, 256), minibatch_std=True):
        super().__init__()
        self.config = dict(image_shape=list(image_shape), hidden=list(hidden), minibatch_std=minibatch_std)
        layers, width = [nn.Flatten()], math.prod(image_shape)         # C*H*W
        for size in hidden:
            layers += [nn.Linear(width, size), nn.LeakyReLU(0.2)]      # size
            width = size
        if minibatch_std:
            layers.append(MinibatchStd())                              # width + 1
            width += 1
        layers.append(nn.Linear(width, 1))                             # 1 logit
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x).squeeze(1)
