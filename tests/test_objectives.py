"""Generalized objectives against Pyro's ELBOs, closed forms and hand-computed traces."""

import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from pyro.optim import Adam
from torch.distributions import constraints

from flowvae.infer.objectives import KINDS, OBJECTIVES, GeneralizedELBO, mmd
from flowvae.models import VAE

D_Z, D_X, BATCH = 2, 3, 5
PARAMS = ("loc", "scale", "prior_loc")


@pytest.fixture
def linear_gaussian(float64):
    """z ~ N(m, I), x ~ N(W z, s^2 I); guide N(loc, scale) per data point. ``m`` is a model
    parameter that only the prior uses. Returns model, guide, x and the closed-form -ELBO."""
    torch.manual_seed(3)
    w, s = torch.randn(D_X, D_Z), 0.7
    x = torch.randn(BATCH, D_X)
    loc0, scale0 = 0.5 * torch.randn(BATCH, D_Z), 0.3 + torch.rand(BATCH, D_Z)

    def model(x):
        m = pyro.param("prior_loc", torch.full((D_Z,), 0.2))
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(m, 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ w.T, s).to_event(1), obs=x)

    def guide(x):
        loc = pyro.param("loc", loc0)
        scale = pyro.param("scale", scale0, constraint=constraints.positive)
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def closed_form_loss():
        loc, scale, m = (pyro.param(n).detach() for n in PARAMS)
        resid = x - loc @ w.T
        spread = scale**2 @ (w**2).T  # E_q (Wz - W loc)^2 per output
        rec = (-0.5 * (resid**2 + spread) / s**2 - math.log(s * math.sqrt(2 * math.pi))).sum()
        kl = 0.5 * (scale**2 + (loc - m) ** 2 - 1 - 2 * scale.log()).sum()
        return float(kl - rec)

    return model, guide, x, closed_form_loss


def _loss_and_grads(objective, model, guide, x, seed=7):
    pyro.set_rng_seed(seed)
    loss = objective.differentiable_loss(model, guide, x)
    params = [pyro.param(n).unconstrained() for n in PARAMS]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return loss.detach(), dict(zip(PARAMS, grads))


def _assert_same(a, b):
    loss_a, grads_a = a
    loss_b, grads_b = b
    assert torch.allclose(loss_a, loss_b, rtol=1e-10, atol=1e-10)
    for name in PARAMS:
        ga, gb = grads_a[name], grads_b[name]
        if ga is None or gb is None:
            assert ga is None and gb is None or (ga if gb is None else gb).abs().max() == 0
        else:
            assert torch.allclose(ga, gb, rtol=1e-10, atol=1e-10), name


def _manual_terms(model, guide, x, seed=7):
    """Sum of log p(x|z), log p(z), log q(z|x) from hand-made traces with the same draws."""
    pyro.set_rng_seed(seed)
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    z = guide_trace.nodes["z"]["value"]
    log_lik = model_trace.nodes["x"]["fn"].log_prob(x).sum()
    log_prior = model_trace.nodes["z"]["fn"].log_prob(z).sum()
    log_q = guide_trace.nodes["z"]["fn"].log_prob(z).sum()
    return log_lik, log_prior, log_q


# ---------------------------------------------------------------------------- elbo
@pytest.mark.parametrize("num_particles,vectorize", [(1, False), (3, False), (3, True)])
def test_elbo_equals_pyro_trace_elbo(linear_gaussian, num_particles, vectorize):
    model, guide, x, _ = linear_gaussian
    kw = dict(num_particles=num_particles, vectorize_particles=vectorize, max_plate_nesting=1)
    ours = _loss_and_grads(GeneralizedELBO("elbo", **kw), model, guide, x)
    theirs = _loss_and_grads(Trace_ELBO(**kw), model, guide, x)
    _assert_same(ours, theirs)
    pyro.set_rng_seed(2)
    loss = GeneralizedELBO("elbo", **kw).loss(model, guide, x)
    pyro.set_rng_seed(2)
    assert loss == pytest.approx(Trace_ELBO(**kw).loss(model, guide, x), rel=1e-12)


