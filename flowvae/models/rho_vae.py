r"""rho-VAE: the AR(1) Gaussian guide in four VAE variants, each against the diagonal guide.

:func:`rho_vae` configures the generic :class:`~flowvae.models.VAE` and returns it with the
objective to train it with. The guide is the only thing that differs between
``guide="normal"`` (diagonal Gaussian, ``d`` means and ``d`` log-scales) and ``guide="ar1"``
(:class:`~flowvae.distributions.AR1Normal`, ``d`` means, one log-scale and one correlation
``rho = tanh(.)`` per sample):

============  ========================  ====================================================
variant       networks                  objective (all with the closed-form KL)
============  ========================  ====================================================
``vanilla``   MLP encoder / decoder     ELBO
``beta``      MLP encoder / decoder     ``E_q log p(x|z) - beta KL`` (``beta`` default 4)
``conv``      conv encoder / decoder    ELBO (strided convolutions, no residual blocks)
``infovae``   MLP encoder / decoder     ``E_q log p(x|z) - KL - lambda N MMD^2(q(z), p(z))``
============  ========================  ====================================================

The weights live in the model program, so any Pyro ELBO optimises the variant's objective: the
beta-VAE is the :class:`~flowvae.models.VAE` with ``beta`` (the ``z`` site scaled by
``poutine.scale``), the InfoVAE the VAE with ``mmd_weight`` (a ``pyro.factor`` site ``"mmd"``).
The objective returned with the model is :class:`~flowvae.infer.GeneralizedELBO` of kind
``"elbo"`` with ``analytic_kl=True``: ``TraceMeanField_ELBO``'s estimator, the KL
``kl_divergence(q(z|x), p(z))`` in closed form for both guides (``AR1Normal`` registers its
KLs with torch), never a Monte-Carlo estimate. InfoVAE's regulariser is the squared MMD between
the *aggregate* posterior (the batch of samples ``z_i ~ q(z|x_i)``) and prior draws, weighted by
``lambda`` per data point (InfoVAE with ``alpha = 0``: the KL keeps weight 1). The rho-VAE paper
gives no weights; the default ``lambda = 100`` is measured on MNIST (6,000 images, 5 epochs,
latent 16, diagonal guide: rate 6.2 / 8.1 / 6.3 / 4.4 / 3.3 / 2.1 nats at ``lambda`` = 0 / 1 / 10 /
100 / 300 / 1000): larger weights on from the first step hold ``q(z)`` at the
prior before the decoder uses ``z`` and delay the latent's use (not the objective's optimum: a
model trained at ``lambda = 0`` keeps its latent when 1000 is then switched on).

Unlike the authors' released code, the AR(1) samples include ``rho`` and the
``sqrt(1 - rho^2)`` factor (so they follow the density the KL describes), the beta-VAE has a
``beta`` and the InfoVAE an MMD term.

References:
    Ferdowsi, S., Diephuis, M., Rezaeifar, S. and Voloshynovskiy, S. rho-VAE: autoregressive
    parametrization of the VAE encoder. 2019.

    Higgins, I. et al. beta-VAE: learning basic visual concepts with a constrained variational
    framework. ICLR 2017.

    Zhao, S., Song, J. and Ermon, S. InfoVAE: information maximizing variational autoencoders.
    2017.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

from flowvae.infer.objectives import GeneralizedELBO
from flowvae.models.vae import VAE

VARIANTS = ("vanilla", "beta", "conv", "infovae")
GUIDES = ("normal", "ar1")


def rho_vae(
    variant: str,
    guide: str,
    shape: Sequence[int],
    latent_dim: int = 16,
    *,
    hidden: Optional[int] = None,
    beta: float = 4.0,
    mmd_weight: float = 100.0,
    per_dim_scale: bool = False,
    likelihood: str = "bernoulli",
    **vae_kwargs,
) -> Tuple[VAE, GeneralizedELBO]:
    """A rho-VAE experiment's model and objective: ``(vae, elbo)``, to train with
    ``flowvae.train.fit(vae, ..., elbo=elbo)`` or ``pyro.infer.SVI``.

    Args:
        variant: ``"vanilla"``, ``"beta"``, ``"conv"`` or ``"infovae"`` (module docstring).
        guide: ``"normal"`` (diagonal Gaussian) or ``"ar1"`` (AR(1) Gaussian).
        shape: image shape ``(C, H, W)``.
        latent_dim: size of ``z``.
        hidden: MLP width, or the conv networks' base channels; ``None``: 256 (MLP), 16 (conv).
            The conv networks default to ``network_kwargs=dict(blocks_per_stage=0)``: strided
            convolutions without residual blocks.
        beta: the KL weight of ``variant="beta"``.
        mmd_weight: InfoVAE's ``lambda``, the weight of the per-data-point squared MMD
            (``variant="infovae"``); the reconstruction sums over pixels, so it grows with them
            (default: 28x28 images; module docstring).
        per_dim_scale: the AR(1) guide with ``d`` scales instead of one (``guide="ar1"``).
        likelihood: the VAE's ``p(x|z)`` (default Bernoulli, dynamically binarized).
        **vae_kwargs: further arguments of :class:`~flowvae.models.VAE` (e.g.
            ``network_kwargs``); ``guide_kwargs``, ``network``, ``beta`` and ``mmd_weight``
            are set here.

    Returns:
        the :class:`~flowvae.models.VAE` and its :class:`~flowvae.infer.GeneralizedELBO`
        (which gives the gradient of ``TraceMeanField_ELBO``).

    Example:
        >>> import torch
        >>> vae, elbo = rho_vae("beta", "ar1", (1, 8, 8), latent_dim=4, hidden=16)
        >>> vae.config["guide"], vae.q.num_params, vae.beta, elbo
        ('ar1', 6, 4.0, GeneralizedELBO(kind='elbo', beta=1.0, mmd_weight=0.0, latent_site='z'))
        >>> x = vae.preprocess(torch.randint(0, 256, (8, 1, 8, 8), dtype=torch.uint8))
        >>> elbo.loss(vae.model, vae.guide, x) > 0
        True
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if guide not in GUIDES:
        raise ValueError(f"guide must be one of {GUIDES}, got {guide!r}")
    if per_dim_scale and guide != "ar1":
        raise ValueError("per_dim_scale is an option of the AR(1) guide (guide='ar1')")
    for name in ("guide_kwargs", "network", "beta", "mmd_weight"):
        if name in vae_kwargs:
            raise ValueError(f"rho_vae sets {name!r} itself; got {name}={vae_kwargs[name]!r}")
    network = "conv" if variant == "conv" else "mlp"
    if hidden is None:
        hidden = 16 if network == "conv" else 256
    if network == "conv":
        vae_kwargs.setdefault("network_kwargs", dict(blocks_per_stage=0))
    weights = {"beta": dict(beta=beta), "infovae": dict(mmd_weight=mmd_weight)}.get(variant, {})
    vae = VAE(shape, latent_dim=latent_dim, guide=guide, likelihood=likelihood,
              network=network, hidden=hidden,
              guide_kwargs=dict(per_dim_scale=True) if per_dim_scale else None,
              **weights, **vae_kwargs)
    elbo = GeneralizedELBO("elbo", analytic_kl=True, max_plate_nesting=1)
    return vae, elbo
