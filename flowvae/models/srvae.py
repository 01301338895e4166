r"""srVAE (Gatopoulos, Stol & Tomczak, 2020): a VAE with a RealNVP prior, and the two-level
super-resolution VAE whose first level models a 2x downscaled copy of the image."""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import pyro
import torch
from pyro.nn.module import pyro_method, to_pyro_module_
from torch import Tensor, nn
from torch.distributions import kl_divergence
from torch.nn import functional as F

from flowvae.distributions import DiscretizedLogisticMixture
from flowvae.models.base import PyroModel
from flowvae.models.vae import DATA_PLATE, VAE, batch_size_of
from flowvae.nn import DenseDecoder, DenseEncoder, DenseNet
from flowvae.nn.densenet import ChannelAttention
from flowvae.nn.init import DataDependentInit, normalize_convolutions
from flowvae.parts import DiagonalNormalGuide, FlowPrior, LogisticMixtureLikelihood

__all__ = ["FlowPriorVAE", "SRVAE", "data_dependent_init", "downscale", "LATENT_U", "LATENT_Z",
           "LOW_RES", "OBSERVED"]

#: sample sites of :class:`SRVAE`
LATENT_U = "u"
LATENT_Z = "z"
LOW_RES = "y"
OBSERVED = "x"

_MAX_VALUE = 255.0


def downscale(x: Tensor, factor: int = 2) -> Tensor:
    """``d(x)``: average-pool ``factor x factor`` blocks of 8-bit images ``(*batch, C, H, W)``
    (values ``0..255``, any float dtype) and round to integers, so that a discretized logistic
    mixture can score the result.

    Example:
        >>> x = torch.tensor([[[[0., 1., 10., 10.], [2., 2., 10., 11.]]]])
        >>> downscale(x)
        tensor([[[[ 1., 10.]]]])
    """
    batch = x.shape[:-3]
    y = F.avg_pool2d(x.reshape(-1, *x.shape[-3:]), factor)
    return torch.round(y).reshape(*batch, *y.shape[-3:])


@torch.no_grad()
def data_dependent_init(forward: Callable[[], object], networks: Sequence[nn.Module],
                        eps: float = 1e-6) -> int:
    r"""srVAE's data-dependent initialisation: :func:`flowvae.nn.init.normalize_convolutions`
    with the gates of :class:`~flowvae.nn.densenet.ChannelAttention` left alone. ``forward()``
    (a pass through the model on one batch) runs twice without gradients; in the second run
    every ``Conv2d`` / ``ConvTranspose2d``, in the order they run, gets ``w <- w / s`` and
    ``b <- (b - m) / s`` per output channel, ``m`` and ``s`` the mean and standard deviation
    of its output on the batch (over batch and positions), so that its output has mean 0 and
    standard deviation 1 and the layers after it see normalised inputs.
    Left alone (PyTorch's default initialisation, small outputs): the last convolution each
    network runs (the network's output: a distribution's parameters, or features that
    another network reads) and the gates of :class:`~flowvae.nn.densenet.ChannelAttention`
    (they act on per-image averages).

    Why: with PyTorch's default initialisation every DenseNet layer shrinks its input's scale,
    so a deep path (srVAE's ``z -> p(x|y,z)``, through a :class:`DenseDecoder` and a
    :class:`DenseNet`) starts with outputs that hardly depend on its input (measured with
    ``examples/srvae.py``'s sizes on Fashion-MNIST: the locations of ``p(x|y,z)`` move
    ``4e-5`` times as much when ``z`` is redrawn as when ``y`` is another image's; ``0.7``
    times after this initialisation); the KL term then pulls ``q(z|x)`` onto the prior
    before the decoder learns to use ``z``, and ``z`` collapses. The paper initialises all its
    networks this way (with weight normalisation).

    Args:
        forward: runs the networks on a batch, e.g. ``lambda: model.elbo_terms(x)``.
        networks: the modules whose convolutions are initialised (not a flow whose last
            layers are zero-initialised so that it starts as the identity).
        eps: added to ``s``.

    Returns:
        the number of convolutions initialised.

    Example:
        >>> from flowvae.nn import DenseDecoder
        >>> net = DenseDecoder((2, 4, 4), (3, 16, 16), hidden_channels=8, growth=4, num_layers=1)
        >>> z = torch.randn(64, 2, 4, 4)
        >>> data_dependent_init(lambda: net(z), [net])
        8
    """
    return normalize_convolutions(forward, networks, skip=(ChannelAttention,), eps=eps)


