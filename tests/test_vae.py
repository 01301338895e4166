"""The generic VAE, VAPNEV and the training loop."""

import itertools
import math
import os

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from flowvae.data import load_dataset
from flowvae.infer import bits_per_dim, elbo_per_datapoint, iwae_log_likelihood
from flowvae.models import VAE, VAPNEV
from flowvae.train import TrainingDiverged, fit, load_model

SMALL_FLOW = dict(hidden_channels=4, num_blocks=1)
KWARGS = {
    "flow": dict(likelihood_kwargs=dict(num_checkerboard=1, num_channelwise=1, num_final=1,
                                        **SMALL_FLOW)),
    "logistic": dict(likelihood_kwargs=dict(num_mixtures=2)),
}


def images(n, shape=(1, 8, 8)):
    return torch.randint(0, 256, (n, *shape), dtype=torch.uint8)


@pytest.mark.parametrize(
    "guide,likelihood,prior",
    [(g, lik, "normal") for g, lik in itertools.product(
        ["normal", "ar1", "flow"], ["bernoulli", "gaussian", "logistic", "flow"])]
    + [("normal", "bernoulli", "flow"), ("flow", "flow", "flow")],
)
def test_one_svi_step_for_every_guide_likelihood_prior(guide, likelihood, prior):
    channels = 3 if likelihood == "logistic" else 1  # the 3-channel coupled mixture too
    vae = VAE((channels, 8, 8), latent_dim=4, guide=guide, prior=prior, likelihood=likelihood,
              network="conv", hidden=8, guide_kwargs=dict(hidden_features=8) if guide == "flow"
              else None, prior_kwargs=dict(hidden_features=8) if prior == "flow" else None,
              **KWARGS.get(likelihood, {}))
    x = vae.preprocess(images(5, (channels, 8, 8)))
    elbo = Trace_ELBO(num_particles=2, vectorize_particles=True, max_plate_nesting=1)
    svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), elbo)
    assert math.isfinite(svi.step(x))
    assert vae.generate(2).shape == (2, channels, 8, 8)
    log_w = iwae_log_likelihood(vae.model, vae.guide, x, num_samples=4)
    assert log_w.shape == (5,) and torch.isfinite(log_w).all()


def test_vapnev_log_likelihood_equals_manual_flow_computation(float64):
    model = VAPNEV((1, 8, 8), latent_dim=3, hidden=4, flow_kwargs=SMALL_FLOW)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = model.preprocess(images(4))
    z = torch.randn(4, 3)
    loc, log_scale = model.decoder(z).chunk(2, dim=1)
    y = torch.log(0.05 + 0.9 * x) - torch.log1p(-(0.05 + 0.9 * x))
    v, flow_logdet = model.p_x.flow(y, context=z)
    logit_logdet = (math.log(0.9) - torch.log(0.05 + 0.9 * x) - torch.log(0.95 - 0.9 * x)
                    ).flatten(1).sum(1)
    manual = (torch.distributions.Normal(loc, log_scale.exp()).log_prob(v).flatten(1).sum(1)
              + flow_logdet + logit_logdet)
    assert torch.allclose(model.likelihood(z).log_prob(x), manual)
    # generation inverts exactly: the v of a generated image is recovered by the flow
    d = model.likelihood(z)
    generated = d.sample()
    noise = loc + log_scale.exp() * torch.randn_like(loc)
    generated = model.p_x.transform.inverse(noise, context=z)[0]
    assert torch.allclose(model.p_x.transform(generated, context=z)[0], noise, atol=1e-8)


def test_vapnev_bits_per_dim_agree_with_elbo_formula():
    model = VAPNEV((1, 8, 8), latent_dim=3, hidden=4, flow_kwargs=SMALL_FLOW)
    x = model.preprocess(images(6))
    torch.manual_seed(3)
    elbo = elbo_per_datapoint(model.model, model.guide, x)
    bpd = bits_per_dim(elbo, 64)
    expected = (-elbo + 64 * math.log(256)) / (64 * math.log(2))
    assert torch.allclose(bpd, expected)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_vapnev_svi_step_on_mnist_and_cifar_shapes(shape):
    model = VAPNEV(shape, latent_dim=8, hidden=4, flow_kwargs=SMALL_FLOW)
    svi = SVI(model.model, model.guide, Adam({"lr": 1e-3}), Trace_ELBO())
    x = model.preprocess(images(2, shape))
    losses = [svi.step(x) for _ in range(3)]
    assert all(map(math.isfinite, losses))
    assert losses[-1] < losses[0]


