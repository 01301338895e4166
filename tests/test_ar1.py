"""AR1Normal against an independently built dense MultivariateNormal, and inside Pyro inference."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from torch.distributions import MultivariateNormal, kl_divergence
from torch.distributions.kl import _dispatch_kl

from flowvae.distributions.ar1 import AR1Normal, open_interval

DIMS = [1, 2, 7, 64]
RHOS = [-0.99, -0.5, 0.0, 0.3, 0.99]


def reference_covariance(scale, rho, d):
    """Dense ``D T D`` by explicit loops, for one sample (``scale``: float or length-d list)."""
    sigma = [float(scale)] * d if not isinstance(scale, list) else scale
    return torch.tensor(
        [[sigma[i] * sigma[j] * float(rho) ** abs(i - j) for j in range(d)] for i in range(d)]
    )


def random_params(d, rho, per_dim):
    loc = torch.randn(d)
    scale = torch.rand(d if per_dim else 1) + 0.5
    return loc, scale, torch.tensor(rho)


def reference_mvn(loc, scale, rho):
    d = loc.shape[-1]
    sigma = scale.tolist() if scale.numel() == d and d > 1 else float(scale[0])
    return MultivariateNormal(loc, covariance_matrix=reference_covariance(sigma, rho, d))


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("rho", RHOS)
@pytest.mark.parametrize("per_dim", [False, True])
def test_log_prob_entropy_kl_match_dense_mvn(float64, d, rho, per_dim):
    loc, scale, rho_t = random_params(d, rho, per_dim)
    q = AR1Normal(loc, scale, rho_t)
    ref = reference_mvn(loc, scale, rho)

    torch.testing.assert_close(q.covariance_matrix, ref.covariance_matrix, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(q.scale_tril, ref.scale_tril, rtol=1e-8, atol=1e-10)

    z = ref.sample((20,))
    torch.testing.assert_close(q.log_prob(z), ref.log_prob(z), rtol=1e-6, atol=0)
    torch.testing.assert_close(q.entropy(), ref.entropy(), rtol=1e-6, atol=0)

    standard = MultivariateNormal(torch.zeros(d), torch.eye(d))
    expected_kl = kl_divergence(ref, standard)
    torch.testing.assert_close(kl_divergence(q, standard), expected_kl, rtol=1e-6, atol=1e-10)
    prior = dist.Normal(0.0, 1.0).expand([d]).to_event(1)
    torch.testing.assert_close(kl_divergence(q, prior), expected_kl, rtol=1e-6, atol=1e-10)
    # the formula of the paper, written out
    log_det = 2 * torch.log(scale).expand(d).sum() + (d - 1) * math.log(1 - rho**2)
    paper = 0.5 * (scale.expand(d).pow(2).sum() + loc.pow(2).sum() - d - log_det)
    torch.testing.assert_close(kl_divergence(q, prior), paper, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("d", [1, 7])
def test_kl_against_general_priors(float64, d):
    loc, scale, rho = random_params(d, 0.8, per_dim=True)
    q = AR1Normal(loc, scale, rho)
    q_mvn = reference_mvn(loc, scale, 0.8)

    m, s = torch.randn(d), torch.rand(d) + 0.3
    diagonal = dist.Normal(m, s).to_event(1)
    expected = kl_divergence(q_mvn, MultivariateNormal(m, scale_tril=torch.diag(s)))
    torch.testing.assert_close(kl_divergence(q, diagonal), expected, rtol=1e-8, atol=1e-10)

    a = torch.randn(d, d)
    dense = dist.MultivariateNormal(m, covariance_matrix=a @ a.T + torch.eye(d))
    torch.testing.assert_close(kl_divergence(q, dense), kl_divergence(q_mvn, dense))

    p_loc, p_scale = torch.randn(d), torch.rand(1) + 0.5
    p = AR1Normal(p_loc, p_scale, torch.tensor(-0.6))
    expected = kl_divergence(q_mvn, reference_mvn(p_loc, p_scale, -0.6))
    torch.testing.assert_close(kl_divergence(q, p), expected, rtol=1e-8, atol=1e-10)


def test_kl_dispatch_picks_ar1_rules():
    for prior_type in (
        torch.distributions.Independent,
        dist.Independent,
        torch.distributions.MultivariateNormal,
        dist.MultivariateNormal,
    ):
        assert _dispatch_kl(AR1Normal, prior_type).__module__ == "flowvae.distributions.ar1"
    # an Independent of something other than a Normal is not claimed (Pyro then samples)
    q = AR1Normal(torch.zeros(3), torch.ones(1), 0.2)
    with pytest.raises(NotImplementedError):
        kl_divergence(q, dist.Laplace(torch.zeros(3), 1.0).to_event(1))


def test_sample_moments_match_covariance(float64):
    n = 200_000
    loc = torch.tensor([0.5, -1.0, 2.0, 0.0])
    scale = torch.tensor([0.5, 1.0, 2.0, 1.5])
    q = AR1Normal(loc, scale, -0.7)
    z = q.sample((n,))
    cov = q.covariance_matrix
    # the sample covariance entry S_ij has variance (C_ii C_jj + C_ij^2) / n for Gaussian data;
    # 5 standard errors leave a per-entry false-alarm rate below 1e-6
    se_cov = ((cov.diagonal().unsqueeze(-1) * cov.diagonal() + cov.pow(2)) / n).sqrt()
    assert ((torch.cov(z.T) - cov).abs() <= 5 * se_cov).all()
    assert ((z.mean(0) - loc).abs() <= 5 * (cov.diagonal() / n).sqrt()).all()


def test_rho_zero_is_diagonal_normal(float64):
    loc, scale = torch.randn(3, 6), torch.rand(3, 6) + 0.5
    q = AR1Normal(loc, scale, torch.zeros(3))
    diagonal = dist.Normal(loc, scale).to_event(1)
    z = diagonal.sample((4,))
    torch.testing.assert_close(q.log_prob(z), diagonal.log_prob(z))
    torch.testing.assert_close(q.entropy(), diagonal.entropy())
    pyro.set_rng_seed(1)
    z_q = q.rsample((5,))
    pyro.set_rng_seed(1)
    torch.testing.assert_close(z_q, diagonal.rsample((5,)), rtol=0, atol=0)


def test_near_unit_rho_is_stable():
    # float32: the innovation scale is computed as sqrt((1 - rho)(1 + rho))
    q = AR1Normal(torch.zeros(2, 256), torch.ones(2, 1), torch.tensor([0.9999, -0.9999]))
    z = q.rsample((8,))
    assert torch.isfinite(z).all() and torch.isfinite(q.log_prob(z)).all()


def test_batch_shapes():
    d = 5
    q = AR1Normal(torch.randn(3, 4, d), torch.rand(3, 4, 1) + 0.5, torch.rand(3, 4) * 0.9)
    assert q.batch_shape == (3, 4) and q.event_shape == (d,)
    z = q.rsample((2,))
    assert z.shape == (2, 3, 4, d)
    assert q.log_prob(z).shape == (2, 3, 4)
    assert q.entropy().shape == (3, 4)
    assert q.covariance_matrix.shape == (3, 4, d, d)
    assert q.variance.shape == (3, 4, d)

    expanded = q.expand((6, 3, 4))
    assert expanded.batch_shape == (6, 3, 4)
    assert expanded.rsample().shape == (6, 3, 4, d)
    torch.testing.assert_close(expanded.log_prob(z[0]), q.log_prob(z[0]).expand(6, 3, 4))

    # broadcasting between loc, per-dimension scale and rho; scalars for scale and rho
    q = AR1Normal(torch.randn(4, d), torch.rand(d) + 0.5, torch.full((3, 1), 0.2))
    assert q.batch_shape == (3, 4)
    assert AR1Normal(torch.zeros(d), 2.0, 0.1).batch_shape == ()
    assert AR1Normal.infer_shapes(loc=(3, 4, d), scale=(3, 4, 1), rho=(3, 4)) == ((3, 4), (d,))

    independent = q.to_event(1)
    assert independent.event_shape == (4, d)
    assert independent.log_prob(independent.sample()).shape == (3,)


def test_gradients_reach_all_parameters(float64):
    loc = torch.randn(2, 6, requires_grad=True)
    scale = (torch.rand(2, 1) + 0.5).requires_grad_()
    rho = torch.tensor([0.0, -0.8], requires_grad=True)
    q = AR1Normal(loc, scale, rho)
    (q.rsample((3,)) ** 2).sum().backward()
    for parameter in (loc, scale, rho):
        assert parameter.grad is not None
        assert torch.isfinite(parameter.grad).all() and (parameter.grad != 0).all()

    def draw(loc, scale, rho):
        pyro.set_rng_seed(3)
        return AR1Normal(loc, scale, rho).rsample((2,))

    def density(loc, scale, rho):
        return AR1Normal(loc, scale, rho).log_prob(torch.ones(6))

    rho = torch.tensor([0.3, -0.8], requires_grad=True)
    torch.autograd.gradcheck(draw, (loc, scale, rho))
    torch.autograd.gradcheck(density, (loc, scale, rho))
    # the dense covariance (built from powers of rho) has a finite derivative at rho = 0
    torch.autograd.gradcheck(lambda r: AR1Normal(loc, scale, r).covariance_matrix, (rho * 0,))


@pytest.mark.parametrize("bad_rho", [1.0, -1.0, 1.5])
def test_validation_rejects_bad_rho(bad_rho):
    with pytest.raises(ValueError, match="rho"):
        AR1Normal(torch.zeros(3), torch.ones(1), torch.tensor(bad_rho))


def test_validation_rejects_bad_scale_and_shapes():
    with pytest.raises(ValueError, match="scale"):
        AR1Normal(torch.zeros(3), -torch.ones(1), 0.5)
    with pytest.raises(ValueError, match=r"\(\*batch, 1\) or \(\*batch, d\) with d=5"):
        AR1Normal(torch.zeros(2, 5), torch.ones(2, 3), torch.zeros(2))
    with pytest.raises(ValueError, match=r"rho \(3,\)"):
        AR1Normal(torch.zeros(2, 5), torch.ones(2, 1), torch.zeros(3))
    with pytest.raises(ValueError, match="at least one dimension"):
        AR1Normal(torch.tensor(0.0), 1.0, 0.0)
    q = AR1Normal(torch.zeros(2, 5), torch.ones(2, 1), torch.zeros(2))
    with pytest.raises(ValueError):
        q.log_prob(torch.zeros(2, 4))


def test_open_interval_constraint_in_param_store():
    raw = pyro.param("rho", torch.tensor([0.5, -0.3]), constraint=open_interval(-1.0, 1.0))
    torch.testing.assert_close(raw, torch.tensor([0.5, -0.3]))
    assert not open_interval(-1.0, 1.0).check(torch.tensor([1.0, -1.0])).any()


def test_trace_mean_field_elbo_uses_closed_form_kl(float64):
    n, d = 3, 5
    loc, scale, rho = torch.randn(n, d), torch.rand(n, 1) + 0.5, torch.tensor([0.9, -0.4, 0.0])

    def model():
        with pyro.plate("data", n):
            pyro.sample("z", dist.Normal(0.0, 1.0).expand([d]).to_event(1))

    def guide():
        with pyro.plate("data", n):
            pyro.sample("z", AR1Normal(loc, scale, rho))

    # no observation: the loss is exactly the sum of KLs, with no Monte Carlo noise
    loss = TraceMeanField_ELBO().loss(model, guide)
    log_det = 2 * d * scale.squeeze(-1).log() + (d - 1) * torch.log(1 - rho**2)
    kl = 0.5 * (d * scale.squeeze(-1) ** 2 + loc.pow(2).sum(-1) - d - log_det)
    assert loss == pytest.approx(kl.sum().item(), rel=1e-10)

    def mvn_model():
        with pyro.plate("data", n):
            pyro.sample("z", dist.MultivariateNormal(torch.zeros(d), torch.eye(d)))

    assert TraceMeanField_ELBO().loss(mvn_model, guide) == pytest.approx(loss, rel=1e-10)


def test_vectorized_particles_in_plate():
    n, d = 6, 4
    data = torch.randn(n, d)

    def model(x):
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([d]).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide(x):
        loc = pyro.param("loc", torch.zeros(n, d))
        scale = pyro.param("scale", torch.ones(n, 1), constraint=dist.constraints.positive)
        rho = pyro.param("rho", torch.zeros(n), constraint=open_interval(-1.0, 1.0))
        with pyro.plate("data", n):
            pyro.sample("z", AR1Normal(loc, scale, rho))

    elbo = Trace_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), elbo)
    losses = [svi.step(data) for _ in range(3)]
    assert all(math.isfinite(loss) for loss in losses)
    assert pyro.param("rho").abs().max() > 0  # rho received a gradient

    # what the vectorized ELBO does to the guide: an outer particle plate expands the AR1Normal
    with pyro.plate("particles", 4, dim=-2):
        trace = poutine.trace(guide).get_trace(data)
    assert trace.nodes["z"]["fn"].batch_shape == (4, n)
    assert trace.nodes["z"]["value"].shape == (4, n, d)
