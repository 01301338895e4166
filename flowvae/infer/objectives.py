r"""Generalized VAE objectives ``E_q(x,z)[log p(x|z)] - R(q)`` (Zhao et al.), as Pyro ELBOs.

:class:`GeneralizedELBO` computes, per particle of a model/guide trace pair,

.. math::

    \mathcal{L} = \sum_{\text{observed}} \log p(x|z)
        - \beta \sum_{s \in S} \big(\log q(z_s|x) - \log p(z_s)\big)
        - \lambda \sum_{s \in S} N_s \, \mathrm{MMD}^2\big(q(z_s), p(z_s)\big)
        + \sum_{\text{other latents}} \big(\log p - \log q\big)

with ``S`` the regularised latent sites (``latent_site``, default ``"z"``) and the loss
``-L``. The named kinds fix ``beta`` and ``lambda``:

=================  ============================  ==========================================
kind               ``R(q)``                      weights
=================  ============================  ==========================================
``elbo``           ``KL(q(z|x) || p(z))``        ``beta = 1``, ``lambda = 0``
``beta``           ``beta KL``                   ``beta`` (default 1), ``lambda = 0``
``unregularized``  ``0``                         ``beta = 0``, ``lambda = 0``
``mmd`` (InfoVAE)  ``lambda MMD^2 + beta KL``    ``lambda`` (default 1), ``beta`` (default 0)
=================  ============================  ==========================================

``KL`` is the Monte-Carlo estimate ``log q(z|x) - log p(z)`` at the sampled ``z`` (as in
:class:`pyro.infer.Trace_ELBO`), or with ``analytic_kl=True`` the closed form
``kl_divergence(q, p)`` where torch registers one (as in :class:`pyro.infer.TraceMeanField_ELBO`;
sites without one keep the Monte-Carlo estimate). The objective only multiplies site terms, so it
works for any model/guide pair: the latent site is found by name in the traces. Site scales
(``pyro.plate`` subsampling, ``poutine.scale``, the :class:`~flowvae.models.VAE`'s own ``beta``)
multiply each site's terms as usual, on top of this objective's ``beta``.

**MMD (InfoVAE).** The regulariser compares the *aggregate* posterior with the prior: the
``N`` samples ``z_i ~ q(z|x_i)`` of a particle, taken across the data plate, against ``N`` fresh
draws of the model's distribution at the site (the prior, broadcast over the plate; a learnable
prior with ``rsample`` receives gradients through its draws). Each particle's squared MMD
(:func:`mmd`: Gaussian kernel ``exp(-||a - b||^2 / h)`` with ``h = 2 * latent_dim`` unless
``bandwidth`` is given; the biased estimator unless ``unbiased=True``) is multiplied by ``N_s``,
the number of data points the site stands for (the sum of its scale over the plate), so that,
like the reconstruction, it is a sum over data points: per data point the objective is
``E_q log p(x|z) - lambda MMD^2 - beta KL``. MMD is a batch statistic: its value depends on the
batch size (the biased estimator's bias is ``O(1/N)``).

**Gradients.** Reparameterised guide sites are differentiated through their samples: with
``beta = 0`` the latent still receives gradients from the reconstruction through ``z``. For
``elbo`` / ``beta`` / ``unregularized``, non-reparameterised guide sites get the score-function
term of Pyro's ``Trace_ELBO`` with the weighted costs as rewards; ``mmd`` and ``analytic_kl``
need reparameterised guide sites.

References:
    Zhao, S., Song, J. and Ermon, S. Towards deeper understanding of variational autoencoding
    models. 2017.

    Zhao, S., Song, J. and Ermon, S. InfoVAE: information maximizing variational autoencoders.
    2017.

    Gretton, A., Borgwardt, K. M., Rasch, M. J., Schölkopf, B. and Smola, A. A kernel
    two-sample test. JMLR 2012.
"""

from __future__ import annotations

import functools
from typing import Dict, Optional, Sequence, Set, Tuple, Union

import torch
from pyro.distributions import is_validation_enabled
from pyro.distributions.util import is_identically_zero, scale_and_mask
from pyro.infer import Trace_ELBO
from pyro.infer.util import MultiFrameTensor, get_plate_stacks, torch_item
from pyro.poutine.util import site_is_subsample
from pyro.util import warn_if_nan
from torch import Tensor
from torch.distributions import Independent, kl_divergence

