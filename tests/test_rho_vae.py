"""rho-VAE: the AR(1) guide against its closed forms, and the four variants' objectives."""

import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from pyro.optim import Adam
from torch.distributions import MultivariateNormal, kl_divergence

from flowvae.infer import GeneralizedELBO, mmd
from flowvae.models.rho_vae import GUIDES, VARIANTS, rho_vae
from flowvae.parts import AR1Guide, DiagonalNormalGuide

SHAPE = (1, 8, 8)


def observations(vae, n):
    """``n`` random images preprocessed for ``vae``, in torch's default dtype."""
    x = vae.preprocess(torch.randint(0, 256, (n, *SHAPE), dtype=torch.uint8))
    return x.to(torch.get_default_dtype())


def explicit_covariance(scale, rho, d):
    """``D T D`` written out entry by entry, independently of :class:`AR1Normal`."""
    sigma = scale.expand(*scale.shape[:-1], d)
    lag = (torch.arange(d)[:, None] - torch.arange(d)[None, :]).abs().to(scale.dtype)
    return sigma[..., :, None] * rho[..., None, None] ** lag * sigma[..., None, :]


def ar1_params(d, log_scale, raw_rho):
    """Encoder outputs of the AR(1) guide: ``d`` means, log-scale(s), pre-tanh rho."""
    loc = torch.linspace(-1, 1, d).expand(len(raw_rho), d)
    return torch.cat([loc, log_scale, raw_rho[:, None]], -1)


@pytest.mark.parametrize("per_dim_scale", [False, True])
def test_guide_samples_have_the_ar1_covariance(float64, per_dim_scale):
    d, n = 5, 200_000
    guide = AR1Guide(d, per_dim_scale=per_dim_scale)
    width = d if per_dim_scale else 1
    log_scale = torch.tensor([[0.3], [-0.4]]) + torch.linspace(0, 0.5 * per_dim_scale, width)
    params = ar1_params(d, log_scale, torch.tensor([1.1, -0.6]))
    q = guide(params)
    assert q.batch_shape == (2,) and q.rho.shape == (2,)  # rho is (N,), never (N, 1)
    z = q.rsample((n,))
    centred = z - z.mean(0)
    empirical = torch.einsum("nbi,nbj->bij", centred, centred) / (n - 1)
    expected = explicit_covariance(log_scale.exp(), torch.tanh(torch.tensor([1.1, -0.6])), d)
    torch.testing.assert_close(q.covariance_matrix, expected)
    torch.testing.assert_close(empirical, expected, atol=0.02, rtol=0)
    torch.testing.assert_close(z.mean(0), q.loc, atol=0.01, rtol=0)


def test_rho_zero_is_the_diagonal_guide_with_a_shared_scale(float64):
    d = 6
    log_scale = torch.tensor([[0.2], [-0.7], [0.0]])
    q_ar1 = AR1Guide(d)(ar1_params(d, log_scale, torch.zeros(3)))
    loc = torch.linspace(-1, 1, d).expand(3, d)
    q_diag = DiagonalNormalGuide(d)(torch.cat([loc, log_scale.expand(3, d)], -1))
    pyro.set_rng_seed(7)
    z_ar1 = q_ar1.rsample((4,))
    pyro.set_rng_seed(7)
    z_diag = q_diag.rsample((4,))
    torch.testing.assert_close(z_ar1, z_diag)
    torch.testing.assert_close(q_ar1.log_prob(z_ar1), q_diag.log_prob(z_ar1))
    prior = dist.Normal(torch.zeros(d), 1.0).to_event(1)
    torch.testing.assert_close(kl_divergence(q_ar1, prior), kl_divergence(q_diag, prior))


