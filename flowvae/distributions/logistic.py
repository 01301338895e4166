"""Discretized mixture of logistics over 8-bit images (PixelCNN++, used by srVAE)."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution
from torch.distributions import Categorical, constraints

from flowvae.validation import check_int

__all__ = ["DiscretizedLogisticMixture"]

# bins summed per step in `mean`, to bound its temporary memory at this many times the parameters
_MEAN_CHUNK = 32


# below this ``u``, ``log(1 - exp(-u))`` is evaluated by its series in ``u`` (error < u^6 / 181440)
_SERIES_BELOW = 1e-2
# above this ``u``, ``log(1 - exp(-u)) = -exp(-u)`` is 0 in double precision (exp(-100) ~ 4e-44)
_FLAT_ABOVE = 100.0


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, accurate at both ends (Maechler, 2012).

    Each branch of the ``torch.where`` gets an input inside its own range, so the branch that is
    not taken stays finite: a non-finite value there would turn the gradient into ``0 * inf =
    NaN`` (e.g. ``log1p(-exp(x))`` for ``x`` within float rounding of 0).
    """
    log2 = math.log(2.0)
    near_zero = x > -log2
    small = torch.log(-torch.expm1(torch.where(near_zero, x, torch.full_like(x, -log2))))
    large = torch.log1p(-torch.exp(torch.where(near_zero, torch.full_like(x, -log2), x)))
    return torch.where(near_zero, small, large)


