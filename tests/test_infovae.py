"""InfoVAE's MMD term against an independent computation (issue 26: why does rho-VAE's InfoVAE
collapse?). The kernel two-sample statistic is written out here entry by entry from Gretton et
al. (2012), with the Gaussian kernel ``exp(-||a - b||^2 / h)``, and compared with
:func:`flowvae.infer.mmd`, with the ``"mmd"`` factor of the rho-VAE InfoVAE and with
:class:`~flowvae.infer.GeneralizedELBO`'s ``kind="mmd"`` on the same samples: value, sign,
scale (``lambda`` times the batch size ``N``, i.e. ``lambda MMD^2`` per data point), bandwidth
and gradients. The measured finding (no defect; the collapse is the weight's, from the first
step) is in ``tests/test_latent_use.py``."""

import math

import pytest
import torch
from pyro import poutine

import flowvae.infer.objectives as objectives
import flowvae.models.vae as vae_module
from flowvae.infer import GeneralizedELBO, mmd
from flowvae.models.rho_vae import rho_vae

SHAPE = (1, 4, 4)


def kernel_mean(a, b, h, skip_diagonal=False):
    """``mean_{i, j} exp(-||a_i - b_j||^2 / h)`` by explicit loops (``i != j`` if asked)."""
    total, count = 0.0, 0
    for i, u in enumerate(a.tolist()):
        for j, v in enumerate(b.tolist()):
            if skip_diagonal and i == j:
                continue
            total += math.exp(-sum((p - q) ** 2 for p, q in zip(u, v)) / h)
            count += 1
    return total / count


def mmd2_by_hand(x, y, h=None, unbiased=False):
    h = 2.0 * x.shape[-1] if h is None else h
    return (kernel_mean(x, x, h, unbiased) + kernel_mean(y, y, h, unbiased)
            - 2 * kernel_mean(x, y, h))


def mmd2_torch(x, y, h):
    """The biased statistic again, differentiable, with ``|a|^2 + |b|^2 - 2 a.b`` distances."""
    def k(a, b):
        sq = (a * a).sum(-1)[:, None] + (b * b).sum(-1)[None, :] - 2 * a @ b.T
        return torch.exp(-sq / h)
    return k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()


def binary_images(vae, n):
    """``n`` random {0, 255} images: the Bernoulli likelihood's observation is then fixed."""
    x = torch.randint(0, 2, (n, *SHAPE), dtype=torch.uint8) * 255
    return vae.preprocess(x).to(torch.get_default_dtype())


class Spy:
    """Wraps a module's ``mmd`` and keeps the samples it was given (the prior draws are random
    inside the program; everything else in the tests is recomputed independently)."""

    def __init__(self, monkeypatch, module):
        self.calls = []
        original = module.mmd

        def spy(x, y, *args, **kwargs):
            self.calls.append((x.detach().clone(), y.detach().clone()))
            return original(x, y, *args, **kwargs)
        monkeypatch.setattr(module, "mmd", spy)


@pytest.mark.parametrize("unbiased", [False, True])
def test_mmd_is_the_kernel_two_sample_statistic(float64, unbiased):
    x, y = torch.randn(2, 7, 3), torch.randn(2, 5, 3) * 1.5 + 0.3
    got = mmd(x, y, unbiased=unbiased)
    assert got.shape == (2,)
    for b in range(2):  # default bandwidth h = 2 D; InfoVAE's released code: h = D^2
        assert got[b].item() == pytest.approx(mmd2_by_hand(x[b], y[b], unbiased=unbiased),
                                              rel=1e-10)
        assert mmd(x[b], y[b], bandwidth=9.0, unbiased=unbiased).item() == pytest.approx(
            mmd2_by_hand(x[b], y[b], h=9.0, unbiased=unbiased), rel=1e-10)
    assert mmd(x, x).abs().max() < 1e-12  # biased: the same points give exactly 0


@pytest.mark.parametrize("guide", ["normal", "ar1"])
def test_rho_vae_infovae_factor_is_minus_lambda_n_mmd2(float64, monkeypatch, guide):
    spy = Spy(monkeypatch, vae_module)
    vae, _ = rho_vae("infovae", guide, SHAPE, latent_dim=3, hidden=8, mmd_weight=7.0)
    x = binary_images(vae, 12)
    guide_trace = poutine.trace(vae.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    (z_seen, draws), = spy.calls
    z = guide_trace.nodes["z"]["value"]
    assert torch.equal(z_seen, z.detach())  # the MMD of the guide's z, not of another tensor
    assert draws.shape == z.shape  # N prior draws of the latent, one per data point
    factor = model_trace.nodes["mmd"]
    value = factor["fn"].log_prob(factor["value"])
    expected = -7.0 * 12 * mmd2_by_hand(z.detach(), draws)
    assert expected < -1e-3  # the sign: a penalty
    assert value.item() == pytest.approx(expected, rel=1e-10)
    # gradients: those of the statistic written differently, and they reach the encoder only
    grad_z, = torch.autograd.grad(value, z, retain_graph=True)
    z_leaf = z.detach().requires_grad_()
    want, = torch.autograd.grad(-7.0 * 12 * mmd2_torch(z_leaf, draws, 2.0 * 3), z_leaf)
    assert torch.allclose(grad_z, want, rtol=1e-8, atol=1e-12)
    value.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in vae.encoder.parameters())
    assert all(p.grad is None for p in vae.decoder.parameters())


@pytest.mark.parametrize("batch", [8, 16])
def test_generalized_elbo_mmd_is_distortion_plus_lambda_n_mmd2(float64, monkeypatch, batch):
    """InfoVAE with ``alpha = 1`` (no KL): the loss is ``-log p(x|z) + lambda N MMD^2``."""
    spy = Spy(monkeypatch, objectives)
    vae, _ = rho_vae("vanilla", "normal", SHAPE, latent_dim=3, hidden=8)
    x = binary_images(vae, batch)
    elbo = GeneralizedELBO("mmd", mmd_weight=5.0, max_plate_nesting=1)
    assert elbo.beta == 0.0
    loss = elbo.loss(vae.model, vae.guide, x)
    (z, draws), = spy.calls
    assert z.shape == draws.shape == (1, batch, 3)  # one particle, the batch as samples
    with torch.no_grad():
        distortion = -vae.likelihood(z[0]).log_prob(x).sum().item()
    assert loss == pytest.approx(distortion + 5.0 * batch * mmd2_by_hand(z[0], draws[0]),
                                 rel=1e-10)
