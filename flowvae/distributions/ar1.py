"""First-order autoregressive Gaussian :class:`AR1Normal` (rho-VAE) and its closed-form KLs."""

from __future__ import annotations

import math
from typing import Union

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution
from torch.distributions import Independent, MultivariateNormal, Normal, constraints
from torch.distributions.constraint_registry import biject_to, transform_to
from torch.distributions.kl import kl_divergence, register_kl
from torch.distributions.transforms import AffineTransform, ComposeTransform, SigmoidTransform
from torch.distributions.utils import _standard_normal

from flowvae.validation import check_finite, check_floating

__all__ = ["AR1Normal", "OpenInterval", "open_interval"]

_LOG_2PI = math.log(2 * math.pi)

ArrayLike = Union[torch.Tensor, float]


class OpenInterval(constraints.Constraint):
    """Constrain to the open interval ``(lower_bound, upper_bound)``.

    torch only ships closed and half-open intervals; the AR(1) correlation needs both ends
    excluded because ``rho = +-1`` makes the covariance singular.
    """

    def __init__(self, lower_bound: float, upper_bound: float) -> None:
        self.lower_bound = lower_bound
        self.upper_bound = upper_bound
        super().__init__()

    def check(self, value: torch.Tensor) -> torch.Tensor:
        return (self.lower_bound < value) & (value < self.upper_bound)

    def __repr__(self) -> str:
        return f"OpenInterval(lower_bound={self.lower_bound}, upper_bound={self.upper_bound})"


open_interval = OpenInterval


def _open_interval_transform(constraint: OpenInterval) -> ComposeTransform:
    # sigmoid never reaches 0 or 1 exactly in exact arithmetic, so it maps onto the open interval
    return ComposeTransform(
        [
            SigmoidTransform(),
            AffineTransform(
                constraint.lower_bound, constraint.upper_bound - constraint.lower_bound
            ),
        ]
    )


# lets `pyro.param(..., constraint=open_interval(-1, 1))` work like the built-in intervals
biject_to.register(OpenInterval, _open_interval_transform)
transform_to.register(OpenInterval, _open_interval_transform)


