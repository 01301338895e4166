"""The generic VAE: a PyroModule with ``model(x)`` / ``guide(x)`` and pluggable parts."""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import pyro
import torch
from pyro import poutine
from torch import Tensor, nn

from flowvae.infer.objectives import mmd
from flowvae.models.base import PyroModel, pyro_program
from flowvae.nn import (
    ConvDecoder,
    ConvEncoder,
    DenseDecoder,
    DenseEncoder,
    MLPDecoder,
    MLPEncoder,
)
from flowvae.parts import GUIDES, LIKELIHOODS, PRIORS
from flowvae.parts.registry import to_pyro_module
from flowvae.validation import check_int

LATENT = "z"
OBSERVED = "x"
MMD_FACTOR = "mmd"
DATA_PLATE = "data"
NETWORKS = ("mlp", "conv", "dense")


def batch_size_of(x: Optional[Tensor], batch_size: Optional[int]) -> int:
    """The data plate's size: ``x``'s batch, or ``batch_size`` when ``x`` is absent."""
    if x is None:
        if batch_size is None:
            raise ValueError("model(x=None) generates: give batch_size, the number of images")
        return int(batch_size)
    if batch_size is not None and batch_size != x.shape[0]:
        raise ValueError(f"batch_size={batch_size} but x holds {x.shape[0]} observations")
    return x.shape[0]


def check_images(x: Tensor, shape: Sequence[int]) -> Tensor:
    """``x`` itself if it is a ``uint8`` batch ``(B, *shape)``, else a ValueError saying why."""
    if x.dim() != 4 or tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(f"expected images of shape (B, {', '.join(map(str, shape))}), "
                         f"got {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images in 0..255, got dtype {x.dtype}")
    return x