#: the name :class:`pyro.infer.ELBO` gives its plate of vectorized particles
PARTICLE_PLATE = "num_particles_vectorized"

KINDS = ("elbo", "beta", "unregularized", "mmd")
FREE_BITS_GROUPS = ("site", "dimension")
#: (beta, mmd_weight) defaults per kind; ``elbo`` and ``unregularized`` admit no other values
_DEFAULTS = {"elbo": (1.0, 0.0), "beta": (1.0, 0.0), "unregularized": (0.0, 0.0),
             "mmd": (0.0, 1.0)}


def _rbf(a: Tensor, b: Tensor, bandwidth: float) -> Tensor:
    # squared distances by differences, not |a|^2 + |b|^2 - 2ab: exact zeros on the diagonal
    sq = (a.unsqueeze(-2) - b.unsqueeze(-3)).pow(2).sum(-1)
    return torch.exp(-sq / bandwidth)


def mmd(x: Tensor, y: Tensor, bandwidth: Optional[float] = None,
        unbiased: bool = False) -> Tensor:
    r"""Squared maximum mean discrepancy between the samples ``x`` and ``y`` with a Gaussian
    kernel ``k(a, b) = exp(-||a - b||^2 / bandwidth)``.

    The default ``bandwidth = 2 D`` (``D`` the sample dimension) is a Gaussian kernel of variance
    ``sigma^2 = D``, i.e. ``exp(-||a - b||^2 / (2 D))``: it matches the kernel's length scale to
    the typical distance between two draws of ``N(0, I_D)`` (``E||a - b||^2 = 2 D``), the prior
    of most VAEs. (InfoVAE's released code divides the *mean* squared difference by ``D``, i.e.
    ``bandwidth = D^2``; pass that to reproduce it.)

    Estimators, with ``K_xx``, ``K_yy``, ``K_xy`` the kernel matrices:

    * biased (default, as InfoVAE): ``mean(K_xx) + mean(K_yy) - 2 mean(K_xy)``, the squared MMD
      between the two empirical distributions; always ``>= 0``, exactly ``0`` when ``x`` and
      ``y`` hold the same points; its bias is ``O(1/N)``.
    * ``unbiased=True`` (Gretton et al.'s U-statistic): the diagonals of ``K_xx`` and ``K_yy``
      are left out of their means; unbiased, but can be negative. Needs ``N, M >= 2``.

    Args:
        x: samples ``(*batch, N, D)``.
        y: samples ``(*batch, M, D)`` (``*batch`` broadcasts).
        bandwidth: ``h`` in the kernel; ``None``: ``2 D``.
        unbiased: use the unbiased estimator.

    Returns:
        ``(*batch)`` squared MMD estimates.

    Example:
        >>> import torch
        >>> x = torch.randn(100, 2)
        >>> float(mmd(x, x))
        0.0
        >>> bool(mmd(x, x + 3) > mmd(x, torch.randn(100, 2)))
        True
    """
    if x.dim() < 2 or y.dim() < 2 or x.shape[-1] != y.shape[-1]:
        raise ValueError(f"expected samples (*batch, N, D) and (*batch, M, D), got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    h = 2.0 * x.shape[-1] if bandwidth is None else bandwidth
    if h <= 0:
        raise ValueError(f"bandwidth must be > 0, got {h}")
    kxx, kyy, kxy = _rbf(x, x, h), _rbf(y, y, h), _rbf(x, y, h)
    if not unbiased:
        return kxx.mean((-2, -1)) + kyy.mean((-2, -1)) - 2 * kxy.mean((-2, -1))
    n, m = x.shape[-2], y.shape[-2]
    if n < 2 or m < 2:
        raise ValueError(f"the unbiased estimator needs at least 2 samples each, got {n}, {m}")
    xx = (kxx.sum((-2, -1)) - kxx.diagonal(dim1=-2, dim2=-1).sum(-1)) / (n * (n - 1))
    yy = (kyy.sum((-2, -1)) - kyy.diagonal(dim1=-2, dim2=-1).sum(-1)) / (m * (m - 1))
    return xx + yy - 2 * kxy.mean((-2, -1))


def _factors(d):
    """The elementwise distribution under ``to_event`` wrappers."""
    while isinstance(d, Independent):
        d = d.base_dist
    return d


def _per_particle(value: Tensor, event_dim: int, stack) -> Tensor:
    """A site's value ``batch_shape + event_shape`` as ``(P, N, D)``: vectorized particles first,
    every other batch dim (the data plate) flattened into the samples, the event flattened."""
    batch_shape = value.shape[: value.dim() - event_dim]
    flat = value.reshape(*batch_shape, -1)
    dims = [f.dim for f in stack if f.name == PARTICLE_PLATE]
    if dims and len(batch_shape) + dims[0] >= 0:
        flat = flat.movedim(len(batch_shape) + dims[0], 0)
        return flat.reshape(flat.shape[0], -1, flat.shape[-1])
    return flat.reshape(1, -1, flat.shape[-1])


class GeneralizedELBO(Trace_ELBO):
    r"""Zhao et al.'s ``E_q[log p(x|z)] - R(q)`` with ``R`` a (beta-weighted) KL, zero, or an
    MMD between the aggregate posterior and the prior (module docstring: the formula, the
    weights of each kind, the MMD convention), with the interface of Pyro's ELBOs:
    :meth:`loss`, :meth:`loss_and_grads` (for :class:`pyro.infer.SVI`) and
    :meth:`differentiable_loss` (a surrogate whose value is the loss and whose gradients are
    unbiased; for a torch optimiser).

    Args:
        kind: ``"elbo"``, ``"beta"``, ``"unregularized"`` or ``"mmd"``.
        beta: weight of ``KL(q(z|x) || p(z))`` (``kind="beta"``: default 1; ``kind="mmd"``:
            default 0, InfoVAE's ``1 - alpha``); fixed to 1 / 0 for ``elbo`` / ``unregularized``.
        mmd_weight: ``lambda``, the weight of the per-data-point squared MMD (``kind="mmd"``
            only; default 1). The reconstruction is a sum over pixels, so useful values grow
            with the data dimension.
        latent_site: name (or names) of the regularised latent sites; ``None``: every latent
            site of the guide. Other latent sites keep their ELBO terms.
        bandwidth: the MMD kernel's ``h`` (:func:`mmd`); ``None``: twice the latent dimension.
        unbiased: the unbiased MMD estimator instead of the biased one.
        analytic_kl: closed-form KL where available (mean-field guide assumed, as in
            :class:`pyro.infer.TraceMeanField_ELBO`).
        free_bits: ``lambda`` of free bits (Kingma et al. 2016), in nats per data point and
            latent group: each group's KL, summed over the batch, enters as
            ``max(lambda N, KL)``, so a group below ``lambda`` nats per data point gets no
            pressure towards the prior. ``0`` (default): off. Reparameterised guide sites only.
        free_bits_group: ``"site"`` (each regularised latent site is one group) or
            ``"dimension"`` (each coordinate of the site's event is one group; needs a
            factorised ``q`` and ``p`` with a closed-form KL, such as diagonal Normals).
        warmup_steps: KL warm-up (Bowman et al. 2016): the KL weight rises linearly from 0 to
            ``beta`` over this many optimisation steps, counted in :attr:`step` (advanced by
            every :meth:`loss_and_grads` and :meth:`differentiable_loss` made with gradients
            enabled; :func:`flowvae.train.fit` sets it from its own step counter, so a resumed
            run continues the schedule). ``0`` (default): off.
        num_particles, max_plate_nesting, vectorize_particles, \*\*elbo_kwargs: as for
            :class:`pyro.infer.Trace_ELBO`.

    Example:
        >>> import torch
        >>> from pyro.infer import SVI
        >>> from pyro.optim import Adam
        >>> from flowvae.models import VAE
        >>> vae = VAE((1, 8, 8), latent_dim=2, hidden=8)
        >>> x = vae.preprocess(torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8))
        >>> objective = GeneralizedELBO("mmd", mmd_weight=10.0, max_plate_nesting=1)
        >>> svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), objective)
        >>> loss = svi.step(x)
        >>> objective
        GeneralizedELBO(kind='mmd', beta=0.0, mmd_weight=10.0, latent_site='z')
    """

    def __init__(
        self,
        kind: str = "elbo",
        beta: Optional[float] = None,
        mmd_weight: Optional[float] = None,
        latent_site: Union[str, Sequence[str], None] = "z",
        bandwidth: Optional[float] = None,
        unbiased: bool = False,
        analytic_kl: bool = False,
        free_bits: float = 0.0,
        free_bits_group: str = "site",
        warmup_steps: int = 0,
        num_particles: int = 1,
        max_plate_nesting: float = float("inf"),
        vectorize_particles: bool = False,
        **elbo_kwargs,
    ):
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting,
                         vectorize_particles=vectorize_particles, **elbo_kwargs)
        if kind not in _DEFAULTS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        default_beta, default_mmd = _DEFAULTS[kind]
        if kind in ("elbo", "unregularized") and beta is not None and beta != default_beta:
            raise ValueError(f"kind={kind!r} fixes beta = {default_beta}; use kind='beta' for "
                             f"beta = {beta}")
        if kind != "mmd" and mmd_weight is not None and mmd_weight != 0:
            raise ValueError(f"mmd_weight is for kind='mmd', got kind={kind!r}")
        self.kind = kind
        self.beta = float(default_beta if beta is None else beta)
        self.mmd_weight = float(default_mmd if mmd_weight is None else mmd_weight)
        if self.beta < 0 or self.mmd_weight < 0:
            raise ValueError(f"weights must be >= 0, got beta={self.beta}, "
                             f"mmd_weight={self.mmd_weight}")
        if kind == "unregularized" and (free_bits or warmup_steps):
            raise ValueError("free_bits and warmup_steps weight a KL term: kind='unregularized' "
                             "has none")
        if not free_bits >= 0 or warmup_steps < 0:
            raise ValueError(f"free_bits and warmup_steps must be >= 0, got free_bits="
                             f"{free_bits}, warmup_steps={warmup_steps}")
        if free_bits_group not in FREE_BITS_GROUPS:
            raise ValueError(f"free_bits_group must be one of {FREE_BITS_GROUPS}, got "
                             f"{free_bits_group!r}")
        self.free_bits = float(free_bits)
        self.free_bits_group = free_bits_group
        self.warmup_steps = int(warmup_steps)
        self.step = 0
        self.latent_site = latent_site
        self.bandwidth = bandwidth
        self.unbiased = unbiased
        self.analytic_kl = analytic_kl

    def __repr__(self) -> str:
        extra = "".join(f", {k}={getattr(self, k)!r}" for k in ("free_bits", "warmup_steps")
                        if getattr(self, k))
        return (f"{type(self).__name__}(kind={self.kind!r}, beta={self.beta}, "
                f"mmd_weight={self.mmd_weight}, latent_site={self.latent_site!r}{extra})")

    @property
    def kl_weight(self) -> float:
        """The KL weight of the current :attr:`step`: ``beta``, ramped up during warm-up."""
        if self.warmup_steps and self.step < self.warmup_steps:
            return self.beta * self.step / self.warmup_steps
        return self.beta

    # ------------------------------------------------------------------ site bookkeeping
    def _latents(self, model_trace, guide_trace) -> Set[str]:
        guide_latents = {name for name, site in guide_trace.nodes.items()
                         if site["type"] == "sample" and not site_is_subsample(site)}
        if self.latent_site is None:
            return guide_latents
        names = {self.latent_site} if isinstance(self.latent_site, str) else set(self.latent_site)
        for name in names:
            if name not in guide_latents or name not in model_trace.nodes:
                raise KeyError(f"latent site {name!r} is not a sample site of both the model and "
                               f"the guide (guide sites: {sorted(guide_latents)})")
        return names

    def _weight(self, name: str, site, latents: Set[str]) -> float:
        if site["is_observed"] or name not in latents:
            return 1.0
        return self.kl_weight

    def _analytic_kls(self, model_trace, guide_trace, latents: Set[str]) -> Dict[str, Tensor]:
        kls: Dict[str, Tensor] = {}
        if not self.analytic_kl or self.beta == 0 or self.free_bits > 0:
            return kls
        for name in latents:
            guide_site, model_site = guide_trace.nodes[name], model_trace.nodes[name]
            try:
                kl = kl_divergence(guide_site["fn"], model_site["fn"])
            except NotImplementedError:
                continue
            kl = scale_and_mask(kl, scale=guide_site["scale"], mask=guide_site["mask"])
            kls[name] = kl.sum() if torch.is_tensor(kl) else torch.as_tensor(
                kl * torch.Size(guide_site["fn"].batch_shape).numel())
        return kls

    def _log_r(self, model_trace, guide_trace, latents: Set[str]) -> MultiFrameTensor:
        """The weighted costs that score-function terms use as rewards (cf. ``Trace_ELBO``)."""
        log_r = MultiFrameTensor()
        stacks = get_plate_stacks(model_trace)
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample":
                continue
            term = site["log_prob"]
            if not site["is_observed"]:
                term = term - guide_trace.nodes[name]["log_prob"]
            log_r.add((stacks[name], (self._weight(name, site, latents) * term).detach()))
        return log_r

    def _mmd_term(self, model_site, guide_site) -> Tensor:
        """``sum_p N_p MMD^2_p`` for one site over the particles ``p`` of this trace."""
        if model_site["mask"] is not None and model_site["mask"] is not True:
            raise NotImplementedError(f"masked latent site {guide_site['name']!r}: the MMD of a "
                                      f"masked aggregate posterior is not defined here")
        value = guide_site["value"]
        event_dim = guide_site["fn"].event_dim
        batch_shape = value.shape[: value.dim() - event_dim]
        prior = model_site["fn"]
        if prior.batch_shape != batch_shape:  # e.g. a plate entered outside poutine.replay
            try:
                prior = prior.expand(batch_shape)
            except (RuntimeError, ValueError, NotImplementedError) as err:
                raise ValueError(
                    f"site {guide_site['name']!r}: the model's distribution has batch shape "
                    f"{tuple(prior.batch_shape)}, which does not broadcast to the guide "
                    f"sample's {tuple(batch_shape)}") from err
        draw = prior.rsample() if prior.has_rsample else prior.sample()
        stack = guide_site["cond_indep_stack"]
        z = _per_particle(value, event_dim, stack)
        z_prior = _per_particle(draw, event_dim, stack)
        counts = value.new_ones(batch_shape) * model_site["scale"]
        counts = _per_particle(counts, 0, stack).sum((-2, -1))
        return (counts * mmd(z, z_prior, self.bandwidth, self.unbiased)).sum()

    def _free_bits_term(self, model_site, guide_site) -> Tensor:
        """``sum_g max(lambda N, KL_g)``: each group's KL summed over the batch (and any
        vectorized particles), ``N`` the data points it covers (the site's scale summed)."""
        q, p, z = guide_site["fn"], model_site["fn"], guide_site["value"]
        batch_shape = z.shape[: z.dim() - q.event_dim]
        scale = z.new_ones(batch_shape) * model_site["scale"]
        if self.free_bits_group == "dimension":
            try:
                kl = kl_divergence(_factors(q), _factors(p))
            except NotImplementedError as err:
                raise NotImplementedError(
                    f"free_bits_group='dimension' needs a closed-form per-coordinate KL at site "
                    f"{guide_site['name']!r} ({type(q).__name__} vs {type(p).__name__})") from err
            kl = kl.expand(z.shape) * scale.reshape(*batch_shape, *(1,) * q.event_dim)
            kl = kl.reshape(-1, *z.shape[len(batch_shape):]).sum(0)
        else:  # the traces' own log-densities (a planar guide can score only its own draw)
            kl = guide_site["unscaled_log_prob"] - model_site["unscaled_log_prob"]
            if self.analytic_kl:
                try:
                    kl = kl_divergence(q, p).expand(batch_shape)
                except NotImplementedError:
                    pass
            kl = (kl * scale).sum()
        count = model_site["scale"]  # data points covered: known on the host unless a tensor
        count = (scale.sum() if torch.is_tensor(count)
                 else float(count) * batch_shape.numel())
        return torch.clamp(kl, min=self.free_bits * count).sum()

    # ------------------------------------------------------------------ the estimator
    def _differentiable_loss_particle(self, model_trace, guide_trace) -> Tuple[Tensor, Tensor]:
        """``(-L, -surrogate)`` of one particle, both tensors: nothing is read on the host."""
        latents = self._latents(model_trace, guide_trace)
        kls = self._analytic_kls(model_trace, guide_trace, latents)
        free = latents if self.free_bits > 0 and self.kl_weight != 0 else set()
        reparam_only = self.mmd_weight > 0 or self.analytic_kl or bool(free)
        elbo: Union[float, Tensor] = 0.0
        surrogate: Union[float, Tensor] = 0.0
        log_r = None

        for name, site in model_trace.nodes.items():
            if site["type"] != "sample" or name in kls or name in free:
                continue
            w = self._weight(name, site, latents)
            if w != 0:
                elbo = elbo + w * site["log_prob_sum"].detach()
                surrogate = surrogate + w * site["log_prob_sum"]

        for name, site in guide_trace.nodes.items():
            if site["type"] != "sample":
                continue
            w = self._weight(name, site, latents)
            _, score_function_term, entropy_term = site["score_parts"]
            if name in free:
                pass
            elif name in kls:
                elbo = elbo - w * kls[name].detach()
                surrogate = surrogate - w * kls[name]
            elif w != 0:
                elbo = elbo - w * site["log_prob_sum"].detach()
                if not is_identically_zero(entropy_term):
                    surrogate = surrogate - w * entropy_term.sum()
            if not is_identically_zero(score_function_term):
                if reparam_only:
                    raise NotImplementedError(
                        f"guide site {name!r} is not reparameterized: the MMD regulariser and "
                        f"analytic_kl need reparameterized guide sites")
                if log_r is None:
                    log_r = self._log_r(model_trace, guide_trace, latents)
                reward = log_r.sum_to(site["cond_indep_stack"])
                surrogate = surrogate + (reward * score_function_term).sum()

        for name in sorted(free):
            term = self.kl_weight * self._free_bits_term(model_trace.nodes[name],
                                                         guide_trace.nodes[name])
            elbo = elbo - term.detach()
            surrogate = surrogate - term

        if self.mmd_weight > 0:
            for name in sorted(latents):
                term = self.mmd_weight * self._mmd_term(model_trace.nodes[name],
                                                        guide_trace.nodes[name])
                elbo = elbo - term.detach()
                surrogate = surrogate - term

        return -torch.as_tensor(elbo), -surrogate  # type: ignore[operator]

    def differentiable_loss(self, model, guide, *args, **kwargs) -> Tensor:
        """The loss ``-L`` averaged over ``num_particles``: a 0-d tensor with the surrogate's
        gradient (score-function terms included). The one loop over particles of this class
        (:meth:`loss` and :meth:`loss_and_grads` call it): it reads nothing on the host, so a
        training step on a GPU queues its kernels without waiting (Pyro's NaN warning runs
        only with ``pyro.enable_validation``). Advances :attr:`step` when gradients are on."""
        loss: Union[float, Tensor] = 0.0
        surrogate: Union[float, Tensor] = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            particle, particle_surrogate = self._differentiable_loss_particle(model_trace,
                                                                              guide_trace)
            loss = loss + particle / self.num_particles
            surrogate = surrogate + particle_surrogate / self.num_particles
        if is_validation_enabled():
            warn_if_nan(surrogate, "loss")
        if torch.is_grad_enabled():
            self.step += 1
        if not torch.is_tensor(surrogate):  # no term at all (e.g. every weight zero)
            return torch.as_tensor(loss)
        return loss.detach() + (surrogate - surrogate.detach())  # type: ignore[union-attr]

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """:meth:`differentiable_loss`, back-propagated (for :class:`pyro.infer.SVI`); returns
        its value as a float."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        return torch_item(loss)

    def loss(self, model, guide, *args, **kwargs) -> float:
        """An estimate of the loss ``-L`` (a float), averaged over ``num_particles``; no
        gradients and no :attr:`step`."""
        with torch.no_grad():
            loss = torch_item(self.differentiable_loss(model, guide, *args, **kwargs))
        warn_if_nan(loss, "loss")
        return loss


#: constructors by name: ``OBJECTIVES["mmd"](mmd_weight=100.0)``
OBJECTIVES = {kind: functools.partial(GeneralizedELBO, kind) for kind in KINDS}
