"""FlowDistribution: a Normal base pushed through an nflows transform, as a Pyro distribution."""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import torch
from pyro.distributions import TorchDistribution
from torch import Size, Tensor
from torch.distributions import Normal, constraints

from flowvae.nn.init import data_init_modules
from flowvae.transforms.base import CheckedTransform
from flowvae.validation import check_floating, check_temperature


def cache_key(module, *tensors: Optional[Tensor]) -> Optional[Tuple]:
    """What a cached result of ``module`` on ``tensors`` depends on besides their identity: the
    grad mode, the version counters of ``tensors`` and of ``module``'s parameters (an in-place
    update such as an optimizer step bumps them). ``None`` (never equal: do not cache) for
    inference-mode tensors, which have no version counter."""
    try:
        versions = tuple(-1 if t is None else t._version for t in tensors)
        params = tuple(p._version for p in module.parameters()) if hasattr(
            module, "parameters") else ()
    except RuntimeError:
        return None
    return torch.is_grad_enabled(), versions, params


def awaits_data_init(module) -> bool:
    """Whether ``module`` is in training mode and holds a data-dependent layer
    (:class:`flowvae.nn.init.DataDependentInit`, e.g. ActNorm) not yet initialised."""
    if not getattr(module, "training", False) or not hasattr(module, "modules"):
        return False
    for m in data_init_modules(module):
        # ActNorm's host copy of the flag spares a device synchronisation once it is set
        if not getattr(m, "_known_initialized", False) and not bool(m.initialized):
            return True
    return False


def apply_flat(
    fn: Callable, inputs: Tensor, context: Optional[Tensor], event_ndim: int
) -> Tuple[Tensor, Tensor]:
    """Call an nflows-style ``fn(inputs, context) -> (outputs, logabsdet)`` on inputs with any
    number of leading batch dims (Pyro plates, vectorized particles).

    The leading dims of ``inputs`` and of ``context`` (all but its last) are broadcast, flattened
    into one batch for ``fn`` and restored on both outputs.
    """
    batch = inputs.shape[: inputs.dim() - event_ndim]
    event = inputs.shape[inputs.dim() - event_ndim :]
    if context is not None:
        batch = torch.broadcast_shapes(batch, context.shape[:-1])
        context = context.expand(*batch, context.shape[-1]).reshape(-1, context.shape[-1])
    outputs, logabsdet = fn(inputs.expand(*batch, *event).reshape(-1, *event), context)
    return outputs.reshape(*batch, *event), logabsdet.reshape(batch)