def _ar1_filter(b: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """Solve ``e_i = rho * e_{i-1} + b_i`` (``e_0 = 0``) along the last dim.

    A Hillis-Steele scan: after the step with offset ``k``, ``e_i`` holds
    ``sum_{j > i - 2k} rho^(i-j) b_j``, so ``ceil(log2 d)`` steps of O(d) work suffice. The powers
    ``rho^k`` come from repeated squaring, which cannot overflow for ``|rho| < 1`` and handles
    ``rho = 0`` (and its implicit ``0^0 = 1`` on the diagonal) exactly.

    Args:
        b: innovations, shape ``(..., d)``.
        rho: correlation broadcastable to ``b.shape[:-1]``.
    """
    d = b.shape[-1]
    power = rho.unsqueeze(-1)
    e = b
    offset = 1
    while offset < d:
        e = e + power * F.pad(e[..., :-offset], (offset, 0))
        power = power * power
        offset *= 2
    return e


def _as_tensor_like(value: ArrayLike, like: torch.Tensor) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    return like.new_tensor(value)


class AR1Normal(TorchDistribution):
    r"""Gaussian with first-order autoregressive (AR(1)) correlation, the rho-VAE posterior.

    .. math::

        z \sim \mathcal{N}(\mu, \Sigma), \qquad \Sigma = D T D, \qquad
        T_{ij} = \rho^{|i-j|}, \qquad D = \operatorname{diag}(\sigma),

        \log\det\Sigma = 2 \sum_i \log\sigma_i + (d - 1) \log(1 - \rho^2).

    Sampling (reparameterized) runs the AR(1) recursion ``e_1 = eps_1``,
    ``e_i = rho e_{i-1} + sqrt(1 - rho^2) eps_i``, ``z = mu + sigma * e`` with ``eps ~ N(0, I)``,
    as a parallel scan in ``O(d log d)`` without a Python loop over ``d``. ``log_prob`` inverts
    the recursion to the innovations ``eps`` in ``O(d)``.

    Closed-form KL divergences are registered with :func:`torch.distributions.kl.kl_divergence`
    for the priors ``Normal(m, s).to_event(1)`` (torch or Pyro ``Independent`` of a ``Normal``),
    ``MultivariateNormal`` and ``AR1Normal``, so :class:`pyro.infer.TraceMeanField_ELBO` uses them.

    Shapes:
        - ``loc``: ``(*batch, d)``; ``event_shape == (d,)``.
        - ``scale``: ``(*batch, 1)`` (one scale per sample, the paper's case) or ``(*batch, d)``
          (one per dimension); a Python float or 0-dim tensor counts as ``(1,)``.
        - ``rho``: broadcastable to ``batch_shape`` -- note it has **no** trailing singleton:
          squeeze a network's ``(N, 1)`` output to ``(N,)`` or it broadcasts to ``(N, N)``.
        - ``batch_shape`` is the broadcast of ``loc.shape[:-1]``, ``scale.shape[:-1]`` and
          ``rho.shape``.

    Args:
        loc: mean ``mu``.
        scale: marginal standard deviations ``sigma > 0``.
        rho: lag-one correlation, ``-1 < rho < 1`` (e.g. ``tanh`` of a network output).
        validate_args: check the parameters (and ``log_prob`` values) against their constraints.

    Note:
        The authors' public code draws its samples without ``rho`` and without the
        ``sqrt(1 - rho^2)`` factor, so its samples do not follow the density that its KL term
        assumes. Here ``rsample``, ``log_prob``, ``entropy`` and the KLs all describe the same
        ``N(mu, D T D)``.

    References:
        Ferdowsi et al., "rho-VAE: Autoregressive parametrization of the VAE encoder" (2019),
        https://github.com/sssohrab/rho_VAE.

    Example:
        >>> import torch
        >>> q = AR1Normal(torch.zeros(2, 5), torch.ones(2, 1), torch.tensor([0.5, -0.9]))
        >>> q.batch_shape, q.event_shape
        (torch.Size([2]), torch.Size([5]))
        >>> z = q.rsample((3,))
        >>> z.shape, q.log_prob(z).shape
        (torch.Size([3, 2, 5]), torch.Size([3, 2]))
        >>> q.covariance_matrix[0, 0, :3]
        tensor([1.0000, 0.5000, 0.2500])
    """

    arg_constraints = {
        "loc": constraints.real_vector,
        "scale": constraints.positive,
        "rho": open_interval(-1.0, 1.0),
    }
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        loc: ArrayLike,
        scale: ArrayLike,
        rho: ArrayLike,
        validate_args: bool | None = None,
    ) -> None:
        if not isinstance(loc, torch.Tensor):
            loc = torch.as_tensor(loc, dtype=torch.get_default_dtype())
        # loc's dtype is the distribution's: an integer loc would cast rho in (-1, 1) to 0
        check_floating("AR1Normal", "loc", loc)
        if loc.dim() < 1:
            raise ValueError(
                f"AR1Normal: expected loc of shape (*batch, d) with at least one dimension, "
                f"got shape {tuple(loc.shape)}"
            )
        scale = _as_tensor_like(scale, loc)
        rho = _as_tensor_like(rho, loc)
        if scale.dim() == 0:
            scale = scale.unsqueeze(-1)
        d = loc.shape[-1]
        width = scale.shape[-1]
        if width not in (1, d):
            raise ValueError(
                f"AR1Normal: expected scale of shape (*batch, 1) or (*batch, d) with d={d} "
                f"(from loc of shape {tuple(loc.shape)}), got scale of shape {tuple(scale.shape)}"
            )
        try:
            batch_shape = torch.broadcast_shapes(loc.shape[:-1], scale.shape[:-1], rho.shape)
        except RuntimeError as error:
            raise ValueError(
                "AR1Normal: batch shapes do not broadcast: expected loc (*batch, d), "
                "scale (*batch, 1) or (*batch, d), rho (*batch); got loc "
                f"{tuple(loc.shape)}, scale {tuple(scale.shape)}, rho {tuple(rho.shape)}"
            ) from error
        self.loc = loc.expand(batch_shape + (d,))
        self.scale = scale.expand(batch_shape + (width,))
        self.rho = rho.expand(batch_shape)
        super().__init__(batch_shape, torch.Size((d,)), validate_args=validate_args)

    @classmethod
    def infer_shapes(cls, loc, scale, rho):
        scale = tuple(scale) or (1,)
        batch_shape = torch.broadcast_shapes(loc[:-1], scale[:-1], rho)
        return batch_shape, torch.Size(loc[-1:])

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(AR1Normal, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape + self.event_shape)
        new.scale = self.scale.expand(batch_shape + self.scale.shape[-1:])
        new.rho = self.rho.expand(batch_shape)
        super(AR1Normal, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    # ---- helpers -------------------------------------------------------------------------------

    @property
    def _dim(self) -> int:
        return self.event_shape[0]

    def _innovation_scale(self) -> torch.Tensor:
        # (1 - rho)(1 + rho) keeps its relative precision as |rho| -> 1, unlike 1 - rho^2
        return torch.sqrt((1 - self.rho) * (1 + self.rho))

    def _log_one_minus_rho_sq(self) -> torch.Tensor:
        return torch.log1p(-self.rho) + torch.log1p(self.rho)

    def _sum_log_scale(self) -> torch.Tensor:
        log_scale = self.scale.log().sum(-1)
        return log_scale * self._dim if self.scale.shape[-1] == 1 else log_scale

    def _half_log_det(self) -> torch.Tensor:
        """``0.5 log det Sigma``, shape ``batch_shape``."""
        return self._sum_log_scale() + 0.5 * (self._dim - 1) * self._log_one_minus_rho_sq()

    def _innovations(self, e: torch.Tensor) -> torch.Tensor:
        """Map a standardized AR(1) path ``e`` (``(..., d)``) to its white innovations."""
        rho = self.rho.unsqueeze(-1)
        rest = (e[..., 1:] - rho * e[..., :-1]) / self._innovation_scale().unsqueeze(-1)
        return torch.cat([e[..., :1], rest], dim=-1)

    def _full_scale(self) -> torch.Tensor:
        return self.scale.expand(self.batch_shape + self.event_shape)

    def _rho_powers(self) -> torch.Tensor:
        """``rho^k`` for ``k = 0..d-1``, shape ``batch_shape + (d,)``.

        A cumulative product rather than ``pow`` so that negative ``rho`` and ``0^0 = 1`` need no
        special cases and the gradient at ``rho = 0`` is finite.
        """
        rho = self.rho.unsqueeze(-1)
        factors = torch.cat(
            [torch.ones_like(rho), rho.expand(self.batch_shape + (self._dim - 1,))], -1
        )
        return factors.cumprod(-1)

    # ---- distribution API ----------------------------------------------------------------------

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    @property
    def mode(self) -> torch.Tensor:
        return self.loc

    @property
    def variance(self) -> torch.Tensor:
        return self._full_scale().pow(2)

    @property
    def correlation_matrix(self) -> torch.Tensor:
        """``T`` with ``T_ij = rho^|i-j|``, shape ``batch_shape + (d, d)``."""
        d = self._dim
        index = torch.arange(d, device=self.loc.device)
        lag = (index.unsqueeze(-1) - index).abs()
        return self._rho_powers()[..., lag]

    @property
    def covariance_matrix(self) -> torch.Tensor:
        """``Sigma = D T D`` built explicitly, shape ``batch_shape + (d, d)`` (O(d^2) memory)."""
        sigma = self._full_scale()
        return sigma.unsqueeze(-1) * self.correlation_matrix * sigma.unsqueeze(-2)

    @property
    def scale_tril(self) -> torch.Tensor:
        """Closed-form Cholesky factor of ``Sigma``: ``L_ij = sigma_i rho^(i-j) c_j`` (``i >= j``).

        ``c_1 = 1`` and ``c_j = sqrt(1 - rho^2)`` otherwise; shape ``batch_shape + (d, d)``.
        """
        d = self._dim
        index = torch.arange(d, device=self.loc.device)
        lag = index.unsqueeze(-1) - index
        powers = self._rho_powers()[..., lag.clamp(min=0)]
        powers = powers * (lag >= 0).to(powers.dtype)
        column = torch.cat(
            [
                torch.ones_like(self.rho).unsqueeze(-1),
                self._innovation_scale().unsqueeze(-1).expand(self.batch_shape + (d - 1,)),
            ],
            dim=-1,
        )
        return self._full_scale().unsqueeze(-1) * powers * column.unsqueeze(-2)

    def rsample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        eps = _standard_normal(shape, dtype=self.loc.dtype, device=self.loc.device)
        s = self._innovation_scale().unsqueeze(-1)
        b = torch.cat([eps[..., :1], s * eps[..., 1:]], dim=-1)
        return self.loc + self.scale * _ar1_filter(b, self.rho)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)  # real support: NaN refused, infinity not
            check_finite("AR1Normal.log_prob", value=value)
        eps = self._innovations((value - self.loc) / self.scale)
        return -0.5 * eps.pow(2).sum(-1) - 0.5 * self._dim * _LOG_2PI - self._half_log_det()

    def entropy(self) -> torch.Tensor:
        return 0.5 * self._dim * (1 + _LOG_2PI) + self._half_log_det()


