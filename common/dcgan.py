"""The DCGAN of Radford et al. (2016) for 32 x 32 colour images, which dcgan_cifar10.py trains.

Generator: strided transposed convolutions with batch norm and ReLU, Tanh output. Discriminator: strided convolutions
with LeakyReLU(0.2) and batch norm on every layer but the first. No pooling and no fully connected hidden layer on
either side (the paper's guidelines, section 3). latent_interpolation.py rebuilds the generator from a checkpoint's
``generator_config`` alone, so the constructors take every size as an argument.
"""
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as with_spectral_norm


def init_weights(module):
    """The paper's initialisation: every weight from N(0, 0.02); batch norm scales from N(1, 0.02), shifts 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """z (N x latent_dim) -> images (N x 3 x 32 x 32) in [-1, 1]; c = base_channels."""

    def __init__(self, latent_dim=100, base_channels=48):
        super().__init__()
        self.config = dict(latent_dim=latent_dim, base_channels=base_channels)
        c = base_channels
        # Convolutions followed by batch norm carry no bias, here and in the discriminator: the norm's shift does.
        self.net = nn.Sequential(
            nn.Unflatten(1, (latent_dim, 1, 1)),                                              # latent_dim x 1 x 1
            nn.ConvTranspose2d(latent_dim, 4 * c, 4, 1, 0, bias=False), nn.BatchNorm2d(4 * c), nn.ReLU(),  # 4c x 4 x 4
            nn.ConvTranspose2d(4 * c, 2 * c, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * c), nn.ReLU(),       # 2c x 8 x 8
            nn.ConvTranspose2d(2 * c, c, 4, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),               # c x 16 x 16
            nn.ConvTranspose2d(c, 3, 4, 2, 1), nn.Tanh(),                                     # 3 x 32 x 32
        )
        self.apply(init_weights)

    def forward(self, z):
        return self.net(z)


class Discriminator(nn.Module):
    """Images (N x 3 x 32 x 32) in [-1, 1] -> one logit per image (N); c = base_channels.

    ``spectral_norm`` divides every weight by its largest singular value (Miyato et al. 2018), which bounds the
    discriminator's Lipschitz constant; it then replaces batch norm, as in their networks.
    """

    def __init__(self, base_channels=48, spectral_norm=False):
        super().__init__()
        self.config = dict(base_channels=base_channels, spectral_norm=spectral_norm)
        c = base_channels

        def conv(in_channels, out_channels, stride, padding, bias=True):
            layer = nn.Conv2d(in_channels, out_channels, 4, stride, padding, bias=bias)
            init_weights(layer)  # before the parametrisation, which then normalises these weights
            return with_spectral_norm(layer) if spectral_norm else layer

        def norm(channels):
            return nn.Identity() if spectral_norm else nn.BatchNorm2d(channels)

        self.net = nn.Sequential(                                               # 3 x 32 x 32
            conv(3, c, 2, 1), nn.LeakyReLU(0.2),                                # c x 16 x 16, no batch norm here
            conv(c, 2 * c, 2, 1, spectral_norm), norm(2 * c), nn.LeakyReLU(0.2),    # 2c x 8 x 8
            conv(2 * c, 4 * c, 2, 1, spectral_norm), norm(4 * c), nn.LeakyReLU(0.2),  # 4c x 4 x 4
            conv(4 * c, 1, 1, 0),                                               # 1 x 1 x 1: the logit
            nn.Flatten(0),                                                      # N
        )
        for module in self.net.modules():
            if isinstance(module, nn.BatchNorm2d):
                init_weights(module)

    def forward(self, images):
        return self.net(images)