class VAE(PyroModel):
    r"""A VAE as a Pyro model/guide pair with a pluggable guide family, prior and likelihood.

    ``model(x)``: ``z ~ p(z)``, ``x ~ p(x|z)``; ``guide(x)``: ``z ~ q(z|x)``; both inside
    ``pyro.plate("data", B)`` at dim -1, so vectorized particles (``Trace_ELBO(...,
    vectorize_particles=True)``) add a dim on the left. ``x`` is the *preprocessed*
    observation: call :meth:`preprocess` on ``uint8`` images first (dequantization for
    densities, dynamic binarization for Bernoulli), which :func:`flowvae.train.fit` does.
    ``model(batch_size=B)`` (no ``x``) generates: it returns ``B`` draws ``x ~ p(x|z)`` of
    shape ``(B, C, H, W)``, observations like :meth:`preprocess`'s, so that
    ``pyro.infer.Predictive`` gives prior- and posterior-predictive draws
    (``docs/guide/pyro_model.md``).

    The whole objective lives in the model, so every Pyro ELBO optimises it: ``beta`` scales
    the ``z`` site in model and guide, and ``mmd_weight`` adds InfoVAE's penalty as the factor
    ``"mmd"``, ``-mmd_weight * B * MMD^2`` between the batch's ``z`` and as many prior draws
    (per particle; :func:`flowvae.infer.mmd`, Gaussian kernel of bandwidth ``2 |z|``).

    Raises:
        ValueError: an unknown part or network name (naming the choices), a latent shape the
            network, guide or likelihood does not take, ``mmd_weight < 0``.

    Args:
        shape: image shape ``(C, H, W)``.
        latent_dim: size of ``z`` (vector latents), or a shape ``(C_z, h, w)`` for tensor
            latents (``network="dense"``, ``guide="normal"``).
        guide: a name in :data:`flowvae.parts.GUIDES`: ``"normal"`` (diagonal), ``"ar1"``
            (:class:`~flowvae.AR1Normal`), ``"flow"`` (RealNVP posterior), ``"delta"``,
            ``"planar"``.
        prior: a name in :data:`flowvae.parts.PRIORS`: ``"normal"`` or ``"flow"`` (RealNVP).
        likelihood: a name in :data:`flowvae.parts.LIKELIHOODS`: ``"bernoulli"``,
            ``"gaussian"``, ``"logistic"`` (discretized logistic mixture), ``"flow"`` (VAPNEV:
            a conditional RealNVP on logit pixels), ``"pixelcnn"``, ``"categorical"``
            (256-way softmax), or any part registered later; what it declares (e.g.
            ``needs_context``) decides how it is built.
        network: ``"mlp"`` or ``"conv"`` encoder and decoder (vector latents), or
            ``"dense"``: srVAE's DenseNet + channel-attention nets with ELUs
            (:class:`~flowvae.nn.DenseEncoder` / :class:`~flowvae.nn.DenseDecoder`, tensor
            latents whose ``h, w`` divide the image's by a power of two).
        hidden: MLP width, or the conv / dense networks' base channels.
        network_kwargs: further arguments of both networks (e.g. ``growth``, ``num_layers``).
        beta: weight of the ``z`` site in both model and guide (beta-VAE; ``0`` drops the
            regulariser, leaving ``E_q log p(x|z)``, Zhao et al.'s unregularized objective);
            an attribute that may change between steps (not under ``JitTrace_ELBO``, which
            compiles it in).
        mmd_weight: InfoVAE's ``lambda``, the weight of the per-data-point squared MMD
            between the aggregate posterior and the prior (vector latents; default 0: none).
        guide_kwargs, prior_kwargs, likelihood_kwargs: passed to the parts unchanged (a
            likelihood that ``needs_context`` gets ``context_features=latent_dim`` from here).
        name: prefix of the parameters' names in Pyro's param store (:class:`PyroModel`).

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
        latent_dim: Union[int, Sequence[int]] = 32,
        guide: str = "normal",
        prior: str = "normal",
        likelihood: str = "bernoulli",
        network: str = "mlp",
        hidden: int = 256,
        beta: float = 1.0,
        guide_kwargs: Optional[dict] = None,
        prior_kwargs: Optional[dict] = None,
        likelihood_kwargs: Optional[dict] = None,
        network_kwargs: Optional[dict] = None,
        mmd_weight: float = 0.0,
        name: Optional[str] = None,
    ):
        super().__init__(name)
        guide_cls, prior_cls = GUIDES.get_class(guide), PRIORS.get_class(prior)
        likelihood_cls = LIKELIHOODS.get_class(likelihood)
        if network not in NETWORKS:
            raise ValueError(f"network must be one of {NETWORKS}, got {network!r}")
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) != 3:
            raise ValueError(f"shape must be (C, H, W), got {self.shape}")
        if mmd_weight < 0:
            raise ValueError(f"mmd_weight must be >= 0, got {mmd_weight}")
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
            raise ValueError(f"{type(self).__name__}: beta: expected a finite number >= 0 "
                             f"(0 drops the KL term), got {beta!r}")
        self.latent_shape = _latent_shape(latent_dim, network, guide_cls, likelihood_cls)
        for size in self.latent_shape:
            check_int(type(self).__name__, "latent_dim", size, minimum=1)
        check_int(type(self).__name__, "hidden", hidden, minimum=1)
        self.beta = beta
        self.mmd_weight = mmd_weight
        self.q = guide_cls(latent_dim, **(guide_kwargs or {}))
        self.p_z = prior_cls(self.latent_shape, **(prior_kwargs or {}))
        # z conditions the likelihood's own network: its width is set here, and only here
        context = {"context_features": latent_dim} if likelihood_cls.needs_context else {}
        self.p_x = likelihood_cls(self.shape, **context, **(likelihood_kwargs or {}))
        self.encoder, self.decoder = _networks(network, self.shape, self.latent_shape,
                                               self.q.num_params, self.p_x.out_channels,
                                               hidden, network_kwargs or {})
        to_pyro_module(self)  # but the parts' plain_torch_modules (a zuko flow)

    @property
    def num_dims(self) -> int:
        return math.prod(self.shape)

    def preprocess(self, x: Tensor) -> Tensor:
        """``uint8`` images ``(B, C, H, W)`` to the observation ``model`` / ``guide`` take."""
        return self.p_x.preprocess(check_images(x, self.shape))

    @pyro_program
    def model(self, x: Optional[Tensor] = None, batch_size: Optional[int] = None) -> Tensor:
        like = next(self.parameters()) if x is None else x
        with pyro.plate(DATA_PLATE, batch_size_of(x, batch_size), dim=-1):
            with poutine.scale(scale=self.beta):
                z = pyro.sample(LATENT, self.p_z(like))
            obs = None if x is None else self.p_x.observation(x)
            x = pyro.sample(OBSERVED, self.p_x(self.decoder(z), z), obs=obs)
        if self.mmd_weight and obs is not None:
            self._mmd_factor(z, like)
        return x

    @pyro_program
    def guide(self, x: Tensor, batch_size: Optional[int] = None) -> None:
        with pyro.plate(DATA_PLATE, batch_size_of(x, batch_size), dim=-1):
            with poutine.scale(scale=self.beta):
                pyro.sample(LATENT, self.q(self.encoder(self.p_x.encoder_input(x))))
            self.p_x.guide(x)

    def _mmd_factor(self, z: Tensor, like: Tensor) -> None:
        """InfoVAE's ``-lambda N MMD^2(q(z), p(z))`` per particle, outside the data plate."""
        n = z.shape[-1 - len(self.latent_shape)]
        prior = self.p_z(like)
        draws = prior.rsample(z.shape[: z.dim() - len(self.latent_shape)])
        flat = z.flatten(z.dim() - len(self.latent_shape))
        penalty = mmd(flat, draws.flatten(draws.dim() - len(self.latent_shape)))
        if penalty.dim():  # (particles, 1): the particle plate's dim, over the data plate
            penalty = penalty.unsqueeze(-1)
        pyro.factor(MMD_FACTOR, -self.mmd_weight * n * penalty)

    # ------------------------------------------------------------------ sampling helpers
    def likelihood(self, z: Tensor):
        """``p(x|z)`` as a distribution."""
        return self.p_x(self.decoder(z), z)

    def posterior(self, x: Tensor):
        """``q(z|x)`` for a preprocessed observation ``x``."""
        return self.q(self.encoder(self.p_x.encoder_input(x)))

    def to_image(self, x: Tensor) -> Tensor:
        """An observation (or a sample of ``p(x|z)``) as an image in ``[0, 1]``."""
        return self.p_x.to_image(x)

    @torch.no_grad()
    def generate(self, n: int, temperature: float = 1.0) -> Tensor:
        """``n`` images ``z ~ p(z)``, ``x ~ p(x|z)``, in ``[0, 1]``; ``temperature`` scales the
        prior's and (for flow likelihoods) the base's noise."""
        like = next(self.parameters())
        p_z = self.p_z(like)
        if hasattr(p_z, "temperature"):  # a flow prior: temper its base, not its output
            p_z.temperature = temperature
            z = p_z.sample((n,))
        else:
            z = p_z.sample((n,)) * temperature
        d = self.likelihood(z)
        if hasattr(d, "temperature"):
            d.temperature = temperature
        return self.to_image(d.sample())

    @torch.no_grad()
    def reconstruct(self, x: Tensor, temperature: float = 1.0, mean: bool = False) -> Tensor:
        """``z ~ q(z|x)``, ``x' ~ p(x|z)`` for a preprocessed batch; images in ``[0, 1]``.
        ``mean=True`` decodes the posterior mean ``E_q[z]`` (a 64-sample average when ``q`` has
        no closed-form mean) instead of a draw; ``temperature`` scales the base noise of a flow
        likelihood (``0.5`` shows what ``z`` carries with less pixel noise)."""
        q = self.posterior(x)
        z = _posterior_mean(q) if mean else q.sample()
        d = self.likelihood(z)
        if hasattr(d, "temperature"):
            d.temperature = temperature
        return self.to_image(d.sample())

    @torch.no_grad()
    def interpolate(self, x1: Tensor, x2: Tensor, steps: int = 8) -> Tensor:
        """Decode ``steps`` points on the line between the posterior means of two preprocessed
        images (endpoints included), at temperature 0.5 for flow likelihoods;
        ``(steps, C, H, W)`` in ``[0, 1]``."""
        z1 = _posterior_mean(self.posterior(x1[None]))
        z2 = _posterior_mean(self.posterior(x2[None]))
        w = torch.linspace(0, 1, steps, dtype=z1.dtype, device=z1.device)
        w = w.view(steps, *(1 for _ in self.latent_shape))
        z = (1 - w) * z1 + w * z2
        d = self.likelihood(z)
        if hasattr(d, "temperature"):
            d.temperature = 0.5
        return self.to_image(d.sample())


