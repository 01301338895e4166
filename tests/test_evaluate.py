"""Estimators against closed forms: IWAE on a linear-Gaussian model, bits/dim, MI."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from flowvae.infer import (
    bits_per_dim,
    elbo_per_datapoint,
    iwae_log_likelihood,
    logit_log_det,
    mutual_information,
)
from flowvae.transforms import LogitTransform

D_Z, D_X = 2, 3


@pytest.fixture
def linear_gaussian(float64):
    """z ~ N(0, I), x ~ N(W z + b, s^2 I); p(x) = N(b, W W^T + s^2 I) in closed form; the
    guide is the exact posterior with a shifted mean and inflated scale (so ELBO < log p)."""
    torch.manual_seed(1)
    w, b, s = torch.randn(D_X, D_Z), torch.randn(D_X), 0.7
    x = torch.randn(4, D_X) * 2
    precision = torch.eye(D_Z) + w.T @ w / s**2
    post_cov = torch.linalg.inv(precision)
    post_mean = (x - b) @ w @ post_cov.T / s**2
    q_loc, q_scale = post_mean + 0.3, post_cov.diagonal().sqrt() * 1.3

    def model(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(torch.zeros(D_Z), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ w.T + b, s).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.Normal(q_loc, q_scale).to_event(1))

    marginal = dist.MultivariateNormal(b, w @ w.T + s**2 * torch.eye(D_X))
    # closed-form ELBO: E_q log p(x|z) + E_q log p(z) + H[q]
    q = torch.distributions.Normal(q_loc, q_scale)
    resid = x - q_loc @ w.T - b
    trace = q_scale**2 @ (w**2).T  # diag(W diag(q_var) W^T) per data point
    e_log_lik = (-0.5 * (resid**2 + trace) / s**2).sum(-1) - D_X * math.log(
        s * math.sqrt(2 * math.pi))
    e_log_prior = (-0.5 * (q_loc**2 + q_scale**2) - 0.5 * math.log(2 * math.pi)).sum(-1)
    elbo = e_log_lik + e_log_prior + q.entropy().sum(-1)
    return model, guide, x, marginal.log_prob(x), elbo


def test_iwae_converges_to_the_exact_marginal_likelihood(linear_gaussian):
    model, guide, x, exact, elbo = linear_gaussian
    assert (elbo < exact - 0.05).all()  # the guide is imperfect: a real gap to close
    k1 = torch.stack([iwae_log_likelihood(model, guide, x, num_samples=1) for _ in range(4000)])
    stderr = k1.std(0) / math.sqrt(4000)
    assert ((k1.mean(0) - elbo).abs() < 4 * stderr).all()  # K = 1 is the ELBO in expectation
    k5000 = iwae_log_likelihood(model, guide, x, num_samples=5000, chunk_size=700)
    assert k5000.shape == (4,)
    assert ((k5000 - exact).abs() < 0.05).all()
    # in expectation the bound tightens monotonically in K: ELBO < E[IWAE_10] <= log p(x)
    k10 = torch.stack([iwae_log_likelihood(model, guide, x, num_samples=10) for _ in range(500)])
    assert (k10.mean(0) > elbo + 0.05).all() and (k10.mean(0) < exact + 0.02).all()


def test_elbo_per_datapoint_matches_closed_form(linear_gaussian):
    model, guide, x, _, elbo = linear_gaussian
    estimate = elbo_per_datapoint(model, guide, x, num_samples=20000)
    assert torch.allclose(estimate, elbo, atol=0.05)


def test_bits_per_dim_conventions():
    d = 784
    # a uniform density on [0, 1]^D is 8 bits/dim of an 8-bit image
    assert bits_per_dim(0.0, (1, 28, 28)) == pytest.approx(8.0)
    # a probability mass of 2^-D is 1 bit/dim
    assert bits_per_dim(-d * math.log(2), d, dequantized=False) == pytest.approx(1.0)
    x = torch.rand(2, 1, 4, 4)
    _, logdet = LogitTransform(0.05)(x)
    assert torch.allclose(logit_log_det(x), logdet)
    log_py = torch.tensor([-10.0, -12.0])
    expected = bits_per_dim(log_py + logdet, 16)
    assert torch.allclose(bits_per_dim(log_py, 16, logit_x=x), expected)


def test_mutual_information_bounds_and_independence(float64):
    m = 200
    x = torch.linspace(-1, 1, m)[:, None]  # neighbours 0.1 apart after scaling by 10

    def informative(x):  # z = x + small noise: I(x; z) near its ceiling log M
        return dist.Normal(x * 10, 0.01).to_event(1)

    def uninformative(x):  # q(z|x) does not depend on x: I = 0 exactly
        return dist.Normal(torch.zeros_like(x), 1.0).to_event(1)

    assert mutual_information(uninformative, x).abs() < 1e-9
    mi = mutual_information(informative, x)
    assert math.log(m) - 0.05 < mi <= math.log(m) + 1e-9
