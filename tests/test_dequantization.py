"""Variational dequantization: q(u|x) on the noise of x~ = (x + u) / 256, against closed forms."""

import math

import pytest
import torch
from pyro import poutine
from torch import nn

from flowvae.data import load_dataset
from flowvae.infer import elbo_per_datapoint, iwae_log_likelihood
from flowvae.models import VAE, VAPNEV, FlowDensity
from flowvae.parts import DEQUANTIZATION, VariationalDequantizer
from flowvae.train import fit


class FixedDecoder(nn.Module):
    """p(x~|z) with the same parameters for every z."""

    def __init__(self, params):
        super().__init__()
        self.params = params

    def forward(self, z):
        return self.params.expand(*z.shape[:-1], *self.params.shape)


def test_logit_normal_density_is_the_normal_density_over_the_sigmoid_jacobian():
    torch.manual_seed(0)
    q = VariationalDequantizer((2, 4, 4), hidden=4)
    with torch.no_grad():
        for p in q.parameters():
            p.normal_(0, 0.5)
    x = torch.rand(3, 2, 4, 4)
    u = q(x).sample()
    assert u.shape == (3, 2, 4, 4) and bool(((u > 0) & (u < 1)).all())
    loc, log_scale = q.net(2 * x - 1).chunk(2, dim=1)
    e = torch.log(u) - torch.log1p(-u)
    manual = torch.distributions.Normal(loc, log_scale.exp()).log_prob(e) - torch.log(u * (1 - u))
    assert torch.allclose(q(x).log_prob(u), manual.sum((1, 2, 3)), atol=1e-4)


class FixedEncoder(nn.Module):
    """A delta guide at z = 0 for every x."""

    def forward(self, x):
        return x.new_zeros(*x.shape[:-3], 1)


HALF_A_BIN = math.log(0.5 / 256)


def fixed_vae(dequantization, offsets=(0.2, 0.5, 0.8, 0.1), log_scale=HALF_A_BIN):
    """p(z) p(x~|z) with the same p(x~|z) for every z, and q(z|x) = delta(0): every bound
    below is a sum over pixels of one-dimensional integrals over u. p(x~|z): Gaussians at
    ``offsets`` within IMAGE's bins (0.74 bins wide by default, after the likelihood's soft
    bound on the log-scale)."""
    vae = VAE((1, 2, 2), latent_dim=1, hidden=8, guide="delta", likelihood="gaussian",
              likelihood_kwargs=dict(dequantization=dequantization))
    loc = (IMAGE[0].float() + torch.tensor(offsets).view(1, 2, 2)) / 256
    vae.decoder = FixedDecoder(torch.cat([loc, torch.full_like(loc, log_scale)]))
    vae.encoder = FixedEncoder()
    return vae


IMAGE = torch.tensor([[[[0, 17], [128, 255]]]], dtype=torch.uint8)


def quadrature_elbo(vae, q=None, points=200001):
    """log p(z=0) + sum over pixels of the integral over u of q(u) (log p(x + u / 256) -
    log q(u)), by the midpoint rule on the logit scale (q logit-normal) or on u (q uniform)."""
    x = IMAGE.double()
    normal = vae.likelihood(torch.zeros(1, 1)).base_dist
    loc, scale = normal.loc.double(), normal.scale.double()
    if q is None:
        u = (torch.arange(points, dtype=torch.float64) + 0.5) / points
        weight, log_q = torch.full_like(u, 1 / points), torch.zeros_like(u)
        u, weight, log_q = u.view(-1, 1, 1, 1, 1), weight.view(-1, 1, 1, 1, 1), 0.0
    else:
        params = q.net(2 * vae.preprocess(IMAGE) - 1).double()
        m, s = params.chunk(2, dim=1)
        s = s.exp()
        t = torch.linspace(-9, 9, points, dtype=torch.float64).view(-1, 1, 1, 1, 1)
        e = m + s * t
        u = torch.sigmoid(e)
        density = torch.distributions.Normal(m, s).log_prob(e)
        weight = density.exp() * s * (t[1] - t[0])
        log_q = density - torch.log(u * (1 - u))
    log_p = torch.distributions.Normal(loc, scale).log_prob((x + u) / 256)
    return (weight * (log_p - log_q)).sum().item() + math.log(1 / math.sqrt(2 * math.pi))


