"""Posterior flows (rNVP report): RealNVP, planar and diagonal guides inside the generic VAE."""

import math

import pytest
import torch
from nflows.transforms.base import InverseNotAvailable
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from torch.autograd.functional import jacobian
from torch.distributions import Normal

from flowvae.infer import elbo_per_datapoint, iwae_log_likelihood
from flowvae.models import VAE, posterior_flow_vae
from flowvae.models.flow_posterior import KINDS
from flowvae.parts import AmortizedPlanarFlow, FlowGuide, PlanarGuide, planar_u_hat

D = 4


def make_guide(kind, steps):
    """A guide with random (non-identity) flow parameters."""
    if kind == "planar":
        return PlanarGuide(D, num_steps=2 * steps)
    guide = FlowGuide(D, context_features=3, num_couplings=2 * steps, hidden_features=8)
    with torch.no_grad():
        for p in guide.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return guide


def manual_realnvp(guide, z, h):
    """Sampling direction of the couplings, one by one: ``z_B <- (z_B - t) exp(-s)``."""
    logdets = []
    for layer in reversed(guide.flow.flow._transforms):
        first, second = z[:, : layer.split_at], z[:, layer.split_at :]
        kept, changed = (first, second) if layer.parity == 0 else (second, first)
        raw, shift = layer.conditioner(kept, h).chunk(2, dim=1)
        log_s = layer.scale * torch.tanh(raw)
        changed = (changed - shift) * torch.exp(-log_s)
        z = torch.cat([kept, changed] if layer.parity == 0 else [changed, kept], dim=1)
        logdets.append(-log_s.sum(1))
    return z, logdets


def manual_planar(guide, z, params):
    """``z <- z + u_hat tanh(w^T z + b)``, ``log|1 + u_hat^T psi(z)|``, one step at a time."""
    logdets = []
    steps = params.view(z.shape[0], guide.flow.num_steps, 2 * D + 1)
    for k in range(guide.flow.num_steps):
        u, w, b = steps[:, k, :D], steps[:, k, D : 2 * D], steps[:, k, 2 * D]
        wu = (w * u).sum(1, keepdim=True)
        u_hat = u + (-1 + torch.log1p(wu.exp()) - wu) * w / (w * w).sum(1, keepdim=True)
        a = (w * z).sum(1) + b
        psi = (1 - torch.tanh(a) ** 2)[:, None] * w
        z = z + u_hat * torch.tanh(a)[:, None]
        logdets.append(torch.log(torch.abs(1 + (u_hat * psi).sum(1))))
    return z, logdets


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("kind", ["realnvp", "planar"])
def test_log_prob_of_own_sample_is_base_minus_layerwise_logdets(kind, steps, float64):
    guide = make_guide(kind, steps)
    params = torch.randn(6, guide.num_params)
    loc, log_scale, rest = params.split([D, D, guide.num_params - 2 * D], dim=-1)
    q = guide(params)
    torch.manual_seed(1)
    z = q.rsample()
    torch.manual_seed(1)
    z0 = loc + log_scale.exp() * torch.randn(6, D)  # the base draw rsample made
    manual = manual_planar if kind == "planar" else manual_realnvp
    z_manual, logdets = manual(guide, z0, rest)
    assert len(logdets) == 2 * steps
    assert torch.allclose(z, z_manual)
    base = Normal(loc, log_scale.exp()).log_prob(z0).sum(1)
    assert torch.allclose(q.log_prob(z), base - sum(logdets))
    # and the summed log-dets are those of the autograd Jacobian of z0 -> z
    for i in range(2):
        def flow(v, i=i):
            return manual(guide, v[None], rest[i : i + 1])[0][0]

        assert torch.allclose(torch.linalg.slogdet(jacobian(flow, z0[i]))[1], sum(logdets)[i])


def test_planar_constraint_keeps_every_step_invertible(float64):
    for scale in (1.0, 5.0):
        u, w = scale * torch.randn(2000, D), scale * torch.randn(2000, D)
        wu = (w * u).sum(1)
        wu_hat = (w * planar_u_hat(u, w)).sum(1)
        assert torch.allclose(wu_hat, -1 + torch.nn.functional.softplus(wu))  # m(w^T u)
        # w^T u_hat >= -1, up to rounding when softplus(w^T u) underflows next to 1
        assert (wu_hat >= -1 - 1e-9 * (1 + wu.abs())).all()
        psi_factor = 1 - torch.tanh(scale * torch.randn(2000)) ** 2  # h'(a) in (0, 1]
        if scale == 1.0:
            assert (wu_hat > -1).all() and (1 + psi_factor * wu_hat > 0).all()
        flow = AmortizedPlanarFlow(D, num_steps=3)
        _, logabsdet = flow.inverse(torch.randn(500, D),
                                    scale * torch.randn(500, flow.context_features))
        assert torch.isfinite(logabsdet).all()