# ---- closed-form KL divergences ----------------------------------------------------------------


def _check_event(p: AR1Normal, q: torch.distributions.Distribution) -> None:
    if q.event_shape != p.event_shape:
        raise ValueError(
            f"KL(AR1Normal || {type(q).__name__}): event shapes differ, expected "
            f"{tuple(p.event_shape)}, got {tuple(q.event_shape)}"
        )


def _kl_ar1_diagonal(p: AR1Normal, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``KL(p || N(loc, diag(scale^2)))`` in O(d); uses ``diag(Sigma_p) = sigma^2``."""
    d = p.event_shape[0]
    trace = (p.scale / scale).pow(2)
    trace = trace.sum(-1) * (d if trace.shape[-1] == 1 else 1)
    mahalanobis = ((p.loc - loc) / scale).pow(2).sum(-1)
    log_det_q = scale.log().sum(-1) * (d if scale.shape[-1] == 1 else 1)
    return 0.5 * (trace + mahalanobis - d) + log_det_q - p._half_log_det()


@register_kl(AR1Normal, Independent)
def _kl_ar1_independent(p: AR1Normal, q: Independent) -> torch.Tensor:
    # torch's dispatch follows the MRO, so this also serves Pyro's Independent subclass
    base = q.base_dist
    if not (isinstance(base, Normal) and q.reinterpreted_batch_ndims == 1):
        raise NotImplementedError
    _check_event(p, q)
    return _kl_ar1_diagonal(p, base.loc, base.scale)


@register_kl(AR1Normal, MultivariateNormal)
def _kl_ar1_mvn(p: AR1Normal, q: MultivariateNormal) -> torch.Tensor:
    _check_event(p, q)
    # the prior's covariance is dense anyway, so the exact Cholesky factor of p costs nothing extra
    as_mvn = MultivariateNormal(p.loc, scale_tril=p.scale_tril, validate_args=False)
    return kl_divergence(as_mvn, q)


@register_kl(AR1Normal, AR1Normal)
def _kl_ar1_ar1(p: AR1Normal, q: AR1Normal) -> torch.Tensor:
    """O(d): ``Sigma_q^-1 = W^T W`` with ``W`` the bidiagonal innovation map of ``q``."""
    _check_event(p, q)
    d = p.event_shape[0]
    ratio = p.scale / q.scale
    ratio = ratio.expand(ratio.shape[:-1] + (d,))
    r = q.rho.unsqueeze(-1)
    cross = 2 * r * p.rho.unsqueeze(-1) * ratio[..., 1:] * ratio[..., :-1]
    rest = ratio[..., 1:].pow(2) - cross + r.pow(2) * ratio[..., :-1].pow(2)
    rest = rest / ((1 - r) * (1 + r))
    trace = ratio[..., 0].pow(2) + rest.sum(-1)
    mahalanobis = q._innovations((p.loc - q.loc) / q.scale).pow(2).sum(-1)
    return 0.5 * (trace + mahalanobis - d) + q._half_log_det() - p._half_log_det()
