"""Posterior flows (rNVP report): amortised RealNVP vs planar flows inside the generic VAE.

``q(z|x)``: ``z_0 ~ Normal(mu(x), sigma(x))``, ``z_K = f_K o ... o f_1(z_0)``,
``log q(z_K|x) = log q(z_0|x) - sum_k log|det df_k/dz_{k-1}|``, with

* ``"realnvp"``: ``k`` steps of two alternating MLP affine couplings conditioned on encoder
  features (the generic :class:`~flowvae.parts.FlowGuide` with ``2k`` couplings);
* ``"planar"``: ``2k`` planar steps ``f(z) = z + u_hat tanh(w^T z + b)`` whose ``u, w, b`` the
  encoder emits per data point (:class:`~flowvae.parts.PlanarGuide`);
* ``"normal"``: the diagonal Gaussian baseline.

The models are configurations of :class:`~flowvae.models.vae.VAE` built by
:func:`posterior_flow_vae`, so that the encoder and decoder are the same for every guide.
"""

from __future__ import annotations

from typing import Sequence

from flowvae.choices import FLOW_OPTIONS
from flowvae.models._deprecated import moved
from flowvae.models.vae import VAE

KINDS = ("normal", "realnvp", "planar")
"""Guide kinds of :func:`posterior_flow_vae`."""

__getattr__ = moved(__name__, {name: "flowvae.parts.planar" for name in
                               ("AmortizedPlanarFlow", "PlanarGuide", "planar_u_hat")})


def posterior_flow_vae(
    kind: str,
    steps: int,
    shape: Sequence[int],
    *,
    latent_dim: int = 40,
    hidden: int = 300,
    network: str = "mlp",
    likelihood: str = "bernoulli",
    context_features: int = 32,
    flow_hidden: int = FLOW_OPTIONS["vector"]["hidden_features"],
    **vae_kwargs,
):
    """The rNVP report's VAE with a ``kind`` posterior: ``"realnvp"`` (``steps`` RealNVP steps,
    i.e. ``2 * steps`` amortised couplings), ``"planar"`` (``2 * steps`` amortised planar maps)
    or ``"normal"`` (diagonal Gaussian; ``steps`` must be 0).

    Encoder and decoder (``network``, ``hidden``), prior ``N(0, I)`` and ``likelihood`` are the
    same for every kind. ``context_features`` and ``flow_hidden`` size the RealNVP couplings'
    encoder features and MLPs. Other keyword arguments go to :class:`~flowvae.models.VAE`.

    Example:
        >>> vae = posterior_flow_vae("planar", 2, (1, 8, 8), latent_dim=4, hidden=16)
        >>> vae.q.flow.num_steps, vae.config["guide"]
        (4, 'planar')
    """

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "normal" and steps != 0:
        raise ValueError(f"the diagonal Gaussian guide has no flow steps, got steps={steps}")
    if kind != "normal" and steps < 1:
        raise ValueError(f"a {kind} posterior needs steps >= 1, got {steps}")
    guide, guide_kwargs = {
        "normal": ("normal", None),
        "realnvp": ("flow", dict(context_features=context_features, num_couplings=2 * steps,
                                 hidden_features=flow_hidden)),
        "planar": ("planar", dict(num_steps=2 * steps)),
    }[kind]
    return VAE(shape, latent_dim=latent_dim, guide=guide, likelihood=likelihood,
               network=network, hidden=hidden, guide_kwargs=guide_kwargs, **vae_kwargs)

