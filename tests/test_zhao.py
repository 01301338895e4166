"""Zhao et al.: generalized objectives on flowvae models, the sequential VAE, the PixelCNN
likelihood (causality, exact sampling), the Gibbs chain and the mutual-information estimator."""

import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from flowvae.distributions.pixelcnn import PixelCNNDistribution
from flowvae.infer import GeneralizedELBO, gibbs_chain, mutual_information
from flowvae.infer.objectives import KINDS
from flowvae.models import VAE, SequentialVAE
from flowvae.nn.pixelcnn import ConditionalPixelCNN
from flowvae.train import fit, load_model

SMALL_PIXELCNN = dict(hidden_channels=4, num_blocks=1, kernel_size=3, context_channels=2)


def images(n, shape=(1, 6, 6)):
    return torch.randint(0, 256, (n, *shape), dtype=torch.uint8)


def pixelcnn_vae(shape=(1, 6, 6)):
    return VAE(shape, latent_dim=2, hidden=8, likelihood="pixelcnn",
               likelihood_kwargs=SMALL_PIXELCNN)


def sequential_vae(steps=3, **kwargs):
    return SequentialVAE((1, 6, 6), steps=steps, latent_dim=2, hidden=8, feature_dim=4, **kwargs)


# ---------------------------------------------------------------------------- MI estimator
def _linear_gaussian_posterior(a, s):
    """x ~ N(0, 1), z | x ~ N(a x, s^2): I(x; z) = 0.5 log(1 + a^2 / s^2)."""
    return (lambda x: dist.Normal(a * x, s).to_event(1)), 0.5 * math.log1p(a**2 / s**2)


def test_mutual_information_is_close_to_the_closed_form_for_large_m(float64):
    posterior, true_mi = _linear_gaussian_posterior(1.5, 1.0)
    estimate = mutual_information(posterior, torch.randn(2500, 1))
    assert abs(float(estimate) - true_mi) < 0.06


def test_mutual_information_is_a_lower_bound_in_expectation_and_below_log_m(float64):
    posterior, true_mi = _linear_gaussian_posterior(3.0, 1.0)
    m = 32
    estimates = torch.stack([mutual_information(posterior, torch.randn(m, 1))
                             for _ in range(200)])
    assert (estimates <= math.log(m) + 1e-9).all()
    stderr = float(estimates.std()) / math.sqrt(len(estimates))
    assert float(estimates.mean()) < true_mi + 3 * stderr  # InfoNCE: a lower bound on I
    assert float(estimates.mean()) > true_mi - 0.5  # and not a loose one here (I < log M)


def test_mutual_information_saturates_at_log_m(float64):
    posterior, true_mi = _linear_gaussian_posterior(100.0, 0.01)
    m = 200
    assert true_mi > math.log(m) + 2
    estimate = float(mutual_information(posterior, torch.randn(m, 1)))
    assert math.log(m) - 0.1 < estimate <= math.log(m) + 1e-9


# ---------------------------------------------------------------------------- PixelCNN
@pytest.mark.parametrize("channels,levels", [(1, 2), (2, 3)])
def test_pixelcnn_is_causal(float64, channels, levels):
    """d output(c, y, x) / d input(c', y', x') = 0 unless (y', x', c') precedes (y, x, c)."""
    h, w = 4, 4
    net = ConditionalPixelCNN((channels, h, w), levels=levels, context_channels=None,
                              hidden_channels=2 * channels, num_blocks=2, kernel_size=3)
    with torch.no_grad():  # break any exact zero of the initialisation
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))

    def logits(inputs):
        out = net(inputs)
        return out.sum(2) if levels > 2 else out  # every value's logit at once

    # |d out / d in| summed over a few inputs (a ReLU may hide a dependence at any one input);
    # (C, H, W, C', H', W')
    jac = sum(torch.autograd.functional.jacobian(logits, torch.rand(1, channels, h, w))
              .abs()[0, :, :, :, 0] for _ in range(4))
    order = torch.arange(h * w * channels).view(h, w, channels).permute(2, 0, 1)
    later_or_same = order[:, :, :, None, None, None] <= order[None, None, None]
    assert jac.sum() > 0
    assert (jac[later_or_same] == 0).all()
    # the masks are not over-restrictive: a pixel sees its left neighbour and the pixel above
    assert jac[0, 2, 2, 0, 2, 1] != 0 and jac[0, 2, 2, 0, 1, 2] != 0
    if channels > 1:  # channel 1 sees channel 0 of its own pixel
        assert jac[1, 2, 2, 0, 2, 2] != 0