def test_analytic_kl_equals_pyro_trace_mean_field_elbo(linear_gaussian):
    model, guide, x, _ = linear_gaussian
    ours = _loss_and_grads(GeneralizedELBO("elbo", analytic_kl=True, max_plate_nesting=1),
                           model, guide, x)
    theirs = _loss_and_grads(TraceMeanField_ELBO(max_plate_nesting=1), model, guide, x)
    _assert_same(ours, theirs)


@pytest.mark.parametrize("analytic_kl", [False, True])
def test_elbo_is_the_closed_form_negative_elbo_in_expectation(linear_gaussian, analytic_kl):
    model, guide, x, closed_form_loss = linear_gaussian
    n = 2000
    with pyro.plate("draws", n, dim=-2):  # the spread of one estimate, for the tolerance
        guide_trace = poutine.trace(guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    z = guide_trace.nodes["z"]["value"]
    per_draw = (model_trace.nodes["x"]["fn"].log_prob(x).sum(-1)
                + model_trace.nodes["z"]["fn"].log_prob(z).sum(-1)
                - guide_trace.nodes["z"]["fn"].log_prob(z).sum(-1))
    stderr = float(per_draw.detach().std()) / math.sqrt(n)
    objective = GeneralizedELBO("elbo", analytic_kl=analytic_kl, num_particles=n,
                                vectorize_particles=True, max_plate_nesting=1)
    assert abs(objective.loss(model, guide, x) - closed_form_loss()) < 4 * stderr


# ---------------------------------------------------------------------------- beta
def test_beta_one_is_elbo_and_beta_zero_is_unregularized(linear_gaussian):
    model, guide, x, _ = linear_gaussian
    kw = dict(num_particles=2, vectorize_particles=True, max_plate_nesting=1)
    _assert_same(_loss_and_grads(GeneralizedELBO("beta", beta=1.0, **kw), model, guide, x),
                 _loss_and_grads(GeneralizedELBO("elbo", **kw), model, guide, x))
    _assert_same(_loss_and_grads(GeneralizedELBO("beta", beta=0.0, **kw), model, guide, x),
                 _loss_and_grads(GeneralizedELBO("unregularized", **kw), model, guide, x))


@pytest.mark.parametrize("beta", [0.0, 0.3, 2.5])
def test_beta_loss_is_reconstruction_plus_beta_times_log_ratio(linear_gaussian, beta):
    model, guide, x, _ = linear_gaussian
    log_lik, log_prior, log_q = _manual_terms(model, guide, x, seed=11)
    pyro.set_rng_seed(11)
    loss = GeneralizedELBO("beta", beta=beta, max_plate_nesting=1).differentiable_loss(
        model, guide, x)
    expected = -log_lik + beta * (log_q - log_prior)
    assert torch.allclose(loss, expected, rtol=1e-12)


def test_beta_objective_equals_the_vae_own_beta(float64):
    shape, beta = (1, 8, 8), 0.3
    scaled = VAE(shape, latent_dim=2, hidden=8, beta=beta)
    plain = VAE(shape, latent_dim=2, hidden=8, beta=1.0)
    plain.load_state_dict(scaled.state_dict())
    images = torch.randint(0, 256, (6, *shape), dtype=torch.uint8)
    x = scaled.preprocess(images).to(torch.float64)

    def run(vae, objective):
        pyro.clear_param_store()
        pyro.set_rng_seed(5)
        loss = objective.differentiable_loss(vae.model, vae.guide, x)
        vae.zero_grad()
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in vae.named_parameters()}

    loss_a, grads_a = run(scaled, Trace_ELBO(max_plate_nesting=1))
    loss_b, grads_b = run(plain, GeneralizedELBO("beta", beta=beta, max_plate_nesting=1))
    assert torch.allclose(loss_a, loss_b, rtol=1e-10)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], rtol=1e-8, atol=1e-12), name


