"""PixelCNNDistribution: an autoregressive image distribution given by a conditional PixelCNN."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from pyro.distributions import TorchDistribution
from torch import Size, Tensor
from torch.distributions import constraints
from torch.nn import functional as F


class _UnitGrid(constraints.Constraint):
    """Values ``k / (levels - 1)``, ``k = 0 .. levels - 1``."""

    is_discrete = True
    event_dim = 0

    def __init__(self, levels: int):
        self.levels = levels
        super().__init__()

    def check(self, value: Tensor) -> Tensor:
        k = value * (self.levels - 1)
        return (value >= 0) & (value <= 1) & ((k - k.round()).abs() < 1e-4)


class PixelCNNDistribution(TorchDistribution):
    r"""``p(x | c) = prod_i p(x_i | x_{<i}, c)`` with the conditionals of a
    :class:`~flowvae.nn.pixelcnn.ConditionalPixelCNN` ``net``, over images whose values are
    ``k / (levels - 1)`` (``levels = net.levels``; ``{0, 1}`` for binary images).

    ``log_prob(x)`` runs the PixelCNN once on ``x`` (teacher forcing) and sums the per-pixel
    log-probabilities (Bernoulli for ``levels = 2``, categorical otherwise). ``sample()`` is
    exact ancestral sampling, one pixel and channel at a time in the net's order; each pass
    runs the net only on the ``net.rows_above + 1`` rows that the current row can see, which
    gives the same conditionals as the full image.

    Shapes: ``context`` is ``(*batch, context_channels, H, W)`` (``None`` for an unconditional
    net: then pass ``batch_shape``); ``event_shape`` is ``net.shape``; extra leading dims of a
    value (plates, vectorized particles) are broadcast, flattened for the net and restored.

    Args:
        net: a :class:`~flowvae.nn.pixelcnn.ConditionalPixelCNN`.
        context: the conditioning map (from ``z``), or ``None``.
        batch_shape: the batch shape when ``context`` is ``None``.

    Example:
        >>> import torch
        >>> from flowvae.nn.pixelcnn import ConditionalPixelCNN
        >>> net = ConditionalPixelCNN((1, 4, 4), context_channels=2, hidden_channels=4,
        ...                           num_blocks=1)
        >>> d = PixelCNNDistribution(net, torch.randn(3, 2, 4, 4))
        >>> d.batch_shape, d.event_shape
        (torch.Size([3]), torch.Size([1, 4, 4]))
        >>> x, log_p = d.sample_with_log_prob()
        >>> torch.allclose(d.log_prob(x), log_p, atol=1e-5)
        True
    """

    arg_constraints: dict = {}

    def __init__(self, net, context: Optional[Tensor] = None, batch_shape: Sequence[int] = (),
                 validate_args: Optional[bool] = None):
        event_shape = Size(net.shape)
        if context is not None:
            if context.dim() < 3 or context.shape[-2:] != event_shape[-2:]:
                raise ValueError(f"context must be (*batch, channels, "
                                 f"{event_shape[1]}, {event_shape[2]}), got "
                                 f"{tuple(context.shape)}")
            batch_shape = context.shape[:-3]
        self.net = net
        self.context = context
        self.levels = net.levels
        super().__init__(Size(batch_shape), event_shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=3)
    def support(self):
        return constraints.independent(_UnitGrid(self.levels), 3)

    def expand(self, batch_shape, _instance=None):
        batch_shape = Size(batch_shape)
        context = self.context
        if context is not None:
            context = context.expand(*batch_shape, *context.shape[-3:])
        return type(self)(self.net, context, batch_shape, validate_args=False)

    # ------------------------------------------------------------------ scoring
    def _flat(self, value: Tensor) -> Tuple[Size, Tensor, Optional[Tensor]]:
        batch = torch.broadcast_shapes(value.shape[:-3], self.batch_shape)
        x = value.expand(*batch, *self.event_shape).reshape(-1, *self.event_shape)
        context = self.context
        if context is not None:
            context = context.expand(*batch, *context.shape[-3:]).reshape(-1,
                                                                          *context.shape[-3:])
        return Size(batch), x, context

    def _pixel_log_probs(self, logits: Tensor, x: Tensor) -> Tensor:
        if self.levels == 2:
            return -F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        index = (x * (self.levels - 1)).round().long().unsqueeze(2)
        return F.log_softmax(logits, dim=2).gather(2, index).squeeze(2)

    def conditionals(self, value: Tensor) -> Tensor:
        """``log p(x_i | x_{<i}, c)`` for every pixel and channel: ``(*batch, C, H, W)``."""
        batch, x, context = self._flat(value)
        return self._pixel_log_probs(self.net(x, context), x).reshape(*batch, *self.event_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return self.conditionals(value).flatten(-3).sum(-1)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample_with_log_prob(self, sample_shape: Sequence[int] = ()) -> Tuple[Tensor, Tensor]:
        """An exact sample and the sum of the conditionals it was drawn from, ``log p(x)``."""
        shape = self._extended_shape(Size(sample_shape))
        batch = shape[:-3]
        c, h, w = self.event_shape
        like = next(self.net.parameters())
        n = batch.numel()
        x = like.new_zeros(n, c, h, w)
        log_p = like.new_zeros(n)
        context = self.context
        if context is not None:
            context = context.expand(*batch, *context.shape[-3:]).reshape(n, -1, h, w)
        for row in range(h):
            top = max(0, row - self.net.rows_above)
            window = x[:, :, top : row + 1]  # a view: pixels drawn below show up in it
            ctx = None if context is None else context[:, :, top : row + 1]
            for col in range(w):
                for ch in range(c):
                    logits = self.net(window, ctx)[:, ch, ..., row - top, col]
                    if self.levels == 2:
                        value = torch.bernoulli(torch.sigmoid(logits))
                    else:
                        value = torch.multinomial(F.softmax(logits, -1), 1).squeeze(-1)
                        value = value.to(x.dtype) / (self.levels - 1)
                    x[:, ch, row, col] = value
                    log_p += self._pixel_log_probs(logits[:, None], value[:, None])[:, 0]
        return x.reshape(shape), log_p.reshape(batch)

    def sample(self, sample_shape: Sequence[int] = ()) -> Tensor:
        return self.sample_with_log_prob(sample_shape)[0]