@pytest.mark.parametrize("channels,levels", [(1, 2), (2, 4)])
def test_pixelcnn_sampling_matches_teacher_forced_log_prob(float64, channels, levels):
    net = ConditionalPixelCNN((channels, 7, 5), levels=levels, context_channels=3,
                              hidden_channels=2 * channels, num_blocks=1, kernel_size=3)
    assert net.rows_above < 6  # sampling runs the net on cropped windows of rows
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    d = PixelCNNDistribution(net, torch.randn(2, 3, 7, 5))
    x, log_p = d.sample_with_log_prob((3,))
    assert x.shape == (3, 2, channels, 7, 5) and log_p.shape == (3, 2)
    assert d.support.check(x).all()
    assert torch.allclose(d.log_prob(x), log_p, rtol=1e-10, atol=1e-10)
    assert d.expand((4, 2)).log_prob(x[0]).shape == (4, 2)


def test_pixelcnn_distribution_is_normalized_and_sampled_exactly(float64):
    net = ConditionalPixelCNN((1, 2, 2), levels=2, context_channels=1, hidden_channels=2,
                              num_blocks=1, kernel_size=3)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.5 * torch.randn_like(p))
    d = PixelCNNDistribution(net, torch.randn(1, 2, 2))
    grid = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4))).view(16, 1, 2, 2)
    probs = d.log_prob(grid).exp()
    assert float(probs.sum().detach()) == pytest.approx(1.0, abs=1e-12)
    n = 20000
    draws = d.sample((n,))
    index = (draws.flatten(1) * torch.tensor([8.0, 4.0, 2.0, 1.0])).sum(1).long()
    freq = torch.bincount(index, minlength=16).double() / n
    assert (freq - probs).abs().max() < 4 * math.sqrt(0.25 / n)


def test_pixelcnn_likelihood_in_a_vae_trains_and_samples():
    vae = pixelcnn_vae()
    x = vae.preprocess(images(5))
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    elbo = GeneralizedELBO("elbo", num_particles=2, vectorize_particles=True,
                           max_plate_nesting=1)
    svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), elbo)
    assert math.isfinite(svi.step(x))
    sample = vae.generate(3)
    assert sample.shape == (3, 1, 6, 6) and set(sample.unique().tolist()) <= {0.0, 1.0}
    grey = VAE((1, 6, 6), latent_dim=2, hidden=8, likelihood="pixelcnn",
               likelihood_kwargs=dict(SMALL_PIXELCNN, levels=256))
    xg = grey.preprocess(images(4))
    assert torch.allclose(xg * 255, (xg * 255).round(), atol=1e-4)
    assert torch.isfinite(grey.likelihood(grey.posterior(xg).sample()).log_prob(xg)).all()


# ---------------------------------------------------------------------------- Gibbs chain
def test_gibbs_chain_alternates_posterior_and_likelihood():
    class Stub:  # z = x + 1 under q, x = 2 z under p: the chain is x -> 2 (x + 1)
        def posterior(self, x):
            return dist.Delta(x + 1, event_dim=1)

        def likelihood(self, z):
            return dist.Delta(2 * z, event_dim=1)

        def to_image(self, x):
            return x

    states = gibbs_chain(Stub(), torch.zeros(2, 3), steps=3)
    assert [float(s[0, 0]) for s in states] == [2.0, 6.0, 14.0]