class FlowDistribution(TorchDistribution):
    r"""``x = T^{-1}(v; c)``, ``v ~ Normal(base_loc, base_scale)``, for an nflows transform ``T``.

    ``T`` maps data to noise (nflows' direction), so

    ``log p(x) = sum_event log Normal(T(x; c); base_loc, base_scale) + log|det dT/dx|``.

    The same class is the VAPNEV likelihood ``p(x|z)`` (context ``z``, base parameters from a
    decoder), the srVAE flow prior ``p(u)`` and a flow posterior ``q(z|x)``.

    Shapes: ``event_shape`` is the transform's input shape (``transform.shape`` when it has one,
    else the ``event_shape`` argument). ``base_loc``, ``base_scale`` are
    ``(*batch, *event_shape)`` (broadcastable) and ``context`` is ``(*batch, F)``; extra leading
    dims from plates and vectorized particles are broadcast, flattened for the transform and
    restored. ``log_prob(x)`` for ``x`` of shape ``(*sample, *batch, *event)`` has shape
    ``(*sample, *batch)``.

    Sampling goes through ``T.inverse``; ``temperature`` multiplies the base scale when sampling
    only (``log_prob`` is always the untempered density). The log-density of the value returned
    by the last ``rsample`` is cached so that scoring a sample just drawn costs no second pass
    through the flow. The cache is used only for the same tensor, unchanged (its
    version counter), the same parameters (the version counters of the transform's parameters
    and of the base parameters and context, which an optimizer step bumps) and the same grad
    mode (a value drawn by ``sample()``, without gradients, is scored again with them);
    otherwise ``log_prob`` runs the flow.

    Data-dependent layers: when the transform is in training mode and holds a layer not yet
    initialised (an :class:`~flowvae.transforms.ActNorm`, whose initialisation runs in the
    data -> noise direction), ``rsample`` first runs the transform forward on a draw, without
    gradients, so that a flow that is only sampled (a guide) is initialised before its first
    sample is used, and later ``log_prob`` calls do not change it.

    Validation (while Pyro's is on): the base parameters are checked when the distribution is
    made (``arg_constraints``), and a value to score by ``log_prob``: its shape here, its
    values once, by the transform's own entry check when the transform is a
    :class:`~flowvae.transforms.CheckedTransform` (ConditionalRealNVP: a ValueError
    naming it), else by Pyro's support check.

    Note: the transform runs inside ``log_prob``, after Pyro has traced the model, so its
    parameters appear as ``param`` sites only when they are read inside a ``PyroModule``
    context (flowvae's models run ``model`` and guide in theirs,
    :func:`~flowvae.models.base.pyro_program`). In a model of your own, register the
    transform with ``pyro.module`` in the model and in the guide.

    Args:
        transform: an nflows ``Transform`` (``forward(x, context) -> (noise, logabsdet)``).
        base_loc, base_scale: parameters of the Normal base, in noise space.
        context: the transform's context, or ``None``.
        temperature: base-scale factor used when sampling.
        event_shape: the transform's input shape, when ``transform`` has no ``shape``.

    Example:
        >>> import torch
        >>> from flowvae import ConditionalRealNVP
        >>> flow = ConditionalRealNVP((3,), context_features=2, hidden_features=8)
        >>> d = FlowDistribution(flow, torch.zeros(3), torch.ones(3), context=torch.randn(5, 2))
        >>> d.batch_shape, d.event_shape
        (torch.Size([5]), torch.Size([3]))
        >>> x = d.rsample()
        >>> d.log_prob(x).shape
        torch.Size([5])
    """

    arg_constraints = {"base_loc": constraints.real, "base_scale": constraints.positive}
    has_rsample = True

    def __init__(
        self,
        transform,
        base_loc: Tensor,
        base_scale: Tensor,
        context: Optional[Tensor] = None,
        temperature: float = 1.0,
        event_shape: Optional[Sequence[int]] = None,
        validate_args: Optional[bool] = None,
    ):
        if event_shape is None:
            event_shape = getattr(transform, "shape", None)
            if event_shape is None:
                raise ValueError(
                    f"{type(transform).__name__} has no `shape` attribute: pass event_shape="
                )
        event_shape = Size(event_shape)
        ndim = len(event_shape)
        for name, value in (("base_loc", base_loc), ("base_scale", base_scale)):
            check_floating("FlowDistribution", name, value)  # a NumPy array is refused by name
            try:
                torch.broadcast_shapes(value.shape[value.dim() - ndim :], event_shape)
            except RuntimeError:
                raise ValueError(
                    f"{name}: expected shape (..., {', '.join(map(str, event_shape))}), "
                    f"got {tuple(value.shape)}"
                ) from None
        shapes = [p.shape[: p.dim() - ndim] for p in (base_loc, base_scale)]
        if context is not None:
            shapes.append(context.shape[:-1])
        try:
            batch_shape = torch.broadcast_shapes(*shapes)
        except RuntimeError:
            raise ValueError(
                f"batch shapes of base_loc {tuple(base_loc.shape)}, base_scale "
                f"{tuple(base_scale.shape)} and context "
                f"{None if context is None else tuple(context.shape)} do not broadcast"
            ) from None
        self.transform = transform
        self.base_loc = base_loc.expand(batch_shape + event_shape)
        self.base_scale = base_scale.expand(batch_shape + event_shape)
        self.context = context
        self.temperature = temperature
        self._cache: Optional[Tuple[Tensor, Optional[Tuple], Tensor]] = None
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    @property
    def temperature(self) -> float:
        """The factor of the base scale when sampling (a finite number > 0, checked on every
        assignment)."""
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self._temperature = check_temperature(type(self).__name__, value)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return constraints.independent(constraints.real, len(self.event_shape))

    def expand(self, batch_shape, _instance=None):
        batch_shape = Size(batch_shape)
        shape = batch_shape + self.event_shape
        context = self.context
        if context is not None:
            context = context.expand(*batch_shape, context.shape[-1])
        return type(self)(
            self.transform, self.base_loc.expand(shape), self.base_scale.expand(shape), context,
            temperature=self.temperature, event_shape=self.event_shape,
            validate_args=False,
        )

    def _base_log_prob(self, noise: Tensor) -> Tensor:
        # checked already: the parameters when this distribution was made, the noise by the
        # transform (or computed from those parameters); no second host read of either
        log_prob = Normal(self.base_loc, self.base_scale, validate_args=False).log_prob(noise)
        return log_prob.flatten(log_prob.dim() - len(self.event_shape)).sum(-1)

    def _cache_key(self, value: Tensor) -> Optional[Tuple]:
        return cache_key(self.transform, value, self.base_loc, self.base_scale, self.context)

    def log_prob(self, value: Tensor) -> Tensor:
        cache = self._cache
        if cache is not None and value is cache[0] and cache[1] is not None \
                and cache[1] == self._cache_key(value):
            return cache[2]
        if self._validate_args:
            self._validate_value(value)
        noise, logabsdet = apply_flat(self.transform, value, self.context, len(self.event_shape))
        return self._base_log_prob(noise) + logabsdet

    def _validate_value(self, value: Tensor) -> None:
        """Pyro's check of a value to score; for a transform that checks its own entry (a
        :class:`~flowvae.transforms.CheckedTransform`, e.g. ConditionalRealNVP), only the
        shapes here: its values are read once, by the transform."""
        if not isinstance(self.transform, CheckedTransform):
            self._validate_sample(value)
            return
        ndim = len(self.event_shape)
        if not isinstance(value, Tensor) or tuple(value.shape[value.dim() - ndim:]) != tuple(
                self.event_shape):
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value)
            raise ValueError(f"FlowDistribution.log_prob: value: expected shape (..., "
                             f"{', '.join(map(str, self.event_shape))}), got {got}")
        try:
            torch.broadcast_shapes(value.shape[: value.dim() - ndim], self.batch_shape)
        except RuntimeError:
            raise ValueError(f"FlowDistribution.log_prob: value: shape {tuple(value.shape)} "
                             f"does not broadcast with the batch shape "
                             f"{tuple(self.batch_shape)}") from None

    def rsample(self, sample_shape=()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=self.base_loc.dtype, device=self.base_loc.device)
        noise = self.base_loc + self.temperature * self.base_scale * eps
        ndim = len(self.event_shape)
        if awaits_data_init(self.transform):
            with torch.no_grad():  # initialise its data-dependent layers on this draw
                value = apply_flat(self.transform.inverse, noise, self.context, ndim)[0]
                apply_flat(self.transform, value, self.context, ndim)
        value, logabsdet = apply_flat(self.transform.inverse, noise, self.context, ndim)
        self._cache = (value, self._cache_key(value), self._base_log_prob(noise) - logabsdet)
        return value
