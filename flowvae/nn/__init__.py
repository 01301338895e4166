"""Networks: plain ``nn.Module`` building blocks with no Pyro calls."""

from flowvae.nn.dense_resample import DenseDecoder, DenseEncoder
from flowvae.nn.densenet import ChannelAttention, DenseBlock, DenseLayer, DenseNet
from flowvae.nn.networks import MLP, ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from flowvae.nn.pixelcnn import ConditionalPixelCNN, GatedBlock, MaskedConv2d
from flowvae.nn.resnet import ConvResNet, ResidualBlock
from flowvae.nn.weightnorm import WNConv2d, WNConvTranspose2d, WNLinear

__all__ = [
    "ChannelAttention",
    "ConditionalPixelCNN",
    "GatedBlock",
    "MaskedConv2d",
    "DenseBlock",
    "DenseDecoder",
    "DenseEncoder",
    "DenseLayer",
    "DenseNet",
    "WNConv2d",
    "WNConvTranspose2d",
    "WNLinear",
    "MLP",
    "ConvDecoder",
    "ConvEncoder",
    "ConvResNet",
    "MLPDecoder",
    "MLPEncoder",
    "ResidualBlock",
]
