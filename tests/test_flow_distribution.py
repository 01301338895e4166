"""FlowDistribution and the nflows <-> Pyro bridge."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from nflows.distributions import StandardNormal
from nflows.flows import Flow
from pyro.distributions.testing.gof import auto_goodness_of_fit
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from torch import nn

from flowvae import ConditionalRealNVP, FlowDistribution
from flowvae.distributions import NflowsConditionalTransformModule, NflowsTransformModule

TEST_FAILURE_RATE = 1e-3


def perturbed(flow, amount=0.3):
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(amount * torch.randn_like(p))
    return flow


def vector_flow(context_features=None, dim=3):
    return perturbed(ConditionalRealNVP((dim,), context_features, hidden_features=16))


def image_flow(context_features=None):
    return perturbed(ConditionalRealNVP((1, 4, 4), context_features, hidden_channels=4,
                                        num_blocks=1, num_checkerboard=2, num_channelwise=2,
                                        num_final=2), 0.1)


def manual_log_prob(flow, x, loc, scale, context):
    noise, logabsdet = flow(x, context=context)
    return torch.distributions.Normal(loc, scale).log_prob(noise).flatten(1).sum(1) + logabsdet


@pytest.mark.parametrize("make", [vector_flow, image_flow])
def test_log_prob_equals_manual_formula(make, float64):
    flow = make(2)
    shape = flow.shape
    loc, scale = torch.randn(4, *shape), torch.rand(4, *shape) + 0.5
    context, x = torch.randn(4, 2), torch.randn(4, *shape)
    d = FlowDistribution(flow, loc, scale, context)
    assert d.batch_shape == (4,) and d.event_shape == shape
    assert torch.allclose(d.log_prob(x), manual_log_prob(flow, x, loc, scale, context))


@pytest.mark.parametrize("make", [vector_flow, image_flow])
def test_log_prob_of_rsample_is_base_minus_inverse_logdet_and_cache_agrees(make, float64):
    flow = make(2)
    shape = flow.shape
    loc, scale, context = torch.randn(*shape), torch.rand(*shape) + 0.5, torch.randn(5, 2)
    d = FlowDistribution(flow, loc, scale, context)
    x = d.rsample()
    cached = d.log_prob(x)
    uncached = d.log_prob(x.clone())  # a different tensor: recomputed through the flow
    noise, logabsdet_fwd = flow(x, context=context)
    _, logabsdet_inv = flow.inverse(noise, context=context)
    base = torch.distributions.Normal(loc, scale).log_prob(noise).flatten(1).sum(1)
    assert torch.allclose(cached, base - logabsdet_inv)
    assert torch.allclose(cached, uncached)
    assert torch.allclose(uncached, base + logabsdet_fwd)


def test_cache_is_invalidated_by_a_new_tensor_or_an_in_place_change(float64):
    flow = vector_flow()
    d = FlowDistribution(flow, torch.zeros(3), torch.ones(3))
    x = d.rsample((4,))
    before = d.log_prob(x)
    with torch.no_grad():
        x.add_(1.0)  # in-place: same object, new version
    after = d.log_prob(x)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, manual_log_prob(flow, x, torch.zeros(3), torch.ones(3), None))


def test_leading_dims_broadcast_like_vectorized_particles(float64):
    flow = vector_flow(2)
    context = torch.randn(6, 5, 2)  # (particles, batch, F)
    loc = torch.randn(6, 5, 3)
    d = FlowDistribution(flow, loc, torch.ones(3), context)
    x = torch.randn(5, 3)  # observation without the particle dim
    log_prob = d.log_prob(x)
    assert log_prob.shape == (6, 5)
    for k in (0, 4):
        expected = manual_log_prob(flow, x, loc[k], torch.ones(3), context[k])
        assert torch.allclose(log_prob[k], expected)
    assert d.rsample((2,)).shape == (2, 6, 5, 3)
    assert d.expand((4, 6, 5)).log_prob(x).shape == (4, 6, 5)


def test_temperature_scales_the_base_noise():
    flow = ConditionalRealNVP((2,), hidden_features=8)  # identity at init
    d = FlowDistribution(flow, torch.zeros(2), torch.ones(2), temperature=0.5)
    samples = d.sample((20000,))
    assert abs(samples.std().item() - 0.5) < 0.02
    with pytest.raises(ValueError, match="temperature"):
        FlowDistribution(flow, torch.zeros(2), torch.ones(2), temperature=0.0)


def test_samples_match_log_prob_goodness_of_fit():
    flow = vector_flow(dim=2)
    d = FlowDistribution(flow, torch.tensor([0.5, -0.3]), torch.tensor([1.0, 0.7]))
    with torch.no_grad():
        samples = d.sample((5000,))
        probs = d.log_prob(samples.clone()).exp()
    assert auto_goodness_of_fit(samples, probs) > TEST_FAILURE_RATE
    # a wrong density must fail the same test
    assert auto_goodness_of_fit(samples, probs * torch.exp(samples[:, 0])) < TEST_FAILURE_RATE


def test_bad_arguments_raise():
    flow = vector_flow(2)
    with pytest.raises(ValueError, match=r"base_loc: expected shape \(\.\.\., 3\)"):
        FlowDistribution(flow, torch.zeros(4), torch.ones(3), torch.randn(5, 2))
    with pytest.raises(ValueError, match="do not broadcast"):
        FlowDistribution(flow, torch.zeros(4, 3), torch.ones(3), torch.randn(5, 2))
    with pytest.raises(ValueError, match="base_scale"):
        FlowDistribution(flow, torch.zeros(3), -torch.ones(3), torch.randn(5, 2),
                         validate_args=True)
    with pytest.raises(ValueError, match="event_shape"):
        FlowDistribution(nn.Identity(), torch.zeros(3), torch.ones(3))


class TinyVAE(nn.Module):
    """z -> flow likelihood on 4x4 images, with the flow conditioned on z."""

    def __init__(self, latent=2):
        super().__init__()
        self.latent = latent
        self.flow = image_flow(latent)
        self.decoder = nn.Linear(latent, 2 * 16)
        self.encoder = nn.Linear(16, 2 * latent)

    def model(self, x):
        pyro.module("vae", self)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.latent), 1.0).to_event(1))
            loc, log_scale = self.decoder(z).view(*z.shape[:-1], 2, 1, 4, 4).unbind(-4)
            pyro.sample("x", FlowDistribution(self.flow, loc, log_scale.exp(), z), obs=x)

    def guide(self, x):
        pyro.module("vae", self)
        with pyro.plate("data", x.shape[0]):
            loc, log_scale = self.encoder(x.flatten(1)).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


def test_pyro_sample_site_in_plate_with_vectorized_particles_and_gradients():
    vae = TinyVAE()
    elbo = Trace_ELBO(num_particles=4, vectorize_particles=True)
    x = torch.randn(3, 1, 4, 4)
    loss = elbo.differentiable_loss(vae.model, vae.guide, x)
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in vae.named_parameters():  # transform, base (decoder) and context (encoder)
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), elbo)
    assert torch.isfinite(torch.tensor(svi.step(x)))


def test_flow_posterior_as_a_guide_site():
    flow = vector_flow(4, dim=2)
    enc = nn.Linear(3, 4)

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(1), obs=x)

    def guide(x):
        pyro.module("flow", flow)
        pyro.module("enc", enc)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", FlowDistribution(flow, torch.zeros(2), torch.ones(2), enc(
                torch.cat([x, x ** 2, torch.ones_like(x)], -1))))

    x = torch.randn(5, 1)
    loss = Trace_ELBO(num_particles=3, vectorize_particles=True).differentiable_loss(
        model, guide, x)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in flow.parameters())


@pytest.mark.parametrize("make", [vector_flow, image_flow])
def test_bridge_matches_flow_distribution_and_nflows_flow(make, float64):
    flow = make(None)
    shape = flow.shape
    base = dist.Normal(torch.zeros(shape), torch.ones(shape)).to_event(len(shape))
    pyro_dist = dist.TransformedDistribution(base, [NflowsTransformModule(flow)])
    ours = FlowDistribution(flow, torch.zeros(shape), torch.ones(shape))
    nflows_flow = Flow(flow, StandardNormal(shape))
    x = torch.randn(6, *shape)
    expected = nflows_flow.log_prob(x)
    assert torch.allclose(pyro_dist.log_prob(x), expected)
    assert torch.allclose(ours.log_prob(x), expected)
    # scoring a sample reuses the log-det of the pass that produced it
    y = pyro_dist.rsample((4,))
    assert torch.allclose(pyro_dist.log_prob(y), nflows_flow.log_prob(y.clone()))


def test_conditional_bridge_matches_flow_distribution(float64):
    flow = vector_flow(2)
    context = torch.randn(5, 2)
    base = dist.Normal(torch.zeros(3), torch.ones(3)).to_event(1)
    module = NflowsConditionalTransformModule(flow)
    pyro_dist = dist.ConditionalTransformedDistribution(base, [module]).condition(context)
    ours = FlowDistribution(flow, torch.zeros(3), torch.ones(3), context)
    x = torch.randn(5, 3)
    assert torch.allclose(pyro_dist.log_prob(x), ours.log_prob(x))
    assert set(module.parameters()) == set(flow.parameters())


def test_log_prob_checks_a_value_once_at_the_flows_entry(monkeypatch):
    """The flow checks the values it is given (one host read), so log_prob adds no support
    check of its own; shapes are still checked here, in FlowDistribution's words."""
    flow = vector_flow(2)
    d = FlowDistribution(flow, torch.zeros(3), torch.ones(3), torch.randn(4, 2))
    reads = []
    original = torch.Tensor.__bool__
    monkeypatch.setattr(torch.Tensor, "__bool__", lambda t: reads.append(1) or original(t))
    d.log_prob(torch.randn(4, 3))
    assert len(reads) == 1
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"^ConditionalRealNVP.forward: inputs: expected finite"):
        d.log_prob(torch.tensor([[0.0, float("nan"), 0.0]] * 4))
    with pytest.raises(ValueError, match=r"^FlowDistribution.log_prob: value: expected shape "
                                         r"\(\.\.\., 3\), got \(4, 2\)"):
        d.log_prob(torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"does not broadcast with the batch shape \(4,\)"):
        d.log_prob(torch.randn(3, 3))


def test_log_prob_of_any_other_transform_keeps_pyros_support_check():
    from nflows.transforms import CompositeTransform

    d = FlowDistribution(CompositeTransform([vector_flow()]), torch.zeros(3), torch.ones(3),
                         event_shape=(3,))
    with pytest.raises(ValueError, match="support"):
        d.log_prob(torch.tensor([0.0, float("nan"), 0.0]))
