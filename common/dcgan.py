"""The DCGAN of Radford et al. (2016), which dcgan_cifar10.py trains: at 64 x 64 the paper's own network (its figure
1), at 32 x 32 the same with one strided layer fewer on each side. Its guidelines (section 3): strided convolutions,
no pooling, no fully connected hidden layer; batch norm but in D's first layer; ReLU in G, LeakyReLU(0.2) in D.
"""
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as with_spectral_norm

IMAGE_SIZES = (32, 64)  # the sizes the networks are built for: 4 x 4 at the inner end, doubled per strided layer


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
    """z (N x latent_dim) -> images (N x 3 x image_size x image_size) in [-1, 1]; c = base_channels."""

    def __init__(self, latent_dim=100, base_channels=48, image_size=32):
        super().__init__()
        self.config = dict(latent_dim=latent_dim, base_channels=base_channels, image_size=image_size)
        c = base_channels
        top = c * image_size // 8  # channels at 4 x 4: 4c at 32 x 32, 8c at 64 x 64
        # Convolutions followed by batch norm carry no bias, here and in the discriminator: the norm's shift does.
        layers = [nn.Unflatten(1, (latent_dim, 1, 1)),                                # latent_dim x 1 x 1
                  nn.ConvTranspose2d(latent_dim, top, 4, 1, 0, bias=False), nn.BatchNorm2d(top), nn.ReLU()]  # 4 x 4
        channels = top
        while channels > c:  # halve the channels, double the size: 2c x 8 x 8, c x 16 x 16 at 32; one more at 64
            layers += [nn.ConvTranspose2d(channels, channels // 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(channels // 2), nn.ReLU()]
            channels //= 2
        layers += [nn.ConvTranspose2d(c, 3, 4, 2, 1), nn.Tanh()]                     # 3 x image_size x image_size
        self.net = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, z):
        return self.net(z)


class Discriminator(nn.Module):
    """Images (N x 3 x image_size x image_size) in [-1, 1] -> one logit per image (N); c = base_channels. With
    ``spectral_norm`` (Miyato et al. 2018), which bounds D's Lipschitz constant, in place of batch norm."""

    def __init__(self, base_channels=48, spectral_norm=False, image_size=32):
        super().__init__()
        self.config = dict(base_channels=base_channels, spectral_norm=spectral_norm, image_size=image_size)
        c = base_channels

        def conv(in_channels, out_channels, stride, padding, bias=True):
            layer = nn.Conv2d(in_channels, out_channels, 4, stride, padding, bias=bias)
            init_weights(layer)  # before the parametrisation, which then normalises these weights
            return with_spectral_norm(layer) if spectral_norm else layer

        def norm(channels):
            return nn.Identity() if spectral_norm else nn.BatchNorm2d(channels)

        layers = [conv(3, c, 2, 1), nn.LeakyReLU(0.2)]  # c x size/2 x size/2 from 3 x size x size, no batch norm here
        channels = c
        while channels < c * image_size // 8:  # double the channels, halve the size: 2c x 8 x 8, 4c x 4 x 4 at 32
            layers += [conv(channels, 2 * channels, 2, 1, spectral_norm), norm(2 * channels), nn.LeakyReLU(0.2)]
            channels *= 2
        layers += [conv(channels, 1, 1, 0),                                   # 1 x 1 x 1: the logit
                   nn.Flatten(0)]                                             # N
        self.net = nn.Sequential(*layers)
        for module in self.net.modules():
            if isinstance(module, nn.BatchNorm2d):
                init_weights(module)

    def forward(self, images):
        return self.net(images)