def exact_log_likelihood(vae):
    """log p(z=0) + log P(x|z) + D log 256: the bound all dequantized ELBOs are below."""
    normal = vae.likelihood(torch.zeros(1, 1)).base_dist
    normal = torch.distributions.Normal(normal.loc.double(), normal.scale.double())
    bins = normal.cdf((IMAGE.double() + 1) / 256) - normal.cdf(IMAGE.double() / 256)
    return bins.log().sum().item() + 4 * math.log(256) - 0.5 * math.log(2 * math.pi)


def monte_carlo_elbo(vae, samples=20000):
    x = vae.preprocess(IMAGE.expand(samples, 1, 2, 2))
    return elbo_per_datapoint(vae.model, vae.guide, x)


def test_elbo_with_variational_dequantization_is_the_integral_over_q_u():
    torch.manual_seed(0)
    vae = fixed_vae("variational")
    with torch.no_grad():  # some q(u|x) other than the initial one
        for p in vae.p_x.dequantizer.parameters():
            p.normal_(0, 0.3)
    x = vae.preprocess(IMAGE)
    assert torch.equal(x, IMAGE.float() / 256)  # the bins' corners: no noise drawn here
    elbo = monte_carlo_elbo(vae)
    truth = quadrature_elbo(vae, vae.p_x.dequantizer)
    assert abs(elbo.mean().item() - truth) < 4 * elbo.std().item() / math.sqrt(len(elbo))
    assert truth < exact_log_likelihood(vae)
    # the model scores x + u / 256 for the guide's u, inside x's bins
    guide = poutine.trace(vae.guide).get_trace(x)
    model = poutine.trace(poutine.replay(vae.model, trace=guide)).get_trace(x)
    u = guide.nodes[DEQUANTIZATION]["value"]
    assert torch.allclose(model.nodes["x"]["value"], x + u / 256)
    assert torch.equal(torch.floor(model.nodes["x"]["value"] * 256), IMAGE.float())


def test_training_q_u_tightens_the_bound_beyond_uniform_dequantization():
    # Gaussians 0.26 bins wide: peaked within their bins, where uniform noise is a poor q
    peaked = dict(offsets=(0.3, 0.5, 0.6, 0.4), log_scale=-9.0)
    torch.manual_seed(0)
    uniform = fixed_vae("uniform", **peaked)
    uniform_elbo = quadrature_elbo(uniform)
    elbo = monte_carlo_elbo(uniform)  # the uniform path agrees with its own integral
    assert abs(elbo.mean().item() - uniform_elbo) < 4 * elbo.std().item() / math.sqrt(len(elbo))
    vae = fixed_vae("variational", **peaked)
    fit(vae, IMAGE.expand(64, 1, 2, 2), epochs=100, batch_size=64, lr=3e-2, progress=False)
    learned = quadrature_elbo(vae, vae.p_x.dequantizer)
    exact = exact_log_likelihood(vae)
    # the learned q(u|x) closes most of the gap that uniform noise leaves
    assert uniform_elbo < learned < exact
    assert exact - learned < 0.5 * (exact - uniform_elbo), (uniform_elbo, learned, exact)


@pytest.mark.parametrize("build", [
    lambda: VAPNEV((1, 8, 8), latent_dim=3, hidden=4, dequantization="variational",
                   flow_kwargs=dict(hidden_channels=4, num_blocks=1)),
    lambda: FlowDensity((1, 8, 8), dequantization="variational",
                        flow_kwargs=dict(hidden_channels=4, num_blocks=1)),
])
def test_flow_models_train_with_variational_dequantization(build):
    torch.manual_seed(0)
    model = build()
    images = load_dataset("digits", "train").images[:64]
    history = fit(model, images, epochs=4, batch_size=16, lr=3e-3, progress=False)
    assert all(math.isfinite(row["train_nelbo"]) for row in history)
    assert history[-1]["train_nelbo"] < history[0]["train_nelbo"]
    x = model.preprocess(images[:8])
    elbo = torch.stack([elbo_per_datapoint(model.model, model.guide, x) for _ in range(5)])
    iwae = iwae_log_likelihood(model.model, model.guide, x, num_samples=50)
    assert iwae.mean() > elbo.mean()


def test_unknown_dequantization_is_refused():
    with pytest.raises(ValueError, match="dequantization must be one of"):
        VAE((1, 2, 2), likelihood="gaussian", likelihood_kwargs=dict(dequantization="flat"))
