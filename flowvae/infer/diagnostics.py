r"""Does the latent carry information? Rate, distortion, active units and mutual information.

A VAE's negative ELBO splits into a **distortion** ``D = -E_q log p(x|z)`` and a **rate**
``R = KL(q(z|x) || p(z))`` (Alemi et al. 2018, "Fixing a broken ELBO"), both in nats per image.
A latent that the decoder ignores has ``R = 0``: the posterior is the prior (posterior
collapse). Zhao et al. ("Towards deeper understanding of variational autoencoding models",
2017) explain why a decoder as strong as a flow or a PixelCNN prefers that solution.

:func:`latent_diagnostics` measures one batch from the Pyro traces of any model/guide pair, so
it works for every flowvae model (and any Pyro model with a guide): one rate per latent sample
site of the guide, the distortion from the observed sites, the ELBO with weight 1 on every term
(site scales such as a beta-VAE's or a KL warm-up's are ignored: the numbers are the true
bound, and ``pyro.factor`` terms such as InfoVAE's MMD penalty are left out), the posterior
means for active units, and the mutual information estimate of
:func:`~flowvae.infer.mutual_information`. :func:`summarize_latents` turns several batches
into per-image means and counts active units (Burda et al. 2016).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch import Tensor
from torch.distributions import kl_divergence

#: Burda et al.'s threshold on ``Cov_x(E_q[z_i])`` for an active unit
ACTIVE_UNIT_THRESHOLD = 0.01


@dataclass
class LatentDiagnostics:
    """One batch's diagnostics, per image (each a ``(B,)`` tensor in nats unless stated).

    Attributes:
        rate: ``{site: KL(q(z_s|x) || p(z_s))}`` for every latent site of the guide (closed
            form where torch has one, else the one-sample estimate ``log q - log p``).
        distortion: ``-log p(x|z)`` summed over the observed sites at ``z ~ q(z|x)``.
        elbo: ``-(distortion + sum of rates)``: the ELBO with every term at weight 1.
        means: ``{site: E_q[z_s]}``, ``(B, dims)``, for active units (the distribution's mean
            where it has one, else the average of ``mean_samples`` draws).
        mutual_info: ``{site: I(x; z_s)}`` estimates over the batch (scalars), for sites whose
            posterior scores every ``z_i`` under every ``x_j``; absent otherwise.
    """

    rate: Dict[str, Tensor]
    distortion: Tensor
    elbo: Tensor
    means: Dict[str, Tensor] = field(default_factory=dict)
    mutual_info: Dict[str, Tensor] = field(default_factory=dict)


def _is_factor(site) -> bool:
    """A ``pyro.factor`` site: a term of a training objective (e.g. InfoVAE's MMD penalty),
    not a density of the model, so not part of the bound."""
    return bool(site["infer"].get("is_auxiliary"))


def _per_image(value: Tensor, batch: int) -> Tensor:
    """A site's log-density summed to one value per image: ``(B,)``."""
    if value.dim() == 0:  # a site outside the data plate: its share per image
        return value.expand(batch) / batch
    if value.shape[-1] != batch:
        raise ValueError(f"a site's log-density has shape {tuple(value.shape)}: expected the "
                         f"data plate of {batch} images at dim -1")
    return value.reshape(-1, batch).sum(0)  # e.g. (T, B) for a sequence of latents


def _posterior_mean(fn, value: Tensor, mean_samples: int) -> Tensor:
    try:
        mean = fn.mean
        if mean.shape == value.shape and bool(torch.isfinite(mean).all()):
            return mean
    except (NotImplementedError, AttributeError):
        pass
    draws = [value] + [fn.sample() for _ in range(mean_samples - 1)]
    return torch.stack(draws).mean(0)


def _mutual_information(fn, value: Tensor) -> Optional[Tensor]:
    """``mean_i [log q(z_i|x_i) - log mean_j q(z_i|x_j)]`` (see :func:`mutual_information`), or
    ``None`` when ``q``'s batch does not broadcast against every ``z_i``."""
    batch = value.shape[0]
    if tuple(fn.batch_shape) != (batch,):
        return None
    try:
        cross = fn.log_prob(value.unsqueeze(1))  # [i, j] = log q(z_i | x_j)
    except Exception:  # e.g. a flow posterior that scores only its own draws
        return None
    if cross.shape != (batch, batch):
        return None
    return (cross.diagonal() - torch.logsumexp(cross, dim=1) + math.log(batch)).mean()


@torch.no_grad()
def latent_diagnostics(model: Callable, guide: Callable, x: Tensor, *args,
                       mean_samples: int = 16, analytic_kl: bool = True,
                       **kwargs) -> LatentDiagnostics:
    """Rate per latent site, distortion and ELBO of one batch, at one draw ``z ~ q(z|x)``.

    Args:
        model, guide: a Pyro model and guide taking ``x`` (and ``*args, **kwargs``) whose
            per-image sites live in a plate over the batch (flowvae's ``"data"`` plate).
        x: the batch, ``(B, ...)`` (flowvae models: a preprocessed observation).
        mean_samples: draws averaged for ``E_q[z]`` when ``q`` has no closed-form mean.
        analytic_kl: the closed-form KL where torch registers one (lower variance), else the
            one-sample estimate.

    Returns:
        :class:`LatentDiagnostics`; rates, distortion and ELBO in nats per image, ``(B,)``.

    Example:
        >>> import torch
        >>> from flowvae.models import VAE
        >>> vae = VAE((1, 8, 8), latent_dim=4, hidden=16)
        >>> x = vae.preprocess(torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8))
        >>> d = latent_diagnostics(vae.model, vae.guide, x)
        >>> sorted(d.rate), d.distortion.shape, d.means["z"].shape
        (['z'], torch.Size([5]), torch.Size([5, 4]))
    """
    batch = x.shape[0]
    guide_trace = poutine.trace(guide).get_trace(x, *args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
        x, *args, **kwargs)
    # the traces' own log-densities, without site scales (a planar guide, whose flow has no
    # inverse, can score only the draw it made, and only once)
    guide_trace.compute_log_prob()
    model_trace.compute_log_prob()
    distortion = x.new_zeros(batch)
    rate: Dict[str, Tensor] = {}
    means: Dict[str, Tensor] = {}
    mutual_info: Dict[str, Tensor] = {}
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site) or _is_factor(site):
            continue
        if site["is_observed"]:  # log-densities without the site's scale: the true bound
            distortion = distortion - _per_image(site["unscaled_log_prob"], batch)
            continue
        if name not in guide_trace.nodes:  # sampled from the prior inside the model
            continue
        q, p, z = guide_trace.nodes[name]["fn"], site["fn"], site["value"]
        kl = None
        if analytic_kl:
            try:
                kl = kl_divergence(q, p)
            except NotImplementedError:
                kl = None
        if kl is None:
            kl = guide_trace.nodes[name]["unscaled_log_prob"] - site["unscaled_log_prob"]
        rate[name] = _per_image(kl, batch)
        if z.shape[:1] == (batch,):
            means[name] = _posterior_mean(q, z, mean_samples).reshape(batch, -1)
            mi = _mutual_information(q, z)
            if mi is not None:
                mutual_info[name] = mi
    elbo = -(distortion + sum(rate.values(), x.new_zeros(batch)))
    return LatentDiagnostics(rate, distortion, elbo, means, mutual_info)


