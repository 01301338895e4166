"""Estimators: importance-weighted log-likelihood, per-point ELBO, bits/dim, mutual information."""

from __future__ import annotations

import math
import sys
from typing import Callable, Dict, Optional, Sequence, Union

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch import Tensor
from tqdm.auto import tqdm

from flowvae.infer.diagnostics import latent_diagnostics, summarize_latents
from flowvae.transforms.preprocess import LogitTransform

PARTICLE_PLATE = "_particles"


def log_importance_weights(
    model: Callable, guide: Callable, x: Tensor, num_samples: int, max_plate_nesting: int = 1
) -> Tensor:
    """``log p(x, z_k) - log q(z_k|x)`` for ``num_samples`` draws per data point: ``(K, B)``.

    ``model`` and ``guide`` put their per-datapoint sites in a plate of size ``B`` at dim -1
    (nested plates up to ``max_plate_nesting``); the ``K`` samples are drawn vectorized in an
    outer plate. Site scales (e.g. a beta weight) and ``pyro.factor`` sites (a training
    objective's extra terms, such as InfoVAE's MMD penalty) are ignored: these are the true
    densities.
    Observed sites of the model (including deterministic ones, like srVAE's ``y``) count in
    ``log p``.
    """
    batch = x.shape[0]
    with pyro.plate(PARTICLE_PLATE, num_samples, dim=-(max_plate_nesting + 1)):
        guide_trace = poutine.trace(guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    log_w = x.new_zeros(num_samples, batch)
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        for site in trace.nodes.values():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            if site["infer"].get("is_auxiliary"):  # pyro.factor: an objective's term (an MMD)
                continue
            log_prob = site["fn"].log_prob(site["value"])
            log_w = log_w + sign * log_prob.reshape(num_samples, -1).expand(num_samples, batch)
    return log_w


@torch.no_grad()
def iwae_log_likelihood(
    model: Callable, guide: Callable, x: Tensor, num_samples: int = 1000,
    chunk_size: int = 100, max_plate_nesting: int = 1,
) -> Tensor:
    """Importance-weighted estimate of ``log p(x)`` per data point, shape ``(B,)``:
    ``log (1/K) sum_k p(x, z_k) / q(z_k|x)``, ``z_k ~ q(z|x)``; ``K = num_samples`` drawn in
    chunks of ``chunk_size`` so that ``K = 5000`` fits in memory. ``K = 1`` is the ELBO in
    expectation; the estimate increases towards ``log p(x)`` with ``K`` (Burda et al., 2016).
    """
    if num_samples < 1 or chunk_size < 1:
        raise ValueError(f"num_samples and chunk_size must be >= 1, got {num_samples}, "
                         f"{chunk_size}")
    total: Optional[Tensor] = None
    done = 0
    while done < num_samples:
        k = min(chunk_size, num_samples - done)
        chunk = torch.logsumexp(log_importance_weights(model, guide, x, k, max_plate_nesting), 0)
        total = chunk if total is None else torch.logaddexp(total, chunk)
        done += k
    assert total is not None
    return total - math.log(num_samples)


@torch.no_grad()
def elbo_per_datapoint(
    model: Callable, guide: Callable, x: Tensor, num_samples: int = 1, max_plate_nesting: int = 1
) -> Tensor:
    """Monte-Carlo ELBO per data point, ``(B,)``, averaged over ``num_samples`` draws."""
    return log_importance_weights(model, guide, x, num_samples, max_plate_nesting).mean(0)


def logit_log_det(x: Tensor, alpha: float = 0.05) -> Tensor:
    """``log|dy/dx~|`` of ``y = logit(alpha + (1 - 2 alpha) x~)`` summed per image, ``(B,)``."""
    return LogitTransform(alpha)(x)[1]


def bits_per_dim(
    log_px: Union[Tensor, float], shape: Union[int, Sequence[int]], dequantized: bool = True,
    logit_x: Optional[Tensor] = None, alpha: float = 0.05,
) -> Union[Tensor, float]:
    """Bits per dimension of 8-bit images from a log-likelihood in nats (``DESIGN.md`` sec. 2).

    * ``dequantized=True``: ``log_px`` is a density of ``x~ = (x + u) / 256`` in ``[0, 1]^D``;
      the 8-bit bits/dim is ``(-log p(x~) + D log 256) / (D log 2)``.
    * ``dequantized=False``: ``log_px`` is a probability mass (Bernoulli, discretized logistic):
      ``-log P(x) / (D log 2)``.
    * ``logit_x``: when ``log_px`` is a density of logit pixels ``y`` rather than of ``x~``,
      pass ``x~`` here and the logit transform's log-det is added first.
    """
    dims = shape if isinstance(shape, int) else math.prod(shape)
    if logit_x is not None:
        log_px = log_px + logit_log_det(logit_x, alpha)
    nats = -log_px + (dims * math.log(256) if dequantized else 0.0)
    return nats / (dims * math.log(2))


@torch.no_grad()
def mutual_information(posterior: Callable, x: Tensor) -> Tensor:
    """Estimate of ``I(x; z)`` under ``q(x, z) = p_data(x) q(z|x)`` on a batch of ``M`` points
    (Zhao et al., appendix A.3):
    ``mean_i [log q(z_i|x_i) - log (1/M) sum_j q(z_i|x_j)]``, ``z_i ~ q(z|x_i)``.
    Bounded above by ``log M`` (the sum over ``j`` contains ``j = i``). It is the InfoNCE bound
    with the critic ``q(z|x)``: in expectation a lower bound on ``I(x; z)`` (for ``x_i`` drawn
    independently) that tightens as ``M`` grows, close to ``I`` once ``I << log M``; an
    informative ``q`` saturates it at ``log M``.

    Args:
        posterior: maps a batch ``x`` to ``q(z|x)`` with ``batch_shape == (M,)``.

    Example:
        >>> import math, torch, pyro.distributions as dist
        >>> x = torch.randn(2000, 1)  # z | x ~ N(x, 1): I = log(2) / 2 = 0.347
        >>> mi = mutual_information(lambda x: dist.Normal(x, 1.0).to_event(1), x)
        >>> abs(float(mi) - math.log(2) / 2) < 0.05
        True
    """
    q = posterior(x)
    z = q.sample()
    cross = q.log_prob(z.unsqueeze(1))  # [i, j] = log q(z_i | x_j)
    m = cross.shape[0]
    return (cross.diagonal() - torch.logsumexp(cross, dim=1) + math.log(m)).mean()


@torch.no_grad()
def _as_image_tensor(images) -> Tensor:
    """``images`` as a tensor: a NumPy array converted, anything else but a tensor refused."""
    if isinstance(images, np.ndarray):
        return torch.as_tensor(images)
    if not isinstance(images, Tensor):
        raise TypeError(f"evaluate: images: expected uint8 images (N, C, H, W) as a torch.Tensor "
                        f"or a NumPy array, got {type(images).__module__}."
                        f"{type(images).__qualname__}")
    return images


def evaluate(model, images: Tensor, batch_size: int = 500, iwae: int = 0, chunk_size: int = 100,
             device=None, progress: Optional[bool] = None) -> Dict[str, float]:
    """Everything flowvae reports about a trained model on ``uint8`` images ``(N, C, H, W)``:
    the ELBO with every term at weight 1, whether its latents carry information
    (:func:`~flowvae.infer.latent_diagnostics`, at one draw ``z ~ q(z|x)`` per image) and,
    with ``iwae = K > 0``, the importance-weighted bound (Burda et al. 2016) on the same
    preprocessed batch (one dequantization or binarization draw), so that IWAE >= ELBO holds
    up to Monte-Carlo noise rather than up to preprocessing noise. :func:`flowvae.train.fit`
    (test rows), ``flowvae evaluate`` and the examples call it.

    Args:
        model: a flowvae model (``preprocess``, ``model``, ``guide``, ``shape``, ``discrete``).
        images: ``uint8`` images ``(N, C, H, W)`` (a tensor or a NumPy array), moved batch by
            batch to ``device`` (default: the model's).
        batch_size: images per batch (also the mutual-information estimate's ``M``).
        iwae: importance samples ``K`` (0: no IWAE bound), drawn ``chunk_size`` at a time.
        progress: a tqdm bar over the batches (``None``: when stderr is a terminal).

    Returns:
        ``nelbo`` (nats per image), ``bpd`` (bits/dim, ``DESIGN.md`` sec. 2), ``distortion``,
        ``rate`` and per latent site ``rate_<site>``, ``active_units_<site>``,
        ``mutual_info_<site>`` (:func:`~flowvae.infer.summarize_latents`), ``num_images``; with
        ``iwae``: ``iwae_k``, ``iwae_log_px``, ``iwae_nll`` (nats) and ``iwae_bpd``.
    """
    images = _as_image_tensor(images)
    device = device or next(model.parameters()).device
    batches, log_px = [], 0.0
    show = sys.stderr.isatty() if progress is None else progress
    starts = tqdm(range(0, len(images), batch_size), desc=f"evaluating {len(images)} images",
                  unit="batch", disable=not show, leave=False)
    for start in starts:
        x = model.preprocess(images[start : start + batch_size].to(device))
        batches.append(latent_diagnostics(model.model, model.guide, x))
        if iwae:
            log_px += iwae_log_likelihood(model.model, model.guide, x, num_samples=iwae,
                                          chunk_size=chunk_size).sum().item()
    summary = summarize_latents(batches)
    dequantized = not model.discrete
    nelbo = summary.pop("nelbo")
    results = {"nelbo": nelbo, "bpd": bits_per_dim(-nelbo, model.shape, dequantized), **summary,
               "num_images": len(images)}
    if iwae:
        n = len(images)
        results.update(iwae_k=iwae, iwae_log_px=log_px / n, iwae_nll=-log_px / n,
                       iwae_bpd=bits_per_dim(log_px / n, model.shape, dequantized))
    return results