def _latent_shape(latent_dim, network: str, guide_cls, likelihood_cls):
    """``z``'s shape: ``(latent_dim,)``, or a tensor latent ``(C, h, w)`` for the dense
    networks, checked against what the guide and the likelihood declare they take."""
    tensor_latent = not isinstance(latent_dim, int)
    if tensor_latent != (network == "dense") or (tensor_latent and (
            not guide_cls.tensor_latent or likelihood_cls.needs_context
            or len(latent_dim) != 3)):
        raise ValueError(
            "network='dense' takes a tensor latent latent_dim=(C, h, w) with a guide that takes "
            "tensor latents (e.g. 'normal') and a likelihood without a z context (not 'flow'); "
            "'mlp' and 'conv' take an int latent_dim, got "
            f"network={network!r}, latent_dim={latent_dim!r}, "
            f"guide={guide_cls.registered_name!r}"
        )
    return tuple(int(s) for s in latent_dim) if tensor_latent else (latent_dim,)


def _networks(network: str, shape, latent_shape, num_params: int, out_channels: int,
              hidden: int, kwargs: dict):
    """The encoder (images to the guide's ``num_params``) and decoder (``z`` to
    ``out_channels`` maps at the image's resolution) of the kind ``network``."""
    decoded = (out_channels, *shape[1:])
    if network == "mlp":
        return (MLPEncoder(shape, num_params, hidden, **kwargs),
                MLPDecoder(latent_shape[0], decoded, hidden, **kwargs))
    if network == "conv":
        return (ConvEncoder(shape, num_params, hidden, **kwargs),
                ConvDecoder(latent_shape[0], decoded, hidden, **kwargs))
    # dense: the guide's parameters as maps at the latent's resolution, flattened
    h, w = latent_shape[1:]
    encoder = nn.Sequential(DenseEncoder(shape, (num_params // (h * w), h, w), hidden, **kwargs),
                            nn.Flatten(-3))
    return encoder, DenseDecoder(latent_shape, decoded, hidden, **kwargs)


def _posterior_mean(q) -> Tensor:
    """``E_q[z]``: the closed form where ``q`` has one, else the average of 64 draws."""
    try:
        return q.mean
    except NotImplementedError:
        return q.sample((64,)).mean(0)
