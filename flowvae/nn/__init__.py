"""Networks: plain ``nn.Module`` building blocks with no Pyro calls."""

from flowvae.nn.networks import MLP, ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from flowvae.nn.resnet import ConvResNet, ResidualBlock

__all__ = [
    "MLP",
    "ConvDecoder",
    "ConvEncoder",
    "ConvResNet",
    "MLPDecoder",
    "MLPEncoder",
    "ResidualBlock",
]
