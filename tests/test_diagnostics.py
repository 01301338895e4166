"""Rate, distortion, active units, mutual information; free bits and KL warm-up.

Ground truths: the closed-form KL of two diagonal Normals written out by hand, Pyro's own
importance weights (``log_importance_weights``) at the same draw, the mutual information of a
Gaussian channel, and the free-bits objective recomputed by hand from the traces' draws.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from flowvae.infer import (
    GeneralizedELBO,
    active_units,
    latent_diagnostics,
    log_importance_weights,
    summarize_latents,
)

D, B = 3, 7


class Linear(torch.nn.Module):
    """z ~ N(0, I), x | z ~ N(W z, 0.5); q(z|x) = N(A x + b, exp(s)): every term has a closed
    form."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.W = torch.nn.Parameter(torch.randn(D, D, generator=g, dtype=torch.float64))
        self.A = torch.nn.Parameter(torch.randn(D, D, generator=g, dtype=torch.float64) / 2)
        self.b = torch.nn.Parameter(torch.randn(D, generator=g, dtype=torch.float64) / 2)
        self.s = torch.nn.Parameter(torch.randn(D, generator=g, dtype=torch.float64) / 2 - 1)
        self.beta = 1.0

    def model(self, x):
        with pyro.plate("data", x.shape[0], dim=-1):
            with poutine.scale(scale=self.beta):
                z = pyro.sample("z", dist.Normal(x.new_zeros(D), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T, 0.5).to_event(1), obs=x)

    def loc(self, x):
        return x @ self.A.T + self.b

    def guide(self, x):
        with pyro.plate("data", x.shape[0], dim=-1):
            with poutine.scale(scale=self.beta):
                pyro.sample("z", dist.Normal(self.loc(x), self.s.exp()).to_event(1))


def closed_form_kl(loc, log_scale):
    """KL(N(loc, e^s) || N(0, 1)) per coordinate, written out."""
    return 0.5 * (torch.exp(2 * log_scale) + loc**2 - 1) - log_scale


@pytest.fixture
def toy():
    pyro.set_rng_seed(0)
    return Linear(), torch.randn(B, D, dtype=torch.float64)


def test_rate_is_the_closed_form_kl_and_the_elbo_is_the_importance_weight(toy):
    m, x = toy
    m.beta = 0.3  # a site scale (a beta-VAE, a KL warm-up) must not leak into the true bound
    with torch.no_grad():
        kl = closed_form_kl(m.loc(x), m.s).sum(-1)
    pyro.set_rng_seed(1)
    d = latent_diagnostics(m.model, m.guide, x, analytic_kl=False)
    pyro.set_rng_seed(1)
    log_w = log_importance_weights(m.model, m.guide, x, 1)[0]
    assert torch.allclose(d.elbo, log_w, atol=1e-10)
    assert torch.allclose(d.elbo, -(d.distortion + d.rate["z"]), atol=1e-10)
    analytic = latent_diagnostics(m.model, m.guide, x)
    assert torch.allclose(analytic.rate["z"], kl, atol=1e-10)
    # the posterior mean of a Normal guide is its location
    assert torch.allclose(analytic.means["z"], m.loc(x).detach())


def test_monte_carlo_rate_is_unbiased(toy):
    m, x = toy
    with torch.no_grad():
        kl = closed_form_kl(m.loc(x), m.s).sum(-1).mean()
    estimates = torch.stack([latent_diagnostics(m.model, m.guide, x, analytic_kl=False)
                             .rate["z"].mean() for _ in range(400)])
    assert abs(float(estimates.mean() - kl)) < 4 * float(estimates.std()) / 20 + 1e-3


def test_mutual_information_of_a_gaussian_channel():
    # x ~ N(0, 1), z | x ~ N(x, 1): I(x; z) = log(2) / 2
    def model(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.Normal(x.new_zeros(1), 2**0.5).to_event(1))

    def guide(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.Normal(x, 1.0).to_event(1))

    pyro.set_rng_seed(0)
    estimates = [float(latent_diagnostics(model, guide, torch.randn(2000, 1)).mutual_info["z"])
                 for _ in range(8)]  # standard error about 0.01 in all
    assert abs(sum(estimates) / 8 - math.log(2) / 2) < 0.04


def test_active_units_counts_the_varying_means():
    means = torch.randn(500, 4) * torch.tensor([1.0, 0.3, 0.05, 0.0])  # variances 1, .09, .0025, 0
    assert active_units(means) == 2
    assert active_units(means, threshold=0.001) == 3
    with pytest.raises(ValueError, match="posterior means"):
        active_units(torch.randn(1, 4))


def test_summary_weights_batches_by_their_images(toy):
    m, x = toy
    whole = summarize_latents([latent_diagnostics(m.model, m.guide, x)])
    split = summarize_latents([latent_diagnostics(m.model, m.guide, x[:2]),
                               latent_diagnostics(m.model, m.guide, x[2:])])
    assert split["rate_z"] == pytest.approx(whole["rate_z"], abs=1e-9)
    assert split["active_units_z"] == whole["active_units_z"]
    assert set(whole) >= {"nelbo", "distortion", "rate", "rate_z", "active_units_z",
                          "mutual_info_z"}


