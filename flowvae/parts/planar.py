"""Amortised planar flow posteriors (Rezende & Mohamed 2015; the rNVP report's baseline):
``q(z|x)``: ``z_0 ~ Normal(mu(x), sigma(x))`` through ``K`` planar maps
``f(z) = z + u_hat tanh(w^T z + b)`` whose ``u, w, b`` the encoder emits per data point, the
guide ``"planar"`` of :data:`~flowvae.parts.GUIDES`;
``log q(z_K|x) = log q(z_0|x) - sum_k log|det df_k/dz_{k-1}|``.
:func:`flowvae.models.posterior_flow_vae` compares it with RealNVP posteriors.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from nflows.transforms.base import InverseNotAvailable, Transform
from torch import Tensor, nn
from torch.nn import functional as F

from flowvae.distributions import FlowDistribution
from flowvae.parts.guides import GUIDES


def planar_u_hat(u: Tensor, w: Tensor) -> Tensor:
    r"""Rezende & Mohamed's reparametrisation of ``u`` that keeps a tanh planar map invertible.

    ``u_hat = u + (m(w^T u) - w^T u) w / ||w||^2`` with ``m(a) = -1 + softplus(a)``, so that
    ``w^T u_hat = m(w^T u) > -1`` and ``1 + u_hat^T psi(z) = 1 + tanh'(.) w^T u_hat > 0``.
    ``u, w``: ``(..., D)``; ``w`` must be non-zero.
    """
    wu = (w * u).sum(-1, keepdim=True)
    return u + (F.softplus(wu) - 1 - wu) * w / (w * w).sum(-1, keepdim=True)


class AmortizedPlanarFlow(Transform):
    r"""``num_steps`` planar maps whose parameters are the context (amortised by an encoder).

    Step ``k`` maps ``z_{k-1}`` to ``z_k = z_{k-1} + u_hat_k tanh(w_k^T z_{k-1} + b_k)``, with
    ``u_hat_k`` from :func:`planar_u_hat`, and
    ``log|det| = log(1 + tanh'(a_k) w_k^T u_hat_k)``, ``a_k = w_k^T z_{k-1} + b_k``, computed
    as ``log(tanh(a)^2 + (1 - tanh(a)^2) softplus(w^T u))`` (both terms are non-negative).

    Direction: planar maps have no closed-form inverse, so this flow only runs in the
    **sampling** direction, which in nflows' convention is :meth:`inverse`:
    ``inverse(z_0, context) -> (z_K, sum_k log|det df_k/dz_{k-1}|)``. :meth:`forward`
    (``z_K -> z_0``) raises :class:`~nflows.transforms.base.InverseNotAvailable`. Inside a
    :class:`~flowvae.FlowDistribution` this means that ``log_prob`` is exact for the value its
    last ``rsample`` returned (cached), which is all an ELBO or IWAE estimate needs, and that
    scoring any other value raises.

    Shapes: ``z_0`` is ``(B, D)``; ``context`` is ``(B, num_steps * (2 D + 1))``, step ``k``
    reading ``[u_k (D), w_k (D), b_k (1)]``; ``logabsdet`` is ``(B,)``.

    Args:
        features: ``D``, the size of ``z``.
        num_steps: number of planar maps.

    References:
        Rezende & Mohamed, "Variational Inference with Normalizing Flows", ICML 2015 (app. A.1).

    Example:
        >>> import torch
        >>> flow = AmortizedPlanarFlow(3, num_steps=2)
        >>> z0, params = torch.randn(5, 3), torch.randn(5, flow.context_features)
        >>> z, logabsdet = flow.inverse(z0, context=params)
        >>> z.shape, logabsdet.shape
        (torch.Size([5, 3]), torch.Size([5]))
    """

    def __init__(self, features: int, num_steps: int):
        super().__init__()
        if features < 1 or num_steps < 1:
            raise ValueError(f"features and num_steps must be >= 1, got {features}, {num_steps}")
        self.shape = (int(features),)
        self.num_steps = int(num_steps)
        self.context_features = self.num_steps * (2 * self.shape[0] + 1)

    def step_params(self, context: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
        """``u, w, b`` of every step from a context ``(B, F)``: ``(B, K, D)`` twice, ``(B, K)``."""
        d = self.shape[0]
        if context is None or context.dim() != 2 or context.shape[-1] != self.context_features:
            got = None if context is None else tuple(context.shape)
            raise ValueError(f"context: expected shape (B, {self.context_features}), got {got}")
        u, w, b = context.reshape(-1, self.num_steps, 2 * d + 1).split([d, d, 1], dim=-1)
        return u, w, b.squeeze(-1)

    def forward(self, inputs: Tensor, context: Optional[Tensor] = None):
        raise InverseNotAvailable(
            "planar flows have no closed-form inverse (z_K -> z_0): the log-density of a "
            "planar posterior is available only for the value its distribution's last rsample "
            "returned; scoring any other value is unsupported"
        )

    def inverse(self, inputs: Tensor, context: Optional[Tensor] = None):
        if inputs.dim() != 2 or inputs.shape[1:] != self.shape:
            raise ValueError(f"inputs: expected shape (B, {self.shape[0]}), got "
                             f"{tuple(inputs.shape)}")
        u, w, b = self.step_params(context)
        if u.shape[0] != inputs.shape[0]:
            raise ValueError(f"context has batch {u.shape[0]}, inputs have {inputs.shape[0]}")
        z, logabsdet = inputs, inputs.new_zeros(inputs.shape[0])
        for k in range(self.num_steps):
            wk = w[:, k]
            wu = (wk * u[:, k]).sum(-1)
            t = torch.tanh((wk * z).sum(-1) + b[:, k])
            z = z + planar_u_hat(u[:, k], wk) * t[:, None]
            logabsdet = logabsdet + torch.log(t * t + (1 - t * t) * F.softplus(wu))
        return z, logabsdet


@GUIDES.register("planar")
class PlanarGuide(nn.Module):
    r"""``q(z|x)``: ``z_0 ~ Normal(mu, sigma)`` through ``num_steps`` amortised planar maps.

    The encoder emits ``[mu (D), log sigma (D), (u_k, w_k, b_k) for k = 1..num_steps]``
    (``num_params = 2 D + num_steps (2 D + 1)``), as in Rezende & Mohamed's amortised planar
    flows. The distribution is a :class:`~flowvae.FlowDistribution` over an
    :class:`AmortizedPlanarFlow`: its ``log_prob`` is exact for its own ``rsample`` (all that
    ``Trace_ELBO`` and :func:`~flowvae.infer.iwae_log_likelihood` ask for) and raises
    :class:`~nflows.transforms.base.InverseNotAvailable` for any other value (so e.g.
    :func:`~flowvae.infer.mutual_information` is unsupported for this guide).

    Args:
        latent_dim: ``D``.
        num_steps: number of planar maps (``2k`` against ``k`` RealNVP steps).

    Example:
        >>> import torch
        >>> guide = PlanarGuide(4, num_steps=3)
        >>> q = guide(torch.randn(2, guide.num_params))
        >>> z = q.rsample()
        >>> z.shape, q.log_prob(z).shape
        (torch.Size([2, 4]), torch.Size([2]))
    """

    tensor_latent = False

    def __init__(self, latent_dim: int, num_steps: int = 4):
        super().__init__()
        self.latent_shape = (latent_dim,)
        self.flow = AmortizedPlanarFlow(latent_dim, num_steps)
        self.num_params = 2 * latent_dim + self.flow.context_features

    def forward(self, params: Tensor):
        d = self.latent_shape[0]
        loc, log_scale, flow_params = params.split([d, d, self.flow.context_features], dim=-1)
        return FlowDistribution(self.flow, loc, log_scale.exp(), context=flow_params)
