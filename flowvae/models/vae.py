"""The generic VAE: a PyroModule with ``model(x)`` / ``guide(x)`` and pluggable parts."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import pyro
import torch
from pyro import poutine
from pyro.nn import PyroModule
from pyro.nn.module import to_pyro_module_
from torch import Tensor

from flowvae.models.components import GUIDES, LIKELIHOODS, PRIORS
from flowvae.nn import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder

LATENT = "z"
OBSERVED = "x"
DATA_PLATE = "data"
NETWORKS = ("mlp", "conv")


class VAE(PyroModule):
    r"""A VAE as a Pyro model/guide pair with a pluggable guide family, prior and likelihood.

    ``model(x)``: ``z ~ p(z)``, ``x ~ p(x|z)``; ``guide(x)``: ``z ~ q(z|x)``; both inside
    ``pyro.plate("data", B)`` at dim -1, so vectorized particles (``Trace_ELBO(...,
    vectorize_particles=True)``) add a dim on the left. ``x`` is the *preprocessed*
    observation: call :meth:`preprocess` on ``uint8`` images first (dequantization for
    densities, dynamic binarization for Bernoulli), which :func:`flowvae.train.fit` does.

    Args:
        shape: image shape ``(C, H, W)``.
        latent_dim: size of ``z`` (vector latents).
        guide: ``"normal"`` (diagonal), ``"ar1"`` (:class:`~flowvae.AR1Normal`) or ``"flow"``
            (RealNVP posterior).
        prior: ``"normal"`` or ``"flow"`` (RealNVP prior).
        likelihood: ``"bernoulli"``, ``"gaussian"``, ``"logistic"`` (discretized logistic
            mixture) or ``"flow"`` (VAPNEV: a conditional RealNVP on logit pixels).
        network: ``"mlp"`` or ``"conv"`` encoder and decoder.
        hidden: MLP width, or the conv networks' base channels.
        beta: weight of the ``z`` site in both model and guide (beta-VAE; ``0`` drops the
            regulariser, leaving ``E_q log p(x|z)``, Zhao et al.'s unregularized objective).
        guide_kwargs, prior_kwargs, likelihood_kwargs: passed to the parts.

    Example:
        >>> import torch
        >>> from pyro.infer import SVI, Trace_ELBO
        >>> from pyro.optim import Adam
        >>> vae = VAE((1, 8, 8), latent_dim=4, hidden=32)
        >>> x = vae.preprocess(torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8))
        >>> svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), Trace_ELBO())
        >>> loss = svi.step(x)
        >>> vae.generate(3).shape
        torch.Size([3, 1, 8, 8])
    """

    def __init__(
        self,
        shape: Sequence[int],
        latent_dim: int = 32,
        guide: str = "normal",
        prior: str = "normal",
        likelihood: str = "bernoulli",
        network: str = "mlp",
        hidden: int = 256,
        beta: float = 1.0,
        guide_kwargs: Optional[dict] = None,
        prior_kwargs: Optional[dict] = None,
        likelihood_kwargs: Optional[dict] = None,
    ):
        super().__init__()
        for name, value, choices in (("guide", guide, GUIDES), ("prior", prior, PRIORS),
                                     ("likelihood", likelihood, LIKELIHOODS),
                                     ("network", network, NETWORKS)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) != 3:
            raise ValueError(f"shape must be (C, H, W), got {self.shape}")
        self.config = dict(
            shape=self.shape, latent_dim=latent_dim, guide=guide, prior=prior,
            likelihood=likelihood, network=network, hidden=hidden, beta=beta,
            guide_kwargs=guide_kwargs, prior_kwargs=prior_kwargs,
            likelihood_kwargs=likelihood_kwargs,
        )
        self.latent_shape = (latent_dim,)
        self.beta = beta
        self.q = GUIDES[guide](latent_dim, **(guide_kwargs or {}))
        self.p_z = PRIORS[prior](self.latent_shape, **(prior_kwargs or {}))
        lik_kwargs = dict(likelihood_kwargs or {})
        if likelihood == "flow":
            lik_kwargs.setdefault("context_features", latent_dim)
        self.p_x = LIKELIHOODS[likelihood](self.shape, **lik_kwargs)
        decoded = (self.p_x.out_channels, *self.shape[1:])
        if network == "mlp":
            self.encoder = MLPEncoder(self.shape, self.q.num_params, hidden)
            self.decoder = MLPDecoder(latent_dim, decoded, hidden)
        else:
            self.encoder = ConvEncoder(self.shape, self.q.num_params, hidden)
            self.decoder = ConvDecoder(latent_dim, decoded, hidden)
        to_pyro_module_(self)

    @property
    def num_dims(self) -> int:
        return math.prod(self.shape)

    def preprocess(self, x: Tensor) -> Tensor:
        """``uint8`` images ``(B, C, H, W)`` to the observation ``model`` / ``guide`` take."""
        if x.dim() != 4 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"expected images of shape (B, {', '.join(map(str, self.shape))}),"
                             f" got {tuple(x.shape)}")
        if x.dtype != torch.uint8:
            raise ValueError(f"expected uint8 images in 0..255, got dtype {x.dtype}")
        return self.p_x.preprocess(x)

    def model(self, x: Tensor) -> None:
        with pyro.plate(DATA_PLATE, x.shape[0], dim=-1):
            with poutine.scale(scale=self.beta):
                z = pyro.sample(LATENT, self.p_z(x))
            pyro.sample(OBSERVED, self.p_x(self.decoder(z), z), obs=x)

    def guide(self, x: Tensor) -> None:
        with pyro.plate(DATA_PLATE, x.shape[0], dim=-1):
            with poutine.scale(scale=self.beta):
                pyro.sample(LATENT, self.q(self.encoder(self.p_x.encoder_input(x))))

    # ------------------------------------------------------------------ sampling helpers
    def likelihood(self, z: Tensor):
        """``p(x|z)`` as a distribution."""
        return self.p_x(self.decoder(z), z)

    def posterior(self, x: Tensor):
        """``q(z|x)`` for a preprocessed observation ``x``."""
        return self.q(self.encoder(self.p_x.encoder_input(x)))

    def to_image(self, x: Tensor) -> Tensor:
        """An observation (or a sample of ``p(x|z)``) as an image in ``[0, 1]``."""
        if self.p_x.discrete and isinstance(self.p_x, LIKELIHOODS["logistic"]):
            return x / 255
        return x.clamp(0, 1)

    @torch.no_grad()
    def generate(self, n: int, temperature: float = 1.0) -> Tensor:
        """``n`` images ``z ~ p(z)``, ``x ~ p(x|z)``, in ``[0, 1]``; ``temperature`` scales the
        prior's and (for flow likelihoods) the base's noise."""
        like = next(self.parameters())
        z = self.p_z(like).sample((n,))
        if temperature != 1.0:
            z = z * temperature
        d = self.likelihood(z)
        if hasattr(d, "temperature"):
            d.temperature = temperature
        return self.to_image(d.sample())

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """``z ~ q(z|x)``, ``x' ~ p(x|z)`` for a preprocessed batch; images in ``[0, 1]``."""
        return self.to_image(self.likelihood(self.posterior(x).sample()).sample())

    @torch.no_grad()
    def interpolate(self, x1: Tensor, x2: Tensor, steps: int = 8) -> Tensor:
        """Decode ``steps`` points on the line between the posterior means of two preprocessed
        images (approximated by a 64-sample average); ``(steps, C, H, W)`` in ``[0, 1]``."""
        z1 = self.posterior(x1[None]).sample((64,)).mean(0)
        z2 = self.posterior(x2[None]).sample((64,)).mean(0)
        w = torch.linspace(0, 1, steps, dtype=z1.dtype, device=z1.device)[:, None]
        z = (1 - w) * z1 + w * z2
        d = self.likelihood(z)
        if hasattr(d, "temperature"):
            d.temperature = 0.5
        return self.to_image(d.sample())
