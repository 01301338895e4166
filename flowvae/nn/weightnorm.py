r"""Weight-normalised layers with data-dependent initialisation (Salimans & Kingma, 2016).

Each output unit ``o`` has the weight ``w_o = g_o v_o / ||v_o||`` and a bias ``b_o``: the
direction ``v`` and the length ``g`` are separate parameters, which conditions gradient descent
better than ``w`` alone, without depending on the batch the way batch normalisation does (so a
coupling layer stays invertible with the same inverse in training and evaluation mode).

**Data-dependent initialisation.** On one batch ``x``, with ``t = layer(x)`` computed with
``g = 1, b = 0`` (the pre-activations of the unit-norm directions), set
``g_o = init_scale / (std_o(t) + eps)`` and ``b_o = -mean_o(t) g_o``, so that the layer's outputs
on that batch have mean ``0`` and standard deviation ``init_scale`` per output channel (statistics
over every dimension except the channel one; population standard deviation). Call
:meth:`~WNLinear.data_init` yourself, or pass ``init_on_first_batch=True`` to have it run on the
first forward pass in training mode. Stacked layers then initialise one after the other on the
activations of the already-initialised layers below, as in the paper. A boolean buffer
``initialized`` goes into the ``state_dict``, so a restored checkpoint is not re-initialised.

**Implementation.** The reparametrisation is torch's own
:func:`torch.nn.utils.parametrizations.weight_norm` (``g`` is
``parametrizations.weight.original0``, ``v`` is ``original1``; ``module.weight`` is the effective
weight): it is maintained upstream, works under :func:`pyro.nn.module.to_pyro_module_`, loads
old ``weight_g`` / ``weight_v`` checkpoints, can be cached with
:func:`torch.nn.utils.parametrize.cached` and baked into a plain weight with
:func:`torch.nn.utils.parametrize.remove_parametrizations`. Only the data-dependent
initialisation is added here. As for every parametrised torch module, save these layers through
``state_dict()`` (``torch.save(module)`` of the whole module is refused by torch).

References:
    Salimans, T. and Kingma, D. P. Weight normalization: a simple reparameterization to
    accelerate training of deep neural networks. NeurIPS 2016.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from flowvae.nn.init import DataDependentInit


class _DataInitWeightNorm(DataDependentInit):
    """Mixin for a layer whose ``weight`` is weight-normalised along ``norm_dim`` and whose
    outputs have their channels on ``channel_dim``."""

    norm_dim: int = 0
    channel_dim: int = 1

    def _setup_weight_norm(self, init_scale: float, init_on_first_batch: bool, eps: float):
        if init_scale <= 0 or eps < 0:
            raise ValueError(f"need init_scale > 0 and eps >= 0, got {init_scale}, {eps}")
        self.init_scale = init_scale
        self.eps = eps
        self.init_on_first_batch = init_on_first_batch
        weight_norm(self, "weight", dim=self.norm_dim)  # type: ignore[arg-type]
        self.register_buffer(  # type: ignore[attr-defined]
            "initialized", torch.tensor(not init_on_first_batch), persistent=True
        )

    @property
    def weight_g(self) -> Tensor:
        """The lengths ``g`` (one per output unit, shaped to broadcast against ``v``)."""
        return self.parametrizations.weight.original0  # type: ignore[attr-defined]

    @property
    def weight_v(self) -> Tensor:
        """The directions ``v`` (the shape of the weight)."""
        return self.parametrizations.weight.original1  # type: ignore[attr-defined]

    def _reduce_dims(self, out: Tensor) -> Tuple[int, ...]:
        channel = self.channel_dim % out.dim()
        return tuple(d for d in range(out.dim()) if d != channel)

    @torch.no_grad()
    def data_init(self, x: Tensor) -> Tensor:
        """Set ``g`` and ``b`` so that the outputs on ``x`` have zero mean and standard deviation
        ``init_scale`` per output channel; returns those outputs. Without a bias only ``g`` is
        set (the mean stays as it is)."""
        g, bias = self.weight_g, self.bias  # type: ignore[attr-defined]
        g.fill_(1.0)
        if bias is not None:
            bias.zero_()
        t = super().forward(x)  # type: ignore[misc]
        dims = self._reduce_dims(t)
        mean = t.mean(dims)
        std = t.std(dims, correction=0)
        scale = self.init_scale / (std + self.eps)
        g.copy_(scale.reshape(g.shape))
        if bias is not None:
            bias.copy_(-mean * scale)
        self.initialized.fill_(True)  # type: ignore[attr-defined]
        shape = [1] * t.dim()
        shape[self.channel_dim % t.dim()] = -1
        out = t * scale.view(shape)
        return out if bias is None else out + bias.view(shape)

    def forward(self, x: Tensor) -> Tensor:
        if (self.init_on_first_batch and self.training
                and not bool(self.initialized)):  # type: ignore[attr-defined]
            return self.data_init(x)
        return super().forward(x)  # type: ignore[misc]


class WNLinear(_DataInitWeightNorm, nn.Linear):
    """Weight-normalised :class:`torch.nn.Linear`: ``(*, in_features) -> (*, out_features)``,
    ``w_o = g_o v_o / ||v_o||`` per output feature (module docstring: data-dependent init).

    Args:
        in_features: input size.
        out_features: output size (one ``g`` and ``b`` each).
        bias: whether to learn a bias.
        init_scale: output standard deviation the data-dependent init aims at.
        init_on_first_batch: run :meth:`data_init` on the first forward in training mode.
        eps: added to the batch standard deviation before dividing by it.

    Example:
        >>> import torch
        >>> layer = WNLinear(3, 2, init_on_first_batch=True)
        >>> y = layer(torch.randn(64, 3))
        >>> bool(layer.initialized), tuple(layer.weight_g.shape)
        (True, (2, 1))
        >>> [round(v, 3) for v in y.mean(0).abs().tolist()]
        [0.0, 0.0]
    """

    norm_dim = 0
    channel_dim = -1

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 init_scale: float = 1.0, init_on_first_batch: bool = False, eps: float = 1e-6):
        super().__init__(in_features, out_features, bias=bias)
        self._setup_weight_norm(init_scale, init_on_first_batch, eps)


class WNConv2d(_DataInitWeightNorm, nn.Conv2d):
    """Weight-normalised :class:`torch.nn.Conv2d`: ``(B, C_in, H, W) -> (B, C_out, H', W')``,
    one ``g`` per output channel (module docstring: data-dependent init). Takes the arguments of
    :class:`torch.nn.Conv2d` plus ``init_scale``, ``init_on_first_batch`` and ``eps`` (as in
    :class:`WNLinear`).

    Example:
        >>> import torch
        >>> conv = WNConv2d(3, 4, 3, padding=1)
        >>> y = conv.data_init(torch.randn(8, 3, 5, 5))
        >>> y.shape, [round(s, 2) for s in y.std((0, 2, 3), correction=0).tolist()]
        (torch.Size([8, 4, 5, 5]), [1.0, 1.0, 1.0, 1.0])
    """

    norm_dim = 0
    channel_dim = 1

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 init_scale: float = 1.0, init_on_first_batch: bool = False, eps: float = 1e-6):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode)
        self._setup_weight_norm(init_scale, init_on_first_batch, eps)


class WNConvTranspose2d(_DataInitWeightNorm, nn.ConvTranspose2d):
    """Weight-normalised :class:`torch.nn.ConvTranspose2d` (its weight is
    ``(C_in, C_out, k, k)``, so the norm is taken per output channel along dim 1; there is no
    ``groups`` argument, as grouping would share one ``g`` between channels). Other arguments as
    :class:`WNConv2d`.

    Example:
        >>> import torch
        >>> up = WNConvTranspose2d(4, 2, 4, stride=2, padding=1, init_on_first_batch=True)
        >>> up(torch.randn(3, 4, 5, 5)).shape
        torch.Size([3, 2, 10, 10])
    """

    norm_dim = 1
    channel_dim = 1

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, bias: bool = True, dilation=1, init_scale: float = 1.0,
                 init_on_first_batch: bool = False, eps: float = 1e-6):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         output_padding=output_padding, bias=bias, dilation=dilation)
        self._setup_weight_norm(init_scale, init_on_first_batch, eps)