# ---------------------------------------------------------------------------- unregularized
def test_unregularized_is_the_reconstruction_term_only(linear_gaussian):
    model, guide, x, _ = linear_gaussian
    log_lik, _, _ = _manual_terms(model, guide, x, seed=4)
    loss, grads = _loss_and_grads(GeneralizedELBO("unregularized", max_plate_nesting=1),
                                  model, guide, x, seed=4)
    assert torch.allclose(loss, -log_lik, rtol=1e-12)
    # no KL: the prior-only parameter gets no gradient; z's sample still carries one to q
    assert grads["prior_loc"] is None or grads["prior_loc"].abs().max() == 0
    assert grads["loc"].abs().min() > 0 and grads["scale"].abs().min() > 0
    _, elbo_grads = _loss_and_grads(GeneralizedELBO("elbo", max_plate_nesting=1),
                                    model, guide, x, seed=4)
    assert elbo_grads["prior_loc"].abs().min() > 0


# ---------------------------------------------------------------------------- mmd()
def _brute_force_mmd(x, y, h, unbiased):
    def k(a, b):
        return math.exp(-sum((ai - bi) ** 2 for ai, bi in zip(a, b)) / h)

    x, y = x.tolist(), y.tolist()
    n, m = len(x), len(y)
    pairs_x = [(i, j) for i in range(n) for j in range(n) if not (unbiased and i == j)]
    pairs_y = [(i, j) for i in range(m) for j in range(m) if not (unbiased and i == j)]
    xx = sum(k(x[i], x[j]) for i, j in pairs_x) / len(pairs_x)
    yy = sum(k(y[i], y[j]) for i, j in pairs_y) / len(pairs_y)
    xy = sum(k(a, b) for a, b in itertools.product(x, y)) / (n * m)
    return xx + yy - 2 * xy


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("bandwidth", [None, 0.7])
def test_mmd_matches_a_double_loop(float64, unbiased, bandwidth):
    x, y = torch.randn(5, 3), torch.randn(4, 3) + 0.5
    h = 2 * 3 if bandwidth is None else bandwidth
    expected = _brute_force_mmd(x, y, h, unbiased)
    assert float(mmd(x, y, bandwidth, unbiased)) == pytest.approx(expected, rel=1e-12)


def test_mmd_zero_for_identical_samples_and_larger_when_shifted(float64):
    x = torch.randn(200, 2)
    assert float(mmd(x, x)) == 0.0  # biased: the squared distance of equal empirical laws
    assert abs(float(mmd(x, x, unbiased=True))) < 0.05  # unbiased: O(1/N) negative
    same_law = mmd(x, torch.randn(200, 2))
    shifted = [float(mmd(x, torch.randn(200, 2) + d)) for d in (0.5, 1.0, 2.0)]
    assert same_law < shifted[0] < shifted[1] < shifted[2]
    assert abs(float(mmd(x, torch.randn(200, 2), unbiased=True))) < 0.02


def test_mmd_batches_over_leading_dims(float64):
    x, y = torch.randn(3, 6, 2), torch.randn(3, 4, 2)
    batched = mmd(x, y, unbiased=True)
    assert batched.shape == (3,)
    for i in range(3):
        assert torch.allclose(batched[i], mmd(x[i], y[i], unbiased=True))
    with pytest.raises(ValueError):
        mmd(x, torch.randn(3, 4, 5))
    with pytest.raises(ValueError):
        mmd(x[:, :1], y, unbiased=True)


# ---------------------------------------------------------------------------- mmd objective
@pytest.mark.parametrize("num_particles", [1, 3])
def test_mmd_objective_adds_weighted_mmd_of_posterior_and_prior_draws(linear_gaussian,
                                                                      num_particles):
    model, guide, x, _ = linear_gaussian
    beta, weight = 0.5, 3.0
    vec = num_particles > 1
    kw = dict(num_particles=num_particles, vectorize_particles=vec, max_plate_nesting=1)
    pyro.set_rng_seed(9)
    loss = GeneralizedELBO("mmd", beta=beta, mmd_weight=weight, **kw).differentiable_loss(
        model, guide, x)
    pyro.set_rng_seed(9)
    base = GeneralizedELBO("beta", beta=beta, **kw).differentiable_loss(model, guide, x)
    # the same draws by hand: guide, replayed model, then one prior draw per data point
    pyro.set_rng_seed(9)
    with pyro.plate("num_particles_vectorized", num_particles, dim=-2):
        guide_trace = poutine.trace(guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    z = guide_trace.nodes["z"]["value"].reshape(num_particles, BATCH, D_Z)
    prior = model_trace.nodes["z"]["fn"].expand((num_particles, BATCH))
    z_prior = prior.rsample().reshape(num_particles, BATCH, D_Z)
    term = sum(_brute_force_mmd(z[p], z_prior[p], 2 * D_Z, False)
               for p in range(num_particles)) / num_particles
    assert float((loss - base).detach()) == pytest.approx(weight * BATCH * term, rel=1e-10)


# ---------------------------------------------------------------------------- SVI, errors
def _vae():
    return VAE((1, 8, 8), latent_dim=2, hidden=8)


def _binary_images(vae, n):
    return vae.preprocess(torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8))


