"""The fully connected GAN of gan_mnist.py: an MLP generator with batch norm and an MLP discriminator with a
minibatch standard-deviation feature; each network's ``config`` rebuilds it from a checkpoint."""
import math

import torch
from torch import nn


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