def _temper(d: DiscretizedLogisticMixture, temperature: float,
            loc_shift: Optional[Tensor] = None) -> DiscretizedLogisticMixture:
    """``d`` with every logistic's scale times ``temperature`` and locations shifted by
    ``loc_shift`` (``(*batch, C, H, W)``); the component is still drawn from the mixture."""
    loc = d.loc if loc_shift is None else d.loc + loc_shift.unsqueeze(-4)
    log_scale = d.log_scale if temperature == 1.0 else d.log_scale + math.log(temperature)
    return DiscretizedLogisticMixture(d.logit_probs, loc, log_scale, d.coeffs,
                                      min_log_scale=d.min_log_scale)


def _scaled(x: Tensor) -> Tensor:
    """8-bit values to the ``[-1, 1]`` scale of the networks and of the mixtures."""
    return x / (_MAX_VALUE / 2) - 1


class FlowPriorVAE(VAE):
    r"""Single-level VAE with a RealNVP prior: srVAE's baseline ("VAE" in its Table 1).

    ``p(z)``: a standard Normal pushed through an unconditional multi-scale
    :class:`~flowvae.ConditionalRealNVP` over the tensor latent ``z`` of shape
    ``latent_shape = (C_z, h, w)`` (paper: ``16 x 8 x 8``), i.e. a
    :class:`~flowvae.FlowDistribution`; ``q(z|x) = N(mu(x), sigma(x))`` by a DenseNet +
    channel-attention encoder with ELUs (:class:`~flowvae.nn.DenseEncoder`); ``p(x|z)`` a
    :class:`~flowvae.DiscretizedLogisticMixture` on 8-bit pixels (channel-coupled when ``C = 3``)
    from the mirror :class:`~flowvae.nn.DenseDecoder`. It is the generic :class:`VAE` with
    ``network="dense"``, ``prior="flow"``, ``likelihood="logistic"``; ``VAE(...,
    prior="normal")`` with the same arguments is the standard-normal-prior baseline.

    Observations are the raw 8-bit values as floats (:meth:`preprocess` of ``uint8`` images);
    the ELBO is a log-probability mass, so bits/dim is ``-ELBO / (D log 2)``.

    Args:
        shape: image shape ``(C, H, W)``; ``H / h = W / w`` a power of two.
        latent_shape: ``(C_z, h, w)``.
        hidden: channels between dense blocks.
        growth, num_layers: growth rate and layers per dense block.
        num_mixtures: logistic components per pixel.
        flow_kwargs: :class:`~flowvae.ConditionalRealNVP` arguments of the prior.
        beta: KL weight (1: the ELBO).
        name: prefix of its names in Pyro's param store (:class:`~flowvae.models.PyroModel`).

    Example:
        >>> import torch
        >>> vae = FlowPriorVAE((1, 8, 8), latent_shape=(2, 4, 4), hidden=8, growth=4,
        ...                    num_layers=1, num_mixtures=2,
        ...                    flow_kwargs=dict(hidden_channels=4, num_blocks=1, num_scales=1))
        >>> x = vae.preprocess(torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8))
        >>> vae.posterior(x).event_shape, vae.generate(2, temperature=0.8).shape
        (torch.Size([2, 4, 4]), torch.Size([2, 1, 8, 8]))
    """

    def __init__(
        self,
        shape: Sequence[int],
        latent_shape: Sequence[int] = (16, 8, 8),
        hidden: int = 64,
        growth: int = 32,
        num_layers: int = 3,
        num_mixtures: int = 10,
        flow_kwargs: Optional[dict] = None,
        beta: float = 1.0,
        name: Optional[str] = None,
    ):
        latent_shape = tuple(int(s) for s in latent_shape)
        super().__init__(
            shape, latent_dim=latent_shape, guide="normal", prior="flow", likelihood="logistic",
            network="dense", hidden=hidden, beta=beta, prior_kwargs=flow_kwargs,
            likelihood_kwargs=dict(num_mixtures=num_mixtures),
            network_kwargs=dict(growth=growth, num_layers=num_layers), name=name,
        )