def test_planar_log_prob_of_another_value_raises_clearly():
    q = PlanarGuide(D, num_steps=2)(torch.randn(3, PlanarGuide(D, 2).num_params))
    z = q.rsample()
    assert torch.isfinite(q.log_prob(z)).all()
    with pytest.raises(InverseNotAvailable, match="no closed-form inverse"):
        q.log_prob(z.clone())


@pytest.mark.parametrize("kind,steps", [("normal", 0), ("realnvp", 2), ("planar", 2)])
def test_one_vectorized_svi_step_per_guide_is_finite_and_trains_the_guide(kind, steps):
    vae = posterior_flow_vae(kind, steps, (1, 8, 8), latent_dim=D, hidden=16, flow_hidden=8)
    x = vae.preprocess(torch.randint(0, 2, (5, 1, 8, 8), dtype=torch.uint8))
    elbo = Trace_ELBO(num_particles=3, vectorize_particles=True, max_plate_nesting=1)
    svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), elbo)
    before = [p.detach().clone() for p in vae.encoder.parameters()]
    assert math.isfinite(svi.step(x))
    assert all(not torch.equal(b, p) for b, p in zip(before, vae.encoder.parameters()))
    if kind == "realnvp":
        assert all(p.grad is not None for p in vae.q.parameters())


@pytest.mark.parametrize("kind,steps", [("normal", 0), ("realnvp", 1), ("planar", 1)])
def test_iwae_is_at_least_the_elbo_on_average(kind, steps):
    vae = posterior_flow_vae(kind, steps, (1, 8, 8), latent_dim=D, hidden=16, flow_hidden=8)
    with torch.no_grad():
        for p in vae.q.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = vae.preprocess(torch.randint(0, 2, (8, 1, 8, 8), dtype=torch.uint8))
    elbo = torch.stack([elbo_per_datapoint(vae.model, vae.guide, x) for _ in range(20)])
    iwae = torch.stack([iwae_log_likelihood(vae.model, vae.guide, x, num_samples=16)
                        for _ in range(20)])
    assert torch.isfinite(elbo).all() and torch.isfinite(iwae).all()
    assert iwae.mean() > elbo.mean()


def test_builder_configurations_and_rebuild_from_config():
    assert KINDS == ("normal", "realnvp", "planar")
    realnvp = posterior_flow_vae("realnvp", 3, (1, 8, 8), latent_dim=D, hidden=16)
    assert len(realnvp.q.flow.flow._transforms) == 6  # 2 couplings per step
    planar = posterior_flow_vae("planar", 3, (1, 8, 8), latent_dim=D, hidden=16)
    assert planar.q.flow.num_steps == 6
    rebuilt = VAE(**planar.config)
    rebuilt.load_state_dict(planar.state_dict())
    for kind, steps in (("normal", 1), ("planar", 0), ("iaf", 1)):
        with pytest.raises(ValueError):
            posterior_flow_vae(kind, steps, (1, 8, 8))


@pytest.mark.parametrize("binarize", ["dynamic", "fixed"])
def test_example_trains_evaluates_and_prints_the_table(binarize, data_root, tmp_path, capsys,
                                                       monkeypatch, load_example):
    monkeypatch.setenv("FLOWVAE_DATA", data_root)
    example = load_example("posterior_flows")
    config = example.Config(binarize=binarize, steps=(1,), epochs=1, max_steps_per_epoch=2,
                            latent_dim=D, hidden=16, flow_hidden=8, iwae=3, eval_images=20,
                            out=str(tmp_path))
    rows = example.main(config)
    assert [row["model"] for row in rows] == ["normal", "realnvp-k1", "planar-k1"]
    for row in rows:
        assert row["nll"] <= row["nelbo"] + 5 and row["recon"] > 0
        keys = ["distortion", "rate_z", "active_units_z"]
        keys += ["mutual_info_z"] if row["model"] != "planar-k1" else []  # q known at its draws
        assert all(math.isfinite(row[key]) for key in keys), row
        assert 0 <= row["active_units_z"] <= D
    out = capsys.readouterr().out
    assert "test NLL (IWAE, K=3)" in out and "| rate KL | active units | I(x; z) |" in out
    for name in ("samples.png", "training_curve.png"):
        assert (tmp_path / "planar-k1" / name).stat().st_size > 0, name