@pytest.mark.parametrize("objective", ["meanfield", "generalized"])
def test_training_kl_is_the_closed_form(float64, objective):
    """A model without observations: the loss is exactly KL(q || p), with no sampling noise."""
    d, n = 5, 3
    params = ar1_params(d, torch.tensor([[0.3], [-0.2], [0.5]]), torch.tensor([1.5, -0.8, 0.3]))
    guide_net = AR1Guide(d)

    def model():
        with pyro.plate("data", n):
            pyro.sample("z", dist.Normal(torch.zeros(d), 1.0).to_event(1))

    def guide():
        with pyro.plate("data", n):
            pyro.sample("z", guide_net(params))

    elbo = (TraceMeanField_ELBO(max_plate_nesting=1) if objective == "meanfield"
            else GeneralizedELBO("elbo", analytic_kl=True, max_plate_nesting=1))
    losses = []
    for seed in (0, 1):
        pyro.set_rng_seed(seed)
        losses.append(elbo.loss(model, guide))
    q = guide_net(params)
    explicit = MultivariateNormal(q.loc, explicit_covariance(q.scale, q.rho, d))
    standard = MultivariateNormal(torch.zeros(d), torch.eye(d))
    expected = kl_divergence(explicit, standard).sum().item()
    assert losses[0] == pytest.approx(expected, rel=1e-10)
    assert losses[1] == losses[0]  # no Monte-Carlo term for z
    assert Trace_ELBO().loss(model, guide) != pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("variant,guide", list(itertools.product(VARIANTS, GUIDES)))
def test_one_svi_step_per_variant_and_guide(variant, guide):
    vae, elbo = rho_vae(variant, guide, SHAPE, latent_dim=4, hidden=8)
    other, _ = rho_vae(variant, "normal" if guide == "ar1" else "ar1", SHAPE, 4, hidden=8)
    differs = {k for k in vae.config if vae.config[k] != other.config[k]}
    assert differs == {"guide"}  # the guide is the only difference in each pair
    x = observations(vae, 16)
    svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), elbo)
    assert math.isfinite(svi.step(x))
    assert elbo.analytic_kl and (vae.config["network"] == "conv") == (variant == "conv")


def _paired_losses(objective, vae, x, seed=3, **plain_weights):
    """The loss of ``vae`` and, at the same seed, of the same networks with ``plain_weights``
    (e.g. ``beta=1.0``: the plain VAE)."""
    pyro.set_rng_seed(seed)
    first = objective.loss(vae.model, vae.guide, x)
    saved = {name: getattr(vae, name) for name in plain_weights}
    for name, value in plain_weights.items():
        setattr(vae, name, value)
    pyro.set_rng_seed(seed)
    try:
        return first, objective.loss(vae.model, vae.guide, x)
    finally:
        for name, value in saved.items():
            setattr(vae, name, value)


@pytest.mark.parametrize("objective", ["returned", "meanfield"])
@pytest.mark.parametrize("guide", GUIDES)
def test_beta_vae_weights_the_kl_by_beta(float64, guide, objective):
    vae, elbo = rho_vae("beta", guide, SHAPE, latent_dim=4, hidden=8, beta=4.0)
    x = observations(vae, 16)
    if objective == "meanfield":  # the weight is in the model: Pyro's own ELBO sees it
        elbo = TraceMeanField_ELBO(max_plate_nesting=1)
    loss_beta, loss_plain = _paired_losses(elbo, vae, x, beta=1.0)
    kl = kl_divergence(vae.posterior(x), dist.Normal(torch.zeros(4), 1.0).to_event(1)).sum()
    assert kl > 0.1
    assert loss_beta - loss_plain == pytest.approx(3.0 * kl.item(), rel=1e-8)