def _loss_by_hand(m, x, free_bits, per_dimension):
    """The free-bits loss at the draw a seeded trace makes, recomputed from its parts."""
    guide_trace = poutine.trace(m.guide).get_trace(x)
    z = guide_trace.nodes["z"]["value"]
    distortion = -dist.Normal(z @ m.W.T, 0.5).log_prob(x).sum()
    if per_dimension:
        kl = closed_form_kl(m.loc(x), m.s).sum(0)  # (D,) over the batch
        rate = torch.clamp(kl, min=free_bits * B).sum()
    else:
        q = dist.Normal(m.loc(x), m.s.exp()).log_prob(z).sum()
        p = dist.Normal(0.0, 1.0).log_prob(z).sum()
        rate = torch.clamp(q - p, min=free_bits * B)
    return distortion + rate


@pytest.mark.parametrize("per_dimension", [False, True])
@pytest.mark.parametrize("free_bits", [0.0, 0.5, 50.0])
def test_free_bits_loss_and_gradient_match_the_formula(toy, free_bits, per_dimension):
    m, x = toy
    group = "dimension" if per_dimension else "site"
    elbo = GeneralizedELBO("elbo", free_bits=free_bits, free_bits_group=group,
                           max_plate_nesting=1)
    pyro.set_rng_seed(3)
    loss = elbo.differentiable_loss(m.model, m.guide, x)
    grads = torch.autograd.grad(loss, [m.A, m.s])
    pyro.set_rng_seed(3)
    if free_bits == 0:  # off: Pyro's own Trace_ELBO
        expected = pyro.infer.Trace_ELBO(max_plate_nesting=1).differentiable_loss(
            m.model, m.guide, x)
    else:
        expected = _loss_by_hand(m, x, free_bits, per_dimension)
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-9)
    for got, want in zip(grads, torch.autograd.grad(expected, [m.A, m.s])):
        assert torch.allclose(got, want, atol=1e-9)
    if free_bits == 50.0:  # far above the KL: the rate exerts no pull at all
        pyro.set_rng_seed(3)
        guide_trace = poutine.trace(m.guide).get_trace(x)
        z = guide_trace.nodes["z"]["value"]
        (g_s,) = torch.autograd.grad(-dist.Normal(z @ m.W.T, 0.5).log_prob(x).sum(), [m.s])
        assert torch.allclose(grads[1], g_s, atol=1e-9)


def test_kl_warmup_ramps_the_weight_and_counts_steps(toy):
    m, x = toy
    elbo = GeneralizedELBO("beta", beta=1.0, warmup_steps=4, max_plate_nesting=1,
                           analytic_kl=True)
    weights = []
    for _ in range(6):
        weights.append(elbo.kl_weight)
        pyro.set_rng_seed(5)
        loss = elbo.differentiable_loss(m.model, m.guide, x)
        pyro.set_rng_seed(5)
        guide_trace = poutine.trace(m.guide).get_trace(x)
        z = guide_trace.nodes["z"]["value"]
        distortion = -dist.Normal(z @ m.W.T, 0.5).log_prob(x).sum()
        kl = closed_form_kl(m.loc(x), m.s).sum()
        expected = float((distortion + weights[-1] * kl).detach())
        assert float(loss.detach()) == pytest.approx(expected, rel=1e-9)
    assert weights == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    with torch.no_grad():  # an evaluation is not a step
        elbo.differentiable_loss(m.model, m.guide, x)
    assert elbo.step == 6


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="unregularized", free_bits=1.0), "unregularized"),
    (dict(free_bits=-1.0), ">= 0"),
    (dict(warmup_steps=-1), ">= 0"),
    (dict(free_bits=1.0, free_bits_group="pixel"), "free_bits_group"),
])
def test_bad_options_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GeneralizedELBO(**kwargs)


def test_a_factor_term_of_the_objective_is_not_part_of_the_bound():
    from flowvae.models import VAE

    torch.manual_seed(0)
    infovae = VAE((1, 8, 8), latent_dim=2, hidden=8, mmd_weight=100.0)
    plain = VAE((1, 8, 8), latent_dim=2, hidden=8)
    plain.load_state_dict(infovae.state_dict())
    x = plain.preprocess(torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8))
    results = []
    for model in (infovae, plain):
        pyro.set_rng_seed(2)
        elbo = latent_diagnostics(model.model, model.guide, x).elbo
        pyro.set_rng_seed(3)  # the MMD factor draws from the prior: restart the streams
        results.append((elbo, log_importance_weights(model.model, model.guide, x, 3)))
    assert torch.allclose(results[0][0], results[1][0])
    assert torch.allclose(results[0][1], results[1][1])
