"""VAPNEV: a VAE whose likelihood ``p(x|z)`` is a conditional multi-scale RealNVP."""

from __future__ import annotations

from typing import Optional, Sequence

import pyro
import torch
from pyro.nn.module import to_pyro_module_
from torch import Tensor, nn

from flowvae.distributions import FlowDistribution
from flowvae.models.base import PyroModel, pyro_program
from flowvae.models.vae import DATA_PLATE, OBSERVED, VAE, batch_size_of, check_images
from flowvae.parts import FlowLikelihood


class VAPNEV(VAE):
    r"""VAE with the flow likelihood of "Deep Variational Inference Without Pixel-Wise
    Reconstruction" (VAPNEV).

    ``q(z|x) = N(mu(x), sigma(x))`` by a convolutional encoder; ``p(z) = N(0, I)``; the
    convolutional decoder emits ``mu_v(z)`` and ``log sigma_v(z)`` as images, and

    ``log p(x~|z) = log N(f_z(x~); mu_v, sigma_v) + log|det df_z/dx~|``

    with ``f_z`` the logit transform (``alpha = 0.05``) followed by a :class:`ConditionalRealNVP`
    whose couplings use the multiplicative conditioner on ``z``, each after an
    :class:`~flowvae.transforms.ActNorm` (RealNVP's normalisation; initialised on the first
    training batch; ``flow_kwargs=dict(actnorm=False)`` leaves it out). ``x~`` are dequantized
    pixels, so the ELBO bounds the density of the 8-bit image (bits/dim as in ``DESIGN.md``).

    Args:
        shape: image shape ``(C, H, W)``.
        latent_dim: size of ``z`` (paper: 256).
        hidden: base channels of the encoder and decoder (paper: 32).
        flow_kwargs: :class:`ConditionalRealNVP` arguments (``num_scales``,
            ``hidden_channels``, ``checkerboard``, ``conditioner``, ...: the image flow's
            options in :data:`flowvae.choices.FLOW_OPTIONS`), passed down unchanged.
        conditional: ``False`` gives the same flow without ``z`` (ablation).
        alpha: the logit transform's margin.
        dequantization: ``"uniform"`` (the paper) or ``"variational"``: the noise ``u`` of
            ``x~ = (x + u) / 256`` becomes a latent with a learned ``q(u|x)`` (Flow++), which
            tightens the bound (:class:`~flowvae.parts.VariationalDequantizer`).

    Example:
        >>> import torch
        >>> model = VAPNEV((1, 8, 8), latent_dim=4, hidden=8,
        ...                flow_kwargs=dict(hidden_channels=8, num_blocks=1))
        >>> x = model.preprocess(torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8))
        >>> model.posterior(x).batch_shape, model.generate(2).shape
        (torch.Size([2]), torch.Size([2, 1, 8, 8]))
    """

    def __init__(
        self,
        shape: Sequence[int],
        latent_dim: int = 64,
        hidden: int = 32,
        flow_kwargs: Optional[dict] = None,
        conditional: bool = True,
        alpha: float = 0.05,
        dequantization: str = "uniform",
        **vae_kwargs,
    ):
        # the flow's options go down as given: FlowLikelihood passes them to ConditionalRealNVP
        likelihood_kwargs = dict(conditional=conditional, alpha=alpha,
                                 dequantization=dequantization, **(flow_kwargs or {}))
        super().__init__(shape, latent_dim, likelihood="flow", network="conv", hidden=hidden,
                         likelihood_kwargs=likelihood_kwargs, **vae_kwargs)


class FlowDensity(PyroModel):
    r"""A plain (unconditional) RealNVP density model of dequantized images, as a Pyro model
    with an empty guide: ``log p(x~) = log N(f(x~); m, s) + log|det df/dx~|`` with a learned
    per-pixel base ``m, s`` (initialised to ``0, 1``) and ``f`` the
    logit transform followed by a :class:`ConditionalRealNVP` without context. Its "ELBO" is
    the exact log-likelihood of ``x~`` (with ``dequantization="variational"``, a bound with
    ``q(u|x)`` in the guide); VAPNEV's ablation (b).

    Args:
        shape: image shape ``(C, H, W)``.
        flow_kwargs: :class:`ConditionalRealNVP` arguments.
        alpha: the logit transform's margin.
        dequantization: ``"uniform"`` or ``"variational"``, as for :class:`VAPNEV`.

    Example:
        >>> import torch
        >>> model = FlowDensity((1, 8, 8), flow_kwargs=dict(hidden_channels=8, num_blocks=1))
        >>> x = model.preprocess(torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8))
        >>> model.log_prob(x).shape, model.generate(3).shape
        (torch.Size([2]), torch.Size([3, 1, 8, 8]))
    """

    def __init__(self, shape: Sequence[int], flow_kwargs: Optional[dict] = None,
                 alpha: float = 0.05, dequantization: str = "uniform",
                 name: Optional[str] = None):
        super().__init__(name)
        self.shape = tuple(int(s) for s in shape)
        self.p_x = FlowLikelihood(self.shape, None, alpha=alpha, dequantization=dequantization,
                                  **(flow_kwargs or {}))
        # a learned per-pixel base (the analogue of VAPNEV's decoder output without z); it also
        # puts a parameter on the model's trace, without which Trace_ELBO skips backward
        self.base = _LearnedBase(self.shape)
        to_pyro_module_(self)

    def preprocess(self, x: Tensor) -> Tensor:
        return self.p_x.preprocess(check_images(x, self.shape))

    def distribution(self) -> FlowDistribution:
        loc, scale = self.base()  # a module call: Pyro records its parameters on the trace
        return FlowDistribution(self.p_x.transform, loc, scale, event_shape=self.shape)

    def log_prob(self, x: Tensor) -> Tensor:
        return self.distribution().log_prob(x)

    @pyro_program
    def model(self, x: Optional[Tensor] = None, batch_size: Optional[int] = None) -> Tensor:
        with pyro.plate(DATA_PLATE, batch_size_of(x, batch_size), dim=-1):
            obs = None if x is None else self.p_x.observation(x)
            return pyro.sample(OBSERVED, self.distribution(), obs=obs)

    @pyro_program
    def guide(self, x: Tensor, batch_size: Optional[int] = None) -> None:
        with pyro.plate(DATA_PLATE, batch_size_of(x, batch_size), dim=-1):
            self.p_x.guide(x)  # variational dequantization's q(u|x), if any

    def to_image(self, x: Tensor) -> Tensor:
        return self.p_x.to_image(x)

    @torch.no_grad()
    def generate(self, n: int, temperature: float = 1.0) -> Tensor:
        d = self.distribution()
        d.temperature = temperature
        return self.to_image(d.sample((n,)))


class _LearnedBase(nn.Module):
    def __init__(self, shape: Sequence[int]):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(shape))
        self.log_scale = nn.Parameter(torch.zeros(shape))

    def forward(self):
        return self.loc, self.log_scale.exp()