@pytest.mark.parametrize("objective", ["returned", "meanfield"])
@pytest.mark.parametrize("guide", GUIDES)
def test_infovae_adds_lambda_n_mmd_of_the_aggregate_posterior(float64, guide, objective):
    vae, elbo = rho_vae("infovae", guide, SHAPE, latent_dim=4, hidden=8, mmd_weight=100.0)
    x = observations(vae, 16)
    if objective == "meanfield":
        elbo = TraceMeanField_ELBO(max_plate_nesting=1)
    loss_info, loss_plain = _paired_losses(elbo, vae, x, mmd_weight=0.0)
    pyro.set_rng_seed(3)  # the draws of the loss: z ~ q(z|x_i), then the prior's
    z = vae.posterior(x).rsample()
    z_prior = dist.Normal(torch.zeros(16, 4), 1.0).to_event(1).rsample()
    expected = 100.0 * 16 * mmd(z, z_prior).item()
    assert expected > 1.0
    assert loss_info - loss_plain == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("elbo", [Trace_ELBO, TraceMeanField_ELBO])
def test_variants_train_differently_under_plain_pyro_elbos(elbo):
    """The issue's failure: beta and infovae trained exactly like vanilla under Pyro's ELBOs."""
    losses = {}
    for variant in ("vanilla", "beta", "infovae"):
        pyro.set_rng_seed(0)
        vae, _ = rho_vae(variant, "ar1", SHAPE, latent_dim=4, hidden=8)
        pyro.set_rng_seed(1)
        x = observations(vae, 16)
        svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-2}), elbo(max_plate_nesting=1))
        losses[variant] = [svi.step(x) for _ in range(3)]
    assert losses["beta"] != losses["vanilla"] and losses["infovae"] != losses["vanilla"]


def test_generalized_elbo_has_the_gradient_of_plain_svi(float64):
    vae, elbo = rho_vae("infovae", "ar1", SHAPE, latent_dim=4, hidden=8, mmd_weight=10.0)
    vae.beta = 2.0  # both weights at once
    x = observations(vae, 16)
    grads = []
    for objective in (elbo, TraceMeanField_ELBO(max_plate_nesting=1)):
        pyro.set_rng_seed(5)
        loss = objective.differentiable_loss(vae.model, vae.guide, x)
        grads.append(torch.autograd.grad(loss, list(vae.parameters())))
    for ours, pyros in zip(*grads):
        torch.testing.assert_close(ours, pyros, rtol=1e-10, atol=1e-12)


def test_rho_vae_rejects_unknown_settings():
    with pytest.raises(ValueError, match="variant"):
        rho_vae("wae", "ar1", SHAPE)
    with pytest.raises(ValueError, match="guide"):
        rho_vae("vanilla", "flow", SHAPE)
    with pytest.raises(ValueError, match="per_dim_scale"):
        rho_vae("vanilla", "normal", SHAPE, per_dim_scale=True)
    with pytest.raises(ValueError, match="network"):
        rho_vae("vanilla", "ar1", SHAPE, network="conv")


def test_example_runs_every_pair(tmp_path, capsys, monkeypatch, data_root, load_example):
    monkeypatch.setenv("FLOWVAE_DATA", data_root)
    example = load_example("rho_vae")

    config = example.Config(datasets=("mnist",), seeds=(0,), epochs=1, train_size=50,
                            eval_images=10, batch_size=50, hidden=16, iwae=2, out=str(tmp_path))
    runs = example.main(config)
    assert len(runs) == 8
    assert all(math.isfinite(r["curve"][-1]["iwae_nll"]) for r in runs.values())
    for r in runs.values():  # the latent diagnostics of every epoch's evaluation
        final = r["curve"][-1]
        assert all(math.isfinite(final[k]) for k in ("rate_z", "distortion", "active_units_z",
                                                     "mutual_info_z")), final
        assert 0 <= final["active_units_z"] <= config.latent_dim
    out = capsys.readouterr().out
    assert "| mnist/infovae | iwae_nll |" in out
    for key in ("rate_z", "distortion", "active_units_z", "mutual_info_z"):
        assert f"| mnist/conv | {key} |" in out, key
    for name in ("test_loss.png", "mnist/results.json", "mnist/samples-conv-ar1.png"):
        assert (tmp_path / name).stat().st_size > 0, name