def active_units(means: Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Number of latent dimensions ``i`` with ``Cov_x(E_q[z_i]) > threshold`` (Burda, Grosse
    and Salakhutdinov 2016, "Importance weighted autoencoders"), from posterior means
    ``(N, dims)`` of ``N`` images."""
    if means.dim() != 2 or means.shape[0] < 2:
        raise ValueError(f"expected posterior means (N >= 2, dims), got {tuple(means.shape)}")
    return int((means.var(0) > threshold).sum())


def summarize_latents(batches: List[LatentDiagnostics]) -> Dict[str, float]:
    """Per-image means over several batches of :func:`latent_diagnostics`: ``nelbo``,
    ``distortion``, ``rate`` (all sites), ``rate_<site>``, ``active_units_<site>`` (over all
    the batches' images) and ``mutual_info_<site>`` (the batches' mean); nats per image."""
    if not batches:
        raise ValueError("no batches to summarize")
    images = sum(len(b.elbo) for b in batches)

    def total(values: List[Tensor]) -> float:
        return float(sum(v.double().sum() for v in values)) / images

    summary = {"nelbo": -total([b.elbo for b in batches]),
               "distortion": total([b.distortion for b in batches]),
               "rate": total([r for b in batches for r in b.rate.values()])}
    for site in batches[0].rate:
        summary[f"rate_{site}"] = total([b.rate[site] for b in batches])
    for site in batches[0].means:
        summary[f"active_units_{site}"] = active_units(torch.cat([b.means[site] for b in batches]))
    for site in batches[0].mutual_info:
        summary[f"mutual_info_{site}"] = float(torch.stack(
            [b.mutual_info[site] for b in batches]).mean())
    return summary


def label_agreement(reconstructions: Tensor, labels: Tensor, train_images: Tensor,
                    train_labels: Tensor, originals: Optional[Tensor] = None) -> Dict[str, float]:
    """Do reconstructions keep what the latent should carry? A logistic-regression classifier
    (scikit-learn, on pixels / 255) is trained on ``train_images`` and labels the
    reconstructions: a collapsed latent gives chance (about 10% for digits).

    Args:
        reconstructions: images in ``[0, 1]``, ``(N, C, H, W)``.
        labels: the originals' labels, ``(N,)``.
        train_images, train_labels: the classifier's training set, ``uint8`` ``(M, C, H, W)``
            and ``(M,)``.
        originals: the ``uint8`` originals ``(N, C, H, W)``, to report the classifier's own
            accuracy on them (the ceiling of the agreement).

    Returns:
        ``labels_kept`` (share of reconstructions given their original's label) and, with
        ``originals``, ``classifier_accuracy``.
    """
    from sklearn.linear_model import LogisticRegression

    def flat(images: Tensor):
        return images.detach().reshape(len(images), -1).double().cpu().numpy()

    classifier = LogisticRegression(max_iter=2000).fit(flat(train_images) / 255,
                                                       train_labels.cpu().numpy())
    truth = labels.cpu().numpy()
    result = {"labels_kept": float((classifier.predict(flat(reconstructions)) == truth).mean())}
    if originals is not None:
        result["classifier_accuracy"] = float(classifier.score(flat(originals) / 255, truth))
    return result