def digits_subset(n=256):
    return load_dataset("digits", "train").images[:n]


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    data = digits_subset(128)
    kwargs = dict(epochs=2, batch_size=32, progress=False, seed=3)

    def fresh():
        torch.manual_seed(0)
        return VAE((1, 8, 8), latent_dim=2, hidden=16, likelihood="gaussian")

    straight = fit(fresh(), data, out_dir=str(tmp_path / "a"), **kwargs)
    fit(fresh(), data, out_dir=str(tmp_path / "b"), **{**kwargs, "epochs": 1})
    pyro.set_rng_seed(999)  # whatever happens in between must not matter
    resumed = fit(fresh(), data, out_dir=str(tmp_path / "b"), resume=True, **kwargs)
    assert [r["train_nelbo"] for r in resumed] == [r["train_nelbo"] for r in straight]
    a = load_model(str(tmp_path / "a" / "checkpoint.pt"))
    b = load_model(str(tmp_path / "b" / "checkpoint.pt"))
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert (tmp_path / "b" / "metrics.csv").read_text().count("\n") == 3  # header + 2 epochs


def test_short_training_on_mnist_lowers_the_test_loss(data_root):
    train = load_dataset("mnist", "train", root=data_root).images[:6400]
    test = load_dataset("mnist", "test", root=data_root).images[:500]
    vae = VAE((1, 28, 28), latent_dim=8, hidden=128, likelihood="bernoulli")
    from flowvae.train import evaluate_elbo

    before = evaluate_elbo(vae, test)["nelbo"]
    history = fit(vae, train, test, epochs=2, batch_size=64, lr=2e-3, progress=False)
    assert history[-1]["test_nelbo"] < before - 100
    assert history[-1]["test_nelbo"] < history[0]["test_nelbo"]


def test_bad_inputs_raise_clear_errors(tmp_path):
    vae = VAE((1, 8, 8), latent_dim=2, hidden=8)
    with pytest.raises(ValueError, match=r"shape \(B, 1, 8, 8\), got \(2, 1, 28, 28\)"):
        fit(vae, images(4, (1, 28, 28)), epochs=1, progress=False)
    with pytest.raises(ValueError, match="uint8"):
        fit(vae, torch.rand(4, 1, 8, 8), epochs=1, progress=False)
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        load_model(str(tmp_path / "nowhere.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable flowvae checkpoint"):
        load_model(str(tmp_path / "junk.pt"))
    fit(vae, images(8), epochs=1, out_dir=str(tmp_path / "run"), progress=False)
    other = VAE((1, 8, 8), latent_dim=3, hidden=8)
    with pytest.raises(ValueError, match="config"):
        fit(other, images(8), epochs=2, out_dir=str(tmp_path / "run"), resume=True,
            progress=False)


def test_nan_loss_stops_training_naming_step_and_checkpoint(tmp_path):
    vae = VAE((1, 8, 8), latent_dim=2, hidden=8)
    out = str(tmp_path / "run")
    fit(vae, images(16), epochs=1, batch_size=8, out_dir=out, progress=False)
    before = os.path.getmtime(os.path.join(out, "checkpoint.pt"))
    with torch.no_grad():
        vae.decoder.net[0].weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match=r"step 1 .*checkpoint\.pt"):
        fit(vae, images(16), epochs=1, batch_size=8, out_dir=out, progress=False)
    assert os.path.getmtime(os.path.join(out, "checkpoint.pt")) == before


def test_flow_density_iwae_is_its_exact_log_likelihood(float64):
    from flowvae.models import FlowDensity

    model = FlowDensity((1, 8, 8), flow_kwargs=SMALL_FLOW)
    x = model.preprocess(images(3))
    exact = model.log_prob(x)
    assert torch.allclose(iwae_log_likelihood(model.model, model.guide, x, num_samples=3), exact)
    assert torch.allclose(elbo_per_datapoint(model.model, model.guide, x), exact)


def test_flow_density_trains():
    from flowvae.models import FlowDensity

    model = FlowDensity((1, 8, 8), flow_kwargs=SMALL_FLOW)
    data = digits_subset(128)
    history = fit(model, data, data, epochs=3, batch_size=32, lr=3e-3, progress=False)
    assert history[-1]["test_nelbo"] < history[0]["test_nelbo"] - 10