@pytest.mark.parametrize("kind", KINDS)
def test_svi_step_on_the_vae_is_finite_for_every_kind(kind):
    vae = _vae()
    x = _binary_images(vae, 8)
    objective = OBJECTIVES[kind](num_particles=2, vectorize_particles=True, max_plate_nesting=1)
    assert objective.kind == kind
    svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), objective)
    assert math.isfinite(svi.step(x)) and math.isfinite(svi.evaluate_loss(x))


def test_mmd_training_pulls_the_aggregate_posterior_to_the_prior():
    vae = _vae()
    x = _binary_images(vae, 64)
    with torch.no_grad():  # start with q(z|x) centred far from the prior
        vae.encoder.net[-1].bias[:2] += 1.5

    def aggregate_mmd():
        with torch.no_grad():
            gen = torch.Generator().manual_seed(0)
            q = vae.posterior(x)
            loc, scale = q.base_dist.loc, q.base_dist.scale
            z = loc + scale * torch.randn(loc.shape, generator=gen)
            return float(mmd(z, torch.randn(z.shape, generator=gen)))

    before = aggregate_mmd()
    objective = GeneralizedELBO("mmd", mmd_weight=100.0, max_plate_nesting=1)
    svi = SVI(vae.model, vae.guide, Adam({"lr": 2e-2}), objective)
    for _ in range(30):
        svi.step(x)
    after = aggregate_mmd()
    assert before > 0.2 and after < before / 4


def test_non_reparameterized_latents(float64):
    """Score-function terms: ``elbo`` matches Trace_ELBO; ``mmd`` refuses."""

    def model(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Bernoulli(0.3))
            pyro.sample("x", dist.Normal(2 * z, 1.0), obs=x)

    def guide(x):
        p = pyro.param("p", torch.full(x.shape, 0.6), constraint=constraints.unit_interval)
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.Bernoulli(p))

    x = torch.tensor([0.1, 1.9, 2.5])

    def loss_and_grad(objective):
        pyro.set_rng_seed(1)
        loss = objective.differentiable_loss(model, guide, x)
        return loss, torch.autograd.grad(loss, pyro.param("p").unconstrained())[0]

    kw = dict(num_particles=4, vectorize_particles=True, max_plate_nesting=1)
    ours, theirs = loss_and_grad(GeneralizedELBO(**kw)), loss_and_grad(Trace_ELBO(**kw))
    assert torch.allclose(ours[0], theirs[0]) and torch.allclose(ours[1], theirs[1])
    with pytest.raises(NotImplementedError, match="reparameterized"):
        loss_and_grad(GeneralizedELBO("mmd", **kw))