def _log1mexp_neg_exp(t: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(-exp(t)))``, finite with finite gradients for every finite ``t``.

    With ``u = exp(t)``: for ``u < 1e-2`` the series ``t - u/2 + u^2/24 - u^4/2880`` (from
    ``log((1 - e^{-u}) / u) = -u/2 + log(sinh(u/2) / (u/2))``), which needs no ``u`` that
    underflows to 0 and no ``1 / u`` that overflows; otherwise :func:`_log1mexp` of ``-u``, with
    ``u`` capped at 100 where the result is 0 to double precision (so ``exp(t)`` cannot overflow
    to inf and give ``0 * inf = NaN`` in the backward pass).
    """
    log_lo, log_hi = math.log(_SERIES_BELOW), math.log(_FLAT_ABOVE)
    series_region = t < log_lo
    ts = torch.where(series_region, t, torch.full_like(t, log_lo))
    u = torch.exp(ts)
    u2 = u * u
    series = ts - u / 2 + u2 / 24 - u2 * u2 / 2880
    direct = _log1mexp(
        -torch.exp(torch.where(series_region, torch.full_like(t, log_lo), t).clamp(max=log_hi))
    )
    return torch.where(series_region, series, direct)


def _coupling_index(channel: int, parent: int) -> int:
    """Index of the coefficient of ``parent`` in the location of ``channel`` (parent < channel)."""
    return channel * (channel - 1) // 2 + parent


class DiscretizedLogisticMixture(TorchDistribution):
    r"""Mixture of discretized logistics over integer images, as in PixelCNN++.

    Every pixel has its own ``K``-component mixture; the component is shared by the ``C``
    channels of the pixel, and pixels are independent given the parameters. Values are integers
    ``v`` in ``0..2^num_bits - 1`` (``0..255``), mapped to bin centres ``x = v / h - 1`` in
    ``[-1, 1]`` with ``h = (2^num_bits - 1) / 2 = 127.5``; every bin has half-width ``1 / (2h)``
    (width ``2 / 255``) and the two edge bins reach out to ``-inf`` and ``+inf``:

    .. math::

        p(v \mid k) = \prod_c \begin{cases}
            \sigma\!\left(\frac{x_c + 1/(2h) - m_{kc}}{s_{kc}}\right) & v_c = 0, \\
            1 - \sigma\!\left(\frac{x_c - 1/(2h) - m_{kc}}{s_{kc}}\right) & v_c = 2h, \\
            \sigma\!\left(\frac{x_c + 1/(2h) - m_{kc}}{s_{kc}}\right)
              - \sigma\!\left(\frac{x_c - 1/(2h) - m_{kc}}{s_{kc}}\right) & \text{otherwise,}
        \end{cases}

        p(v) = \sum_k \operatorname{softmax}(\text{logit\_probs})_k \; p(v \mid k),
        \qquad s_{kc} = \exp(\max(\text{log\_scale}_{kc}, \text{min\_log\_scale})).

    Channels are coupled linearly (autoregressively) as in PixelCNN++: the location of channel
    ``c`` is ``m_{kc} = loc_{kc} + sum_{j < c} coeffs_{k,c(c-1)/2 + j} * x_j`` with ``x_j`` the
    observed value of the earlier channel on the ``[-1, 1]`` scale. For ``C = 3`` the coefficient
    channels are ``(green <- red, blue <- red, blue <- green)``. The coefficients are used as
    given (PixelCNN++ feeds ``tanh`` of a network output).

    The bin probability is evaluated as
    ``log(sigma(a) - sigma(b)) = logsigmoid(a) + logsigmoid(-b) + log(1 - exp(b - a))`` with
    ``a - b = 1 / (h s)`` known exactly, which is accurate for any scale and location; so no
    PixelCNN++-style switch to the density at the bin centre is needed when a bin is far out in a
    tail or the scale is tiny.

    Shapes:
        - ``logit_probs``: ``(*batch, K, H, W)`` mixture logits.
        - ``loc``, ``log_scale``: ``(*batch, K, C, H, W)``, on the ``[-1, 1]`` scale.
        - ``coeffs``: ``(*batch, K, C (C - 1) / 2, H, W)`` or ``None`` (no channel coupling).
        - ``batch_shape`` is the broadcast of the ``*batch`` parts; ``event_shape == (C, H, W)``.
        - values: ``sample_shape + batch_shape + (C, H, W)``, integer-valued (any dtype).

    Sampling is exact but not reparameterized: draw the component from
    ``Categorical(logits=logit_probs)`` per pixel, then each channel in turn from its logistic,
    discretized to its bin, feeding the discretized value to the following channels' locations.

    Args:
        logit_probs: unnormalized log mixture weights.
        loc: component locations on the ``[-1, 1]`` scale.
        log_scale: component log-scales; values below ``min_log_scale`` are raised to it.
        coeffs: channel-coupling coefficients, or ``None``.
        min_log_scale: lower bound on ``log_scale`` (PixelCNN++ uses -7, i.e. a scale of about
            1/1100, an eighth of a bin); gradients do not flow through clamped entries.
        num_bits: bits per channel value; the support is ``0..2^num_bits - 1``.
        validate_args: check parameters, and that values lie in the integer support.

    References:
        Salimans et al., "PixelCNN++: Improving the PixelCNN with Discretized Logistic Mixture
        Likelihood and Other Modifications" (ICLR 2017).

    Example:
        >>> import torch
        >>> K, C, H, W = 5, 3, 4, 4
        >>> p = DiscretizedLogisticMixture(
        ...     torch.zeros(2, K, H, W),
        ...     torch.zeros(2, K, C, H, W),
        ...     torch.full((2, K, C, H, W), -3.0),
        ...     coeffs=torch.zeros(2, K, 3, H, W),
        ... )
        >>> p.batch_shape, p.event_shape
        (torch.Size([2]), torch.Size([3, 4, 4]))
        >>> x = p.sample()
        >>> x.shape, bool(((x >= 0) & (x <= 255) & (x == x.round())).all())
        (torch.Size([2, 3, 4, 4]), True)
        >>> p.log_prob(x).shape
        torch.Size([2])
    """

    has_rsample = False
    has_enumerate_support = False

    def __init__(
        self,
        logit_probs: torch.Tensor,
        loc: torch.Tensor,
        log_scale: torch.Tensor,
        coeffs: Optional[torch.Tensor] = None,
        min_log_scale: float = -7.0,
        num_bits: int = 8,
        validate_args: Optional[bool] = None,
    ) -> None:
        if logit_probs.dim() < 3:
            raise ValueError(
                "DiscretizedLogisticMixture: expected logit_probs of shape (*batch, K, H, W), "
                f"got shape {tuple(logit_probs.shape)}"
            )
        num_components, height, width = logit_probs.shape[-3:]
        if loc.dim() < 4 or loc.shape[-4] != num_components or loc.shape[-2:] != (height, width):
            raise ValueError(
                "DiscretizedLogisticMixture: expected loc of shape "
                f"(*batch, K={num_components}, C, H={height}, W={width}) to match logit_probs "
                f"of shape {tuple(logit_probs.shape)}, got loc of shape {tuple(loc.shape)}"
            )
        num_channels = loc.shape[-3]
        if log_scale.shape[-4:] != loc.shape[-4:]:
            raise ValueError(
                "DiscretizedLogisticMixture: expected log_scale of shape "
                f"(*batch, {', '.join(map(str, loc.shape[-4:]))}) like loc, "
                f"got log_scale of shape {tuple(log_scale.shape)}"
            )
        num_coeffs = num_channels * (num_channels - 1) // 2
        if coeffs is not None and (
            coeffs.dim() < 4 or coeffs.shape[-4:] != (num_components, num_coeffs, height, width)
        ):
            raise ValueError(
                "DiscretizedLogisticMixture: expected coeffs of shape "
                f"(*batch, K={num_components}, C(C-1)/2={num_coeffs}, H={height}, W={width}) "
                f"for loc of shape {tuple(loc.shape)}, got coeffs of shape {tuple(coeffs.shape)}"
            )
        params = {"logit_probs": (logit_probs, 3), "loc": (loc, 4), "log_scale": (log_scale, 4)}
        if coeffs is not None:
            params["coeffs"] = (coeffs, 4)
        try:
            batch_shape = torch.broadcast_shapes(*(v.shape[:-n] for v, n in params.values()))
        except RuntimeError as error:
            shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, (v, _) in params.items())
            raise ValueError(
                f"DiscretizedLogisticMixture: batch shapes do not broadcast: {shapes}"
            ) from error
        for name, (value, event_dims) in params.items():
            setattr(self, name, value.expand(batch_shape + value.shape[-event_dims:]))
        if coeffs is None:
            self.coeffs = None
        self.min_log_scale = float(min_log_scale)
        self.num_bits = check_int("DiscretizedLogisticMixture", "num_bits", num_bits, minimum=1)
        super().__init__(
            batch_shape,
            torch.Size((num_channels, height, width)),
            validate_args=validate_args,
        )

    @property
    def arg_constraints(self):
        names = ["logit_probs", "loc", "log_scale"] + (
            ["coeffs"] if self.coeffs is not None else []
        )
        return {name: constraints.real for name in names}

    @property
    def support(self):
        return constraints.independent(constraints.integer_interval(0, self._max_value), 3)

    @classmethod
    def infer_shapes(cls, logit_probs, loc, log_scale, coeffs=None):
        shapes = [logit_probs[:-3], loc[:-4], log_scale[:-4]]
        if coeffs is not None:
            shapes.append(coeffs[:-4])
        return torch.broadcast_shapes(*shapes), torch.Size(loc[-3:])

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DiscretizedLogisticMixture, _instance)
        batch_shape = torch.Size(batch_shape)
        new.logit_probs = self.logit_probs.expand(batch_shape + self.logit_probs.shape[-3:])
        new.loc = self.loc.expand(batch_shape + self.loc.shape[-4:])
        new.log_scale = self.log_scale.expand(batch_shape + self.log_scale.shape[-4:])
        new.coeffs = (
            None
            if self.coeffs is None
            else self.coeffs.expand(batch_shape + self.coeffs.shape[-4:])
        )
        new.min_log_scale = self.min_log_scale
        new.num_bits = self.num_bits
        super(DiscretizedLogisticMixture, new).__init__(
            batch_shape, self.event_shape, validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    # ---- helpers -------------------------------------------------------------------------------

    @property
    def _max_value(self) -> int:
        return 2**self.num_bits - 1

    @property
    def _half_range(self) -> float:
        """``h``: values ``v`` sit at ``v / h - 1``."""
        return self._max_value / 2

    def _clamped_log_scale(self) -> torch.Tensor:
        return self.log_scale.clamp(min=self.min_log_scale)

    def _coupled_loc(self, loc: torch.Tensor, coeffs, x: torch.Tensor) -> torch.Tensor:
        """Locations given earlier channels ``x`` (``[-1, 1]`` scale, channel dim -3)."""
        if coeffs is None or self.event_shape[0] == 1:
            return loc
        channels = []
        for c in range(self.event_shape[0]):
            shifted = loc[..., c, :, :]
            for j in range(c):
                shifted = shifted + coeffs[..., _coupling_index(c, j), :, :] * x[..., j, :, :]
            channels.append(shifted)
        # the first channel does not see `x`, so it may lack the sample dims of the others
        return torch.stack(torch.broadcast_tensors(*channels), dim=-3)

    def _bin_log_prob(self, value: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
        """Per-channel log-probabilities of integer ``value`` under each component."""
        h = self._half_range
        log_scale = self._clamped_log_scale()
        inv_scale = torch.exp(-log_scale)
        centered = value / h - 1 - loc
        half_bin = 0.5 / h
        upper = (centered + half_bin) * inv_scale
        lower = (centered - half_bin) * inv_scale
        log_cdf_upper = F.logsigmoid(upper)
        log_sf_lower = F.logsigmoid(-lower)
        # log(1 - exp(-(upper - lower))) with upper - lower = 1 / (h s), from log_scale directly:
        # finite (about -log_scale - log h) even where 1 / (h s) underflows to 0 for a huge scale
        interior = log_cdf_upper + log_sf_lower + _log1mexp_neg_exp(-log_scale - math.log(h))
        return torch.where(
            value == 0,
            log_cdf_upper,
            torch.where(value == self._max_value, log_sf_lower, interior),
        )

    def _discretized_mean(self, loc: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        """Exact ``E[v]`` of one discretized logistic: ``sum_{v >= 1} P(value >= v)``."""
        h = self._half_range
        inv_scale = torch.exp(-log_scale).unsqueeze(-1)
        loc = loc.unsqueeze(-1)
        total = torch.zeros_like(loc.squeeze(-1))
        for start in range(1, self._max_value + 1, _MEAN_CHUNK):
            stop = min(start + _MEAN_CHUNK, self._max_value + 1)
            lower_edges = (torch.arange(start, stop, device=loc.device, dtype=loc.dtype) - 0.5) / h
            total = total + torch.sigmoid((loc - lower_edges + 1) * inv_scale).sum(-1)
        return total

    # ---- distribution API ----------------------------------------------------------------------

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        value = value.to(self.loc.dtype).unsqueeze(-4)
        loc = self._coupled_loc(self.loc, self.coeffs, value / self._half_range - 1)
        per_component = self._bin_log_prob(value, loc).sum(-3)
        log_weights = torch.log_softmax(self.logit_probs, dim=-3)
        return torch.logsumexp(per_component + log_weights, dim=-3).sum((-2, -1))

    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        batch = shape[:-3]
        num_components = self.logit_probs.shape[-3]
        with torch.no_grad():
            logits = self.logit_probs.expand(batch + self.logit_probs.shape[-3:]).movedim(-3, -1)
            component = Categorical(logits=logits, validate_args=False).sample()

            def pick(param: torch.Tensor) -> torch.Tensor:
                index = component.unsqueeze(-3).unsqueeze(-3)
                index = index.expand(batch + (1, param.shape[-3]) + component.shape[-2:])
                expanded = param.expand(batch + (num_components,) + param.shape[-3:])
                return expanded.gather(-4, index).squeeze(-4)

            loc = pick(self.loc)
            scale = pick(self._clamped_log_scale()).exp()
            coeffs = None if self.coeffs is None else pick(self.coeffs)
            finfo = torch.finfo(loc.dtype)
            u = torch.rand(shape, dtype=loc.dtype, device=loc.device)
            u = u.clamp(min=finfo.tiny, max=1 - finfo.eps)
            noise = torch.log(u) - torch.log1p(-u)

            h = self._half_range
            values = []
            for c in range(self.event_shape[0]):
                centre = loc[..., c, :, :]
                if coeffs is not None:
                    for j in range(c):
                        earlier = values[j] / h - 1
                        centre = centre + coeffs[..., _coupling_index(c, j), :, :] * earlier
                continuous = centre + scale[..., c, :, :] * noise[..., c, :, :]
                # the edge bins extend to +-inf, hence the clamp before rounding to a bin
                values.append(torch.round((continuous.clamp(-1, 1) + 1) * h))
            return torch.stack(values, dim=-3)

    @property
    def mean(self) -> torch.Tensor:
        """Expected value in ``0..2^num_bits - 1``, shape ``batch_shape + (C, H, W)``.

        Exact (a sum over the bins of ``P(value >= v)``) when ``coeffs`` is ``None`` or ``C = 1``,
        and for the first channel in any case. With coupling, the earlier channels' values in
        a component's location are replaced by their means under that component, which is exact
        only where the discretized mean is linear in the location (away from the edges).
        """
        log_scale = self._clamped_log_scale()
        h = self._half_range
        if self.coeffs is None:
            component_means = self._discretized_mean(self.loc, log_scale)
        else:
            channels = []
            for c in range(self.event_shape[0]):
                centre = self.loc[..., c, :, :]
                for j in range(c):
                    earlier = channels[j] / h - 1
                    centre = centre + self.coeffs[..., _coupling_index(c, j), :, :] * earlier
                channels.append(self._discretized_mean(centre, log_scale[..., c, :, :]))
            component_means = torch.stack(channels, dim=-3)
        weights = torch.softmax(self.logit_probs, dim=-3).unsqueeze(-3)
        return (weights * component_means).sum(-4)