class SRVAE(PyroModel, DataDependentInit):
    r"""The super-resolution VAE: a two-level VAE whose first level is ``y = d(x)``, the 2x
    average-pooled image (rounded to 8-bit values), computed in the batch.

    Generative model and guide (the paper's sec. 3.3)::

        p(x, y, z, u) = p(x | y, z) p(z | y, u) p(y | u) p(u)        q(u, z | x) = q(u | y) q(z | x)

    with ``p(u)`` a RealNVP prior (:class:`~flowvae.FlowDistribution` of an unconditional
    :class:`~flowvae.ConditionalRealNVP`), ``p(y|u)`` and ``p(x|y,z)`` discretized logistic
    mixtures, and ``p(z|y,u)``, ``q(u|y)``, ``q(z|x)`` diagonal Gaussians over tensor latents of
    shape ``latent_shape`` (paper: ``16 x 8 x 8``). All networks are DenseNets with channel
    attention and ELUs. ``p(x|y,z)`` sees the bicubic upsampling of ``y`` and, with
    ``residual=True``, predicts its locations as offsets from it.

    ``model(x)`` samples ``u``, observes ``y = d(x)`` at site ``"y"``, samples ``z`` and
    observes ``x``; ``guide(x)`` samples ``u ~ q(u|y)``, ``z ~ q(z|x)``; both in
    ``pyro.plate("data", B, dim=-1)``. ``model(batch_size=B)`` generates (``y`` and ``x``
    drawn too) and returns ``x``, ``(B, C, H, W)`` 8-bit values as floats. ``q(y|x)`` is a
    point mass on a discrete value (zero
    entropy), so ``Trace_ELBO`` estimates the paper's eq. (6),

    ``ELBO = E log p(x|y,z) + E log p(y|u) - KL(q(z|x) || p(z|y,u)) - KL(q(u|y) || p(u))``

    (``RE_x + RE_y - KL_z - KL_u``, see :meth:`elbo_terms`), a lower bound on
    ``log p(x, d(x)) <= log P(x)``, and :func:`~flowvae.infer.iwae_log_likelihood` on this
    model / guide pair counts ``log p(y|u)``. ``x`` is the *preprocessed* observation, the
    8-bit values as floats (:meth:`preprocess`); bits/dim is ``-ELBO / (D log 2)``.

    The four operations (:meth:`generate`, :meth:`super_resolve`, :meth:`reconstruct`,
    :meth:`generative_reconstruct`) return images in ``[0, 1]``; ``temperature`` multiplies
    the standard deviations of every Gaussian, the flow prior's base and every logistic's scale
    while the mixture component is still sampled from its weights.

    Args:
        shape: image shape ``(C, H, W)``, ``H`` and ``W`` even; ``y`` is ``(C, H/2, W/2)``.
        latent_shape: shape ``(C_z, h, w)`` of both ``u`` and ``z``; ``H / (2 h)`` a power of
            two.
        hidden: channels between dense blocks.
        growth, num_layers: growth rate and layers per dense block.
        num_mixtures: logistic components per pixel of both likelihoods.
        flow_kwargs: :class:`~flowvae.ConditionalRealNVP` arguments of ``p(u)``.
        residual: ``p(x|y,z)`` predicts offsets from the bicubic upsampling of ``y``.
        data_init: on the first batch the guide sees in training mode (``SVI.step``,
            :func:`flowvae.train.fit`), :meth:`initialize` the networks on it (data-dependent
            initialisation, :func:`data_dependent_init`); a buffer ``initialized`` in the
            ``state_dict`` keeps a restored model from being initialised again. Without it
            (PyTorch's default initialisation) ``z`` collapses in short training: ``p(x|y,z)``
            starts almost independent of ``z`` and the KL term wins (``docs/papers/srvae.md``).
            It changes the starting point only: the objective stays the ELBO of eq. (6).

    References:
        Gatopoulos, I., Stol, M. and Tomczak, J. M. Super-resolution variational auto-encoders.
        2020 (arXiv:2006.05218).

        Salimans, T. and Kingma, D. P. Weight normalization: a simple reparameterization to
        accelerate training of deep neural networks. NeurIPS 2016.

    Example:
        >>> import torch
        >>> from pyro.infer import SVI, Trace_ELBO
        >>> from pyro.optim import Adam
        >>> sr = SRVAE((1, 8, 8), latent_shape=(2, 2, 2), hidden=8, growth=4, num_layers=1,
        ...            num_mixtures=2, flow_kwargs=dict(hidden_channels=4, num_blocks=1,
        ...                                            num_scales=1))
        >>> x = sr.preprocess(torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8))
        >>> svi = SVI(sr.model, sr.guide, Adam({"lr": 1e-3}), Trace_ELBO())
        >>> loss = svi.step(x)  # the first step initialises the networks on x
        >>> bool(sr.initialized), sorted(sr.elbo_terms(x))
        (True, ['KL_u', 'KL_z', 'RE_x', 'RE_y'])
        >>> sr.super_resolve(sr.downscale(x)).shape
        torch.Size([4, 1, 8, 8])
        >>> [t.shape for t in sr.generate(3, temperature=0.7, return_y=True)]
        [torch.Size([3, 1, 8, 8]), torch.Size([3, 1, 4, 4])]
    """

    def __init__(
        self,
        shape: Sequence[int],
        latent_shape: Sequence[int] = (16, 8, 8),
        hidden: int = 64,
        growth: int = 32,
        num_layers: int = 3,
        num_mixtures: int = 10,
        flow_kwargs: Optional[dict] = None,
        residual: bool = True,
        data_init: bool = True,
        name: Optional[str] = None,
    ):
        super().__init__(name)
        self.shape = tuple(int(s) for s in shape)
        self.latent_shape = tuple(int(s) for s in latent_shape)
        if len(self.shape) != 3 or self.shape[1] % 2 or self.shape[2] % 2:
            raise ValueError(f"shape must be (C, H, W) with H and W even, got {self.shape}")
        if len(self.latent_shape) != 3:
            raise ValueError(f"latent_shape must be (C_z, h, w), got {self.latent_shape}")
        self.residual = residual
        c, height, width = self.shape
        self.y_shape = (c, height // 2, width // 2)
        cz, h, w = self.latent_shape
        dense = dict(hidden_channels=hidden, growth=growth, num_layers=num_layers)

        self.p_u = FlowPrior(self.latent_shape, **(flow_kwargs or {}))
        self.q_u = DiagonalNormalGuide(self.latent_shape)
        self.q_z = DiagonalNormalGuide(self.latent_shape)
        self.p_z = DiagonalNormalGuide(self.latent_shape)
        self.p_y = LogisticMixtureLikelihood(self.y_shape, num_mixtures)
        self.p_x = LogisticMixtureLikelihood(self.shape, num_mixtures)

        self.u_encoder = DenseEncoder(self.y_shape, (2 * cz, h, w), **dense)
        self.z_encoder = DenseEncoder(self.shape, (2 * cz, h, w), **dense)
        self.y_decoder = DenseDecoder(self.latent_shape,
                                      (self.p_y.out_channels, *self.y_shape[1:]), **dense)
        # p(z|y,u): features of y at the latent resolution, joined with u
        self.y_features = DenseEncoder(self.y_shape, (hidden, h, w), **dense)
        self.z_prior_net = DenseNet(hidden + cz, 2 * cz, **dense)
        # p(x|y,z): features of z at the image resolution, joined with the upsampled y
        self.z_features = DenseDecoder(self.latent_shape, (hidden, height, width), **dense)
        self.x_decoder = DenseNet(hidden + c, self.p_x.out_channels, **dense)
        to_pyro_module_(self)
        # in the state_dict, so that a restored model is not initialised again
        self.register_buffer("initialized", torch.tensor(not data_init))
        self._known_initialized = not data_init  # the host's copy: no device read per step

    # ------------------------------------------------------------------ data
    def preprocess(self, x: Tensor) -> Tensor:
        """``uint8`` images ``(B, C, H, W)`` to the observation: their values as floats of the
        parameters' dtype."""
        if x.dim() != 4 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"expected images of shape (B, {', '.join(map(str, self.shape))}),"
                             f" got {tuple(x.shape)}")
        if x.dtype != torch.uint8:
            raise ValueError(f"expected uint8 images in 0..255, got dtype {x.dtype}")
        return x.to(next(self.parameters()).dtype)

    def downscale(self, x: Tensor) -> Tensor:
        """``y = d(x)``, see :func:`downscale`."""
        return downscale(x)

    @staticmethod
    def to_image(x: Tensor) -> Tensor:
        """8-bit values to ``[0, 1]``."""
        return x / _MAX_VALUE

    def upsample(self, y: Tensor) -> Tensor:
        """Bicubic 2x upsampling of ``y`` on the ``[-1, 1]`` scale (clamped to it)."""
        batch = y.shape[:-3]
        up = F.interpolate(_scaled(y).reshape(-1, *y.shape[-3:]), size=self.shape[1:],
                           mode="bicubic", align_corners=False)
        return up.clamp(-1, 1).reshape(*batch, *self.shape)

    @property
    def networks(self) -> List[nn.Module]:
        """The DenseNets: every network but the flow prior ``p(u)``."""
        return [self.u_encoder, self.z_encoder, self.y_features, self.z_prior_net,
                self.z_features, self.x_decoder, self.y_decoder]

    def initialize(self, x: Tensor) -> None:
        """:func:`data_dependent_init` of :attr:`networks` on a preprocessed batch ``x``
        (a few hundred images); marks the model initialised."""
        data_dependent_init(lambda: self.elbo_terms(x), self.networks)
        self.initialized.fill_(True)
        self._known_initialized = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self._known_initialized = False  # the loaded flag is read again, once
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ the distributions
    def prior_u(self, like: Tensor, temperature: float = 1.0):
        """``p(u)``, batch shape ``()``."""
        d = self.p_u(like)
        d.temperature = temperature
        return d

    def posterior_u(self, y: Tensor):
        """``q(u|y)`` for ``y`` on the 8-bit scale."""
        return self.q_u(self.u_encoder(_scaled(y)).flatten(-3))

    def posterior_z(self, x: Tensor):
        """``q(z|x)`` for ``x`` on the 8-bit scale."""
        return self.q_z(self.z_encoder(_scaled(x)).flatten(-3))

    def likelihood_y(self, u: Tensor, temperature: float = 1.0) -> DiscretizedLogisticMixture:
        """``p(y|u)``."""
        return _temper(self.p_y(self.y_decoder(u), u), temperature)

    def prior_z(self, y: Tensor, u: Tensor):
        """``p(z|y,u)``; ``y``'s batch dims broadcast against ``u``'s (particles)."""
        features = self.y_features(_scaled(y))
        features = features.expand(*u.shape[:-3], *features.shape[-3:])
        return self.p_z(self.z_prior_net(torch.cat([features, u], dim=-3)).flatten(-3))

    def likelihood_x(self, y: Tensor, z: Tensor,
                     temperature: float = 1.0) -> DiscretizedLogisticMixture:
        """``p(x|y,z)``; ``y``'s batch dims broadcast against ``z``'s (particles)."""
        up = self.upsample(y)
        up = up.expand(*z.shape[:-3], *up.shape[-3:])
        d = self.p_x(self.x_decoder(torch.cat([self.z_features(z), up], dim=-3)), z)
        return _temper(d, temperature, up if self.residual else None)

    # ------------------------------------------------------------------ Pyro model / guide
    @pyro_method
    def model(self, x: Optional[Tensor] = None, batch_size: Optional[int] = None) -> Tensor:
        like = next(self.parameters()) if x is None else x
        with pyro.plate(DATA_PLATE, batch_size_of(x, batch_size), dim=-1):
            u = pyro.sample(LATENT_U, self.prior_u(like))
            # the sites' values, not x's: unconditioned (Predictive) they are fresh draws
            y = pyro.sample(LOW_RES, self.likelihood_y(u),
                            obs=None if x is None else self.downscale(x))
            z = pyro.sample(LATENT_Z, self.prior_z(y, u))
            return pyro.sample(OBSERVED, self.likelihood_x(y, z), obs=x)

    @pyro_method
    def guide(self, x: Tensor, batch_size: Optional[int] = None) -> None:
        if self.training and not self._known_initialized:  # data_init: the first batch
            if not self.initialized:
                self.initialize(x)
            self._known_initialized = True
        y = self.downscale(x)
        with pyro.plate(DATA_PLATE, batch_size_of(x, batch_size), dim=-1):
            pyro.sample(LATENT_U, self.posterior_u(y))
            pyro.sample(LATENT_Z, self.posterior_z(x))

    def elbo_terms(self, x: Tensor, analytic_kl_z: bool = False) -> Dict[str, Tensor]:
        """The four terms of eq. (6) per data point, ``(B,)`` each, from one draw
        ``u ~ q(u|y)``, then ``z ~ q(z|x)`` (the guide's order, so with the same RNG state
        these are the draws of ``Trace_ELBO``): ``RE_x = log p(x|y,z)``,
        ``RE_y = log p(y|u)``, ``KL_z = log q(z|x) - log p(z|y,u)`` (``analytic_kl_z``: the
        closed form, as ``TraceMeanField_ELBO``), ``KL_u = log q(u|y) - log p(u)``.
        ``ELBO = RE_x + RE_y - KL_z - KL_u``."""
        y = self.downscale(x)
        q_u = self.posterior_u(y)
        u = q_u.rsample()
        q_z = self.posterior_z(x)
        z = q_z.rsample()
        p_z = self.prior_z(y, u)
        kl_z = kl_divergence(q_z, p_z) if analytic_kl_z else q_z.log_prob(z) - p_z.log_prob(z)
        return {
            "RE_x": self.likelihood_x(y, z).log_prob(x),
            "RE_y": self.likelihood_y(u).log_prob(y),
            "KL_z": kl_z,
            "KL_u": q_u.log_prob(u) - self.prior_u(x).log_prob(u),
        }

    # ------------------------------------------------------------------ the four operations
    def _from_y(self, y: Tensor, u: Tensor, temperature: float, mean: bool) -> Tensor:
        z = _tempered_normal(self.prior_z(y, u), temperature)
        d = self.likelihood_x(y, z, temperature)
        return self.to_image(d.mean if mean else d.sample())

    @torch.no_grad()
    def generate(self, n: int, temperature: float = 1.0,
                 return_y: bool = False) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        """``u ~ p(u)``, ``y ~ p(y|u)``, ``z ~ p(z|y,u)``, ``x ~ p(x|y,z)``: ``n`` images
        ``(n, C, H, W)`` in ``[0, 1]`` (and the first stage ``y``, ``(n, C, H/2, W/2)``, with
        ``return_y``)."""
        like = next(self.parameters())
        u = self.prior_u(like, temperature).sample((n,))
        y = self.likelihood_y(u, temperature).sample()
        x = self._from_y(y, u, temperature, mean=False)
        return (x, self.to_image(y)) if return_y else x

    @torch.no_grad()
    def super_resolve(self, y: Tensor, temperature: float = 1.0, mean: bool = False) -> Tensor:
        """Super-resolution of low-resolution 8-bit images ``y`` ``(B, C, H/2, W/2)`` (values
        ``0..255``): ``u ~ q(u|y)``, ``z ~ p(z|y,u)``, ``x ~ p(x|y,z)``; ``(B, C, H, W)`` in
        ``[0, 1]``. ``mean=True`` returns ``E[x|y,z]`` instead of a sample of ``x``."""
        y = y.to(next(self.parameters()).dtype)
        u = _tempered_normal(self.posterior_u(y), temperature)
        return self._from_y(y, u, temperature, mean)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, temperature: float = 1.0) -> Tensor:
        """``y = d(x)``, ``z ~ q(z|x)``, ``x' ~ p(x|y,z)`` for a preprocessed batch."""
        y = self.downscale(x)
        z = _tempered_normal(self.posterior_z(x), temperature)
        return self.to_image(self.likelihood_x(y, z, temperature).sample())

    @torch.no_grad()
    def generative_reconstruct(self, x: Tensor, temperature: float = 1.0,
                               return_y: bool = False) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        """``y* = d(x)``, ``u ~ q(u|y*)``, ``y ~ p(y|u)``, ``z ~ p(z|y,u)``, ``x' ~ p(x|y,z)``
        for a preprocessed batch (and ``y`` in ``[0, 1]`` with ``return_y``)."""
        u = _tempered_normal(self.posterior_u(self.downscale(x)), temperature)
        y = self.likelihood_y(u, temperature).sample()
        out = self._from_y(y, u, temperature, mean=False)
        return (out, self.to_image(y)) if return_y else out


def _tempered_normal(d, temperature: float) -> Tensor:
    """A draw of a (diagonal, independent) Normal with its scale times ``temperature``."""
    base = d.base_dist if hasattr(d, "base_dist") else d
    return base.loc + temperature * base.scale * torch.randn_like(base.loc)