def test_argument_checks(linear_gaussian):
    model, guide, x, _ = linear_gaussian
    with pytest.raises(ValueError, match="kind"):
        GeneralizedELBO("kl")
    with pytest.raises(ValueError, match="beta"):
        GeneralizedELBO("elbo", beta=0.5)
    with pytest.raises(ValueError, match="mmd_weight"):
        GeneralizedELBO("beta", mmd_weight=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        GeneralizedELBO("beta", beta=-1.0)
    with pytest.raises(KeyError, match="'w'"):
        GeneralizedELBO("beta", latent_site="w", max_plate_nesting=1).loss(model, guide, x)
    every = GeneralizedELBO("beta", beta=0.0, latent_site=None, max_plate_nesting=1)
    pyro.set_rng_seed(0)
    unreg = GeneralizedELBO("unregularized", max_plate_nesting=1).loss(model, guide, x)
    pyro.set_rng_seed(0)
    assert every.loss(model, guide, x) == pytest.approx(unreg, rel=1e-12)


# ------------------------------------------------- free bits, warm-up: by hand from the traces
def _normal_kl(q, p):
    """Closed-form ``KL(N(a, s) || N(b, t))`` per coordinate, written out."""
    a, s, b, t = q.loc, q.scale, p.loc, p.scale
    return torch.log(t / s) + (s**2 + (a - b) ** 2) / (2 * t**2) - 0.5


def _by_hand(model, guide, x, seed, kl_weight=1.0, free_bits=0.0, group="dimension"):
    """``-ELBO`` with the latent ``z``'s KL shaped as the docstring says, from hand-made traces
    with the same draws: every other site's ``log p - log q`` as it is; ``z``'s Monte-Carlo KL
    (``free_bits=0``), or per group ``max(free_bits N, KL_g)`` (``site``: the Monte-Carlo KL of
    the batch; ``dimension``: the closed-form Normal KL of each coordinate, summed over the
    batch), times ``kl_weight``."""
    from pyro.poutine.util import site_is_subsample

    pyro.set_rng_seed(seed)
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)

    def terms(trace):
        return {name: site["scale"] * site["fn"].log_prob(site["value"]).sum()
                for name, site in trace.nodes.items()
                if site["type"] == "sample" and not site_is_subsample(site)}

    log_p, log_q = terms(model_trace), terms(guide_trace)
    elbo = sum(v for k, v in log_p.items() if k != "z") - sum(v for k, v in log_q.items()
                                                              if k != "z")
    q, p, z = guide_trace.nodes["z"]["fn"], model_trace.nodes["z"]["fn"], \
        guide_trace.nodes["z"]["value"]
    n = z.shape[0]
    if free_bits and group == "dimension":
        per_dim = _normal_kl(q.base_dist, p.base_dist).expand(z.shape).sum(0)
        kl = torch.clamp(per_dim, min=free_bits * n).sum()
    else:
        kl = log_q["z"] - log_p["z"]
        if free_bits:
            kl = torch.clamp(kl, min=free_bits * n)
    return -(elbo - kl_weight * kl)


def _per_dim_kl(model, guide, x):
    """The batch-summed closed-form KL of each coordinate of z (to place free bits between)."""
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    q, p = guide_trace.nodes["z"]["fn"], model_trace.nodes["z"]["fn"]
    z = guide_trace.nodes["z"]["value"]
    return _normal_kl(q.base_dist, p.base_dist).expand(z.shape).sum(0).detach()


def _created_params(model, guide, x):
    """The linear-Gaussian parameters, created by one pass of the guide and the model."""
    poutine.trace(poutine.replay(model, trace=poutine.trace(guide).get_trace(x))).get_trace(x)
    return [pyro.param(n).unconstrained() for n in PARAMS]


def _value_and_grads(loss, params):
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return loss.detach(), [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def _assert_equal_to_hand(objective, hand, model, guide, x, params, seed=7):
    pyro.set_rng_seed(seed)
    ours = _value_and_grads(objective.differentiable_loss(model, guide, x), params)
    theirs = _value_and_grads(hand(), params)
    assert torch.allclose(ours[0], theirs[0], rtol=1e-10, atol=1e-10)
    for a, b in zip(ours[1], theirs[1]):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-10)
    return ours


