"""Networks: plain ``nn.Module`` building blocks with no Pyro calls."""

from flowvae.nn.resnet import ConvResNet, ResidualBlock

__all__ = ["ConvResNet", "ResidualBlock"]
