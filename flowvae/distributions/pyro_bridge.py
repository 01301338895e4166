"""nflows Transforms as Pyro ``TransformModule`` / ``ConditionalTransformModule``.

Direction swap: an nflows transform's ``forward`` maps data to noise, a Pyro (torch) transform
maps base to value. So the Pyro transform's ``__call__`` is the nflows ``inverse`` and its
``inv`` is the nflows ``forward``; ``log_abs_det_jacobian(x, y)`` is ``log|dy/dx|`` in Pyro's
direction, taken from whichever nflows pass produced ``(x, y)`` last (no second pass).

That one cached pass serves once, and only for the same tensors, unchanged, the same
parameters (version counters: an optimizer step invalidates it) and the same grad mode; so a
distribution built once can be used across training steps, in a torch loop or in SVI, with no
cache to clear by hand.
"""

from __future__ import annotations

from typing import Optional, Sequence

from pyro.distributions.conditional import ConditionalTransformModule
from pyro.distributions.torch_transform import TransformModule
from torch import Tensor, nn
from torch.distributions import constraints

from flowvae.distributions.flow import apply_flat, cache_key


def _event_ndim(transform: nn.Module, event_shape: Optional[Sequence[int]]) -> int:
    shape = event_shape if event_shape is not None else getattr(transform, "shape", None)
    if shape is None:
        raise ValueError(f"{type(transform).__name__} has no `shape` attribute: pass event_shape=")
    return len(shape)


class NflowsTransformModule(TransformModule):
    """A Pyro ``TransformModule`` (base -> value) running an nflows transform backwards.

    Args:
        transform: nflows ``Transform`` (data -> noise).
        context: fixed context passed to the transform, or ``None``.
        event_shape: the transform's input shape, when it has no ``shape`` attribute.

    Example:
        >>> import pyro.distributions as dist, torch
        >>> from flowvae import ConditionalRealNVP
        >>> flow = ConditionalRealNVP((3,), hidden_features=8)
        >>> base = dist.Normal(torch.zeros(3), torch.ones(3)).to_event(1)
        >>> d = dist.TransformedDistribution(base, [NflowsTransformModule(flow)])
        >>> d.log_prob(d.sample((4,))).shape
        torch.Size([4])
    """

    bijective = True

    def __init__(
        self,
        transform: nn.Module,
        context: Optional[Tensor] = None,
        event_shape: Optional[Sequence[int]] = None,
    ):
        # no identity cache of torch's: it would return the x of an earlier step (old
        # parameters, a graph already freed by backward) for the same y
        super().__init__(cache_size=0)
        self.transform = transform
        self.context = context
        self.event_ndim = _event_ndim(transform, event_shape)
        self._cached_ladj = None

    @constraints.dependent_property(is_discrete=False)
    def domain(self):
        return constraints.independent(constraints.real, self.event_ndim)

    @constraints.dependent_property(is_discrete=False)
    def codomain(self):
        return constraints.independent(constraints.real, self.event_ndim)

    def _key(self, x: Tensor, y: Tensor):
        return cache_key(self.transform, x, y, self.context)

    def _call(self, x: Tensor) -> Tensor:
        y, ladj = apply_flat(self.transform.inverse, x, self.context, self.event_ndim)
        self._cached_ladj = (x, y, ladj, self._key(x, y))
        return y

    def _valid(self, x: Optional[Tensor], y: Tensor):
        """The cached pass if it produced ``y`` (and came from ``x``), nothing changed since."""
        cached = self._cached_ladj
        if cached is None or y is not cached[1] or (x is not None and x is not cached[0]):
            return None
        key = cached[3]
        return cached if key is not None and key == self._key(cached[0], y) else None

    def _inverse(self, y: Tensor) -> Tensor:
        cached = self._valid(None, y)
        if cached is not None:  # y was drawn by _call: its x, no second pass
            return cached[0]
        x, logabsdet = apply_flat(self.transform, y, self.context, self.event_ndim)
        self._cached_ladj = (x, y, -logabsdet, self._key(x, y))
        return x

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        cached = self._valid(x, y)
        self._cached_ladj = None  # serves once: the next step recomputes on its own graph
        if cached is not None:
            return cached[2]
        return -apply_flat(self.transform, y, self.context, self.event_ndim)[1]


class NflowsConditionalTransformModule(ConditionalTransformModule):
    """A Pyro ``ConditionalTransformModule``: ``.condition(context)`` gives an
    :class:`NflowsTransformModule` for ``ConditionalTransformedDistribution``.

    Example:
        >>> import pyro.distributions as dist, torch
        >>> from flowvae import ConditionalRealNVP
        >>> flow = ConditionalRealNVP((3,), context_features=2, hidden_features=8)
        >>> base = dist.Normal(torch.zeros(3), torch.ones(3)).to_event(1)
        >>> t = NflowsConditionalTransformModule(flow)
        >>> d = dist.ConditionalTransformedDistribution(base, [t]).condition(torch.randn(5, 2))
        >>> d.sample().shape
        torch.Size([5, 3])
    """

    bijective = True

    def __init__(self, transform: nn.Module, event_shape: Optional[Sequence[int]] = None):
        super().__init__()
        self.transform = transform
        self.event_shape = event_shape
        _event_ndim(transform, event_shape)

    def condition(self, context: Tensor) -> NflowsTransformModule:
        return NflowsTransformModule(self.transform, context, self.event_shape)