@pytest.mark.parametrize("group", ["dimension", "site"])
def test_free_bits_equal_the_hand_computed_clamped_kl(linear_gaussian, group):
    """A threshold between the coordinates' KLs: the clamped groups pass no gradient."""
    model, guide, x, _ = linear_gaussian
    kl = _per_dim_kl(model, guide, x)
    free = float(kl.min() + kl.max()) / 2 / BATCH if group == "dimension" else \
        float(kl.sum()) / BATCH * 4  # above the site's KL: all of it clamped
    objective = GeneralizedELBO("elbo", free_bits=free, free_bits_group=group,
                                max_plate_nesting=1)
    params = [pyro.param(n).unconstrained() for n in PARAMS]
    _, grads = _assert_equal_to_hand(
        objective, lambda: _by_hand(model, guide, x, 7, free_bits=free, group=group),
        model, guide, x, params)
    if group == "site":  # all clamped: the prior's parameter gets nothing
        assert grads[2].abs().max() == 0
    else:
        assert grads[2].abs().max() > 0


def test_kl_warmup_weights_the_kl_by_the_step_and_counts_steps(linear_gaussian):
    model, guide, x, _ = linear_gaussian
    objective = GeneralizedELBO("elbo", warmup_steps=4, max_plate_nesting=1)
    objective.step = 1
    params = _created_params(model, guide, x)
    _assert_equal_to_hand(objective, lambda: _by_hand(model, guide, x, 7, kl_weight=0.25),
                          model, guide, x, params)
    assert objective.step == 2  # one step with gradients
    with torch.no_grad():
        objective.differentiable_loss(model, guide, x)
    assert objective.step == 2 and objective.kl_weight == 0.5


def test_loss_and_grads_give_the_differentiable_loss_gradient(linear_gaussian):
    """Pyro's SVI route (``loss_and_grads``) and ``loss`` agree with the differentiable loss."""
    model, guide, x, _ = linear_gaussian
    kw = dict(free_bits=0.2, free_bits_group="dimension", num_particles=3,
              vectorize_particles=True, max_plate_nesting=1)
    params = _created_params(model, guide, x)
    pyro.set_rng_seed(9)
    value, grads = _value_and_grads(
        GeneralizedELBO("elbo", **kw).differentiable_loss(model, guide, x), params)
    pyro.set_rng_seed(9)
    with poutine.trace(param_only=True):
        loss = GeneralizedELBO("elbo", **kw).loss_and_grads(model, guide, x)
    assert isinstance(loss, float) and loss == pytest.approx(float(value), rel=1e-12)
    for p, g in zip(params, grads):
        assert torch.allclose(p.grad, g, rtol=1e-10, atol=1e-12)
    pyro.set_rng_seed(9)
    assert GeneralizedELBO("elbo", **kw).loss(model, guide, x) == pytest.approx(float(value),
                                                                                rel=1e-12)


def _tiny_vapnev():
    from flowvae.models import VAPNEV
    from flowvae.train import initialize_on_data

    torch.manual_seed(0)
    module = VAPNEV((1, 4, 4), latent_dim=3, hidden=4,
                    flow_kwargs=dict(hidden_channels=4, num_blocks=1))
    images = torch.randint(0, 256, (5, 1, 4, 4), dtype=torch.uint8)
    initialize_on_data(module, images)
    return module, module.preprocess(images)


@pytest.mark.parametrize("objective", ["trace", "free-bits"])
def test_the_vapnev_objectives_equal_the_hand_computed_ones(float64, objective):
    """The main job's objective (free bits, 1 nat per dimension) and the plain ELBO of
    ``fit(elbo="trace")``, on a tiny VAPNEV: value and every parameter's gradient."""
    from flowvae.infer.device_elbo import DeviceTrace_ELBO

    module, x = _tiny_vapnev()
    module.double()
    x = x.double()
    params = list(module.parameters())
    with torch.no_grad():  # away from the zero-initialised layers, so that every layer learns
        for p in params:
            p.add_(0.05 * torch.randn_like(p))
    if objective == "trace":
        elbo, hand = DeviceTrace_ELBO(max_plate_nesting=1), {}
    else:
        elbo = GeneralizedELBO("elbo", free_bits=1.0, free_bits_group="dimension",
                               max_plate_nesting=1)
        hand = dict(free_bits=1.0, group="dimension")
    _, grads = _assert_equal_to_hand(
        elbo, lambda: _by_hand(module.model, module.guide, x, 3, **hand),
        module.model, module.guide, x, params, seed=3)
    assert sum(int(g.abs().max() > 0) for g in grads) > len(grads) // 2