def test_gibbs_chain_on_a_pixelcnn_vae():
    vae = pixelcnn_vae()
    states = gibbs_chain(vae, vae.preprocess(images(2)), steps=2)
    assert len(states) == 2 and all(s.shape == (2, 1, 6, 6) for s in states)


# ---------------------------------------------------------------------------- objectives
def _hand_terms(model, guide, x, observed, latents, seed):
    pyro.set_rng_seed(seed)
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    model_trace.compute_log_prob()
    guide_trace.compute_log_prob()
    log_lik = sum(model_trace.nodes[s]["log_prob_sum"] for s in observed)
    kl = sum(guide_trace.nodes[s]["log_prob_sum"] - model_trace.nodes[s]["log_prob_sum"]
             for s in latents)
    return log_lik, kl


@pytest.mark.parametrize("which", ["pixelcnn", "sequential"])
def test_unregularized_has_no_kl_and_beta_one_is_the_elbo(float64, which):
    module = pixelcnn_vae() if which == "pixelcnn" else sequential_vae()
    module = module.double()
    x = module.preprocess(images(4)).double()
    latents = ("z",) if which == "pixelcnn" else module.latent_sites
    observed = ("x",) if which == "pixelcnn" else tuple(s.replace("z", "x") for s in latents)
    log_lik, kl = _hand_terms(module.model, module.guide, x, observed, latents, seed=3)
    assert float(kl.detach()) != 0

    def loss(objective):
        pyro.set_rng_seed(3)
        return objective.differentiable_loss(module.model, module.guide, x)

    kw = dict(latent_site=list(latents), max_plate_nesting=1)
    assert torch.allclose(loss(GeneralizedELBO("unregularized", **kw)), -log_lik, rtol=1e-10)
    elbo = loss(Trace_ELBO(max_plate_nesting=1))
    assert torch.allclose(elbo, kl - log_lik, rtol=1e-10)
    assert torch.allclose(loss(GeneralizedELBO("beta", beta=1.0, **kw)), elbo, rtol=1e-10)
    assert torch.allclose(loss(GeneralizedELBO("elbo", **kw)), elbo, rtol=1e-10)
    assert torch.allclose(loss(GeneralizedELBO("beta", beta=0.25, **kw)),
                          0.25 * kl - log_lik, rtol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_fit_takes_every_objective_for_vae_and_sequential_vae(tmp_path, kind):
    data = images(16)
    for name, module, sites in (("vae", VAE((1, 6, 6), latent_dim=2, hidden=8), "z"),
                                ("seq", sequential_vae(2), ("z_1", "z_2"))):
        objective = GeneralizedELBO(kind, latent_site=sites, max_plate_nesting=1)
        history = fit(module, data, data[:4], epochs=1, batch_size=8, elbo=objective,
                      progress=False, out_dir=str(tmp_path / name))
        assert math.isfinite(history[-1]["train_nelbo"])


# ---------------------------------------------------------------------------- sequential VAE
def test_sequential_vae_sites_step_sampling_and_gates():
    model = sequential_vae(3, gate_init=0.5)
    x = model.preprocess(images(5))
    trace = poutine.trace(model.model).get_trace(x)
    sites = [n for n, s in trace.nodes.items() if s["type"] == "sample"]
    assert sites == ["data", "z_1", "x_1", "z_2", "x_2", "z_3", "x_3"]
    for t in (1, 2, 3):
        node = trace.nodes[f"x_{t}"]
        assert node["is_observed"] and node["value"] is x
        assert [f.name for f in node["cond_indep_stack"]] == ["data"]
    elbo = Trace_ELBO(num_particles=2, vectorize_particles=True, max_plate_nesting=1)
    svi = SVI(model.model, model.guide, Adam({"lr": 1e-2}), elbo)
    assert math.isfinite(svi.step(x))
    gates = model.gates
    assert gates.shape == (2, 1) and ((gates > 0) & (gates < 1)).all()
    samples = model.generate(4)
    assert len(samples) == 3 and all(s.shape == (4, 1, 6, 6) for s in samples)
    means = model.generate(4, mean=True)
    assert all(((m >= 0) & (m <= 1)).all() for m in means)
    variance = model.posterior_variance(x, num_samples=2)
    assert variance.shape == (3,) and (variance >= 0).all()


def test_sequential_vae_gate_is_the_shortcut_and_learns():
    model = sequential_vae(2)
    z = torch.randn(3, 2)
    h1, h2 = model.decode([z, z])
    a = model.gates[0]
    new = model.decoders[1](torch.cat([z, model.features[0](h1)], -1))
    assert torch.allclose(h2, a * h1 + (1 - a) * new)
    x = model.preprocess(images(6))
    before = model.gates.detach().clone()
    svi = SVI(model.model, model.guide, Adam({"lr": 0.05}), Trace_ELBO(max_plate_nesting=1))
    for _ in range(3):
        svi.step(x)
    assert not torch.allclose(model.gates, before)  # the gates are in SVI's parameters
    names = set(pyro.get_param_store().keys())
    assert {model.param_name(n) for n, _ in model.named_parameters()} <= names


def test_sequential_vae_checkpoint_round_trip(tmp_path):
    model = sequential_vae(2)
    fit(model, images(8), epochs=1, batch_size=8, progress=False, out_dir=str(tmp_path))
    loaded = load_model(str(tmp_path / "checkpoint.pt"))
    assert isinstance(loaded, SequentialVAE) and loaded.steps == 2
    for (name, p), (_, q) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(p, q), name


# ---------------------------------------------------------------------------- examples
def test_sequential_vae_example_runs(tmp_path, capsys, load_example):
    example = load_example("sequential_vae")
    rows = example.main(example.Config(datasets=("digits",), steps=2, latent_dim=2, hidden=16,
                                       epochs=1, max_steps_per_epoch=2, eval_images=20,
                                       out=str(tmp_path)))
    assert [r[3] for r in rows] == [1, 2, 1]  # steps of the sequential model, then the baseline
    for row in rows:  # active units of z_t (of 2, the baseline's of 4), I(x; z_t), distortion_t
        units, dims, mi, distortion = row[-4:]
        assert 0 <= units <= dims == (2 if row[1].startswith("sequential") else 4)
        assert math.isfinite(mi) and math.isfinite(distortion) and distortion > 0
    out = capsys.readouterr().out
    assert "posterior variance" in out and "| active units of z_t | I(x; z_t) (nats) |" in out
    for model in ("sequential", "onestep"):
        for grid in ("samples.png", "reconstructions.png"):
            assert (tmp_path / "digits" / model / grid).stat().st_size > 0


def test_information_preference_example_runs(tmp_path, capsys, load_example):
    example = load_example("information_preference")
    finals = example.main(example.Config(
        dataset="digits", rounds=2, steps_per_round=1, latent_dim=2, hidden=8,
        pixel_channels=2, pixel_blocks=1, context_channels=1, mi_images=20, eval_images=10,
        samples=2, gibbs_steps=1, out=str(tmp_path)))
    assert [f["kind"] for f in finals] == ["elbo", "unregularized"]
    assert all(f["mi"] <= math.log(20) + 1e-6 for f in finals)
    for f in finals:  # rate (KL), distortion (per image and per pixel), active units of z
        assert all(math.isfinite(f[k]) for k in ("kl", "distortion", "nll", "active_units")), f
        assert 0 <= f["active_units"] <= 2 and f["distortion"] == pytest.approx(f["nll"] * 64)
    out = capsys.readouterr().out
    assert "I(x;z)" in out and "| NLL/pixel | active units |" in out
    for kind in ("elbo", "unregularized"):
        for grid in ("ancestral.png", "gibbs_chain.png"):
            assert (tmp_path / kind / grid).stat().st_size > 0
