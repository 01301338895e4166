"""Every model configuration under every Pyro ELBO, as a Pyro user would train it.

For each model class of ``flowvae.models.MODELS`` and each guide, prior and likelihood option of
``VAE`` (tiny sizes, 8x8 random ``uint8`` images), and each of ``Trace_ELBO``,
``TraceMeanField_ELBO``, ``JitTrace_ELBO``, vectorized particles and ``RenyiELBO(alpha=0)``:

* the gradient of ``SVI.step`` (Pyro's ``loss_and_grads`` on the parameters Pyro finds) equals
  the gradient that :func:`flowvae.train.fit` takes (:class:`~flowvae.train.DifferentiableELBO`
  on :func:`~flowvae.train.trainable_parameters`), parameter by parameter, at a fixed seed;
* after a few ``SVI`` steps every parameter with a non-zero gradient has changed;
* ``Predictive`` returns prior- and posterior-predictive draws of the documented shapes that
  differ from the data.
"""

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import (
    SVI,
    JitTrace_ELBO,
    Predictive,
    RenyiELBO,
    Trace_ELBO,
    TraceMeanField_ELBO,
)
from pyro.optim import Adam

from flowvae.models import MODELS, SRVAE, VAE, VAPNEV, FlowDensity, FlowPriorVAE, SequentialVAE
from flowvae.models.sequential import observed_site
from flowvae.parts import GUIDES, LIKELIHOODS, PRIORS
from flowvae.train import DifferentiableELBO, initialize_on_data, trainable_parameters

SHAPE = (1, 8, 8)
BATCH = 4
FLOW = dict(hidden_channels=4, num_blocks=1, num_checkerboard=1, num_channelwise=1,
            num_final=1)
DENSE = dict(hidden=4, growth=4, num_layers=1, num_mixtures=2,
             flow_kwargs=dict(hidden_channels=4, num_blocks=1, num_scales=1))
VECTOR_FLOW = dict(hidden_features=8, num_couplings=2)


def vae(**kwargs):
    return lambda: VAE(SHAPE, latent_dim=2, hidden=8, **kwargs)


CONFIGS = {
    "vae": vae(),
    "guide=ar1": vae(guide="ar1"),
    "guide=flow": vae(guide="flow", guide_kwargs=dict(context_features=4, actnorm=True,
                                                      **VECTOR_FLOW)),
    "guide=delta": vae(guide="delta"),
    "guide=planar": vae(guide="planar", guide_kwargs=dict(num_steps=2)),
    "prior=flow": vae(prior="flow", prior_kwargs=VECTOR_FLOW),
    "likelihood=gaussian": vae(likelihood="gaussian",
                               likelihood_kwargs=dict(dequantization="variational")),
    "likelihood=logistic": vae(likelihood="logistic", likelihood_kwargs=dict(num_mixtures=2)),
    "likelihood=flow": vae(likelihood="flow", likelihood_kwargs=FLOW),
    "likelihood=pixelcnn": vae(likelihood="pixelcnn",
                               likelihood_kwargs=dict(hidden_channels=4, num_blocks=1)),
    "beta+mmd": vae(beta=2.0, mmd_weight=10.0),
    "vapnev": lambda: VAPNEV(SHAPE, latent_dim=2, hidden=4, flow_kwargs=FLOW),
    "flow_density": lambda: FlowDensity(SHAPE, flow_kwargs=FLOW),
    "flow_prior_vae": lambda: FlowPriorVAE(SHAPE, latent_shape=(2, 4, 4), **DENSE),
    "srvae": lambda: SRVAE(SHAPE, latent_shape=(2, 2, 2), **DENSE),
    "sequential_vae": lambda: SequentialVAE(SHAPE, steps=2, latent_dim=2, hidden=8),
}

# every other registered likelihood at its defaults: a new likelihood file is tested here too
for _name in LIKELIHOODS:
    if _name != "bernoulli":
        CONFIGS.setdefault(f"likelihood={_name}", vae(likelihood=_name))

ELBOS = {
    "trace": lambda: Trace_ELBO(max_plate_nesting=1),
    "meanfield": lambda: TraceMeanField_ELBO(max_plate_nesting=1),
    "jit": lambda: JitTrace_ELBO(max_plate_nesting=1, ignore_jit_warnings=True),
    "particles": lambda: Trace_ELBO(num_particles=4, vectorize_particles=True,
                                    max_plate_nesting=1),
    "renyi": lambda: RenyiELBO(alpha=0, num_particles=2, max_plate_nesting=1),
}


def test_the_matrix_covers_every_model_class_and_option():

    built = {name: make() for name, make in CONFIGS.items()}
    assert {type(m) for m in built.values()} >= set(MODELS.values())
    options = {(key, m.config[key]) for m in built.values() if type(m) is VAE
               for key in ("guide", "prior", "likelihood")}
    expected = {("guide", g) for g in GUIDES} | {("prior", p) for p in PRIORS} | {
        ("likelihood", lik) for lik in LIKELIHOODS}
    assert expected <= options


def build(name):
    pyro.set_rng_seed(0)
    model = CONFIGS[name]()
    raw = torch.randint(0, 256, (BATCH, *SHAPE), dtype=torch.uint8)
    initialize_on_data(model, raw)  # as fit does; ActNorm in the guide's flow included
    return model, raw, model.preprocess(raw)


def grads(params):
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params]


@pytest.mark.parametrize("elbo_name", list(ELBOS))
@pytest.mark.parametrize("name", list(CONFIGS))
def test_svi_trains_every_parameter_with_fits_gradient(name, elbo_name):
    model, raw, x = build(name)
    params = trainable_parameters(model, raw)
    elbo = ELBOS[elbo_name]()
    # fit takes any ELBO with a differentiable loss (not RenyiELBO)
    fit_objective = DifferentiableELBO(model, ELBOS[elbo_name]()) if hasattr(
        elbo, "differentiable_loss") else None
    # one bound method each, as SVI holds them: JitTrace_ELBO keys its compiled graph on ids
    program = model.model, model.guide
    if elbo_name == "jit":  # compile first: compiling runs the program more than once
        elbo.loss_and_grads(*program, x)
        fit_objective(x)

    # SVI's gradient, on the parameters SVI.step finds (the param sites it captures)
    for p in params:
        p.grad = None
    pyro.set_rng_seed(1)
    with poutine.trace(param_only=True) as capture:
        elbo.loss_and_grads(*program, x)
    found = {id(site["value"].unconstrained()) for site in capture.trace.nodes.values()}
    svi_grads = grads(params)
    moving = [p for p, g in zip(params, svi_grads) if g.abs().sum() > 0]
    assert moving, "no parameter has a gradient"
    missed = [n for n, p in model.named_parameters() if any(p is q for q in moving)
              and id(p) not in found]
    assert not missed, f"parameters with a gradient that SVI does not update: {missed}"

    if fit_objective is not None:
        for p in params:
            p.grad = None
        pyro.set_rng_seed(1)
        fit_objective(x).backward()
        for ours, theirs in zip(grads(params), svi_grads):
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)

    before = [p.detach().clone() for p in moving]
    svi = SVI(model.model, model.guide, Adam({"lr": 1e-2}), elbo)
    for _ in range(2):
        svi.step(x)
    stuck = [n for n, p in model.named_parameters() for q, old in zip(moving, before)
             if p is q and torch.equal(p.detach(), old)]
    assert not stuck, f"parameters with a gradient that did not change: {stuck}"


@pytest.mark.parametrize("name", list(CONFIGS))
def test_predictive_draws_prior_and_posterior_predictive_images(name):
    model, _, x = build(name)
    site = observed_site(model.steps) if isinstance(model, SequentialVAE) else "x"
    samples = 3
    prior = Predictive(model.model, num_samples=samples)(batch_size=BATCH)
    posterior = Predictive(poutine.uncondition(model.model), guide=model.guide,
                           num_samples=samples)(x)
    for draws in (prior, posterior):
        assert draws[site].shape == (samples, BATCH, *SHAPE)
        assert torch.isfinite(draws[site]).all()
        assert all(not torch.equal(d, x) for d in draws[site])
    assert not torch.equal(prior[site][0], prior[site][1])


# ---------------------------------------------------------------------------- the failures
def svi_steps(model, x, steps=3, elbo=None, lr=1e-2):
    svi = SVI(model.model, model.guide, Adam({"lr": lr}),
              elbo or Trace_ELBO(max_plate_nesting=1))
    return [svi.step(x) for _ in range(steps)]


@pytest.mark.parametrize("elbo", [Trace_ELBO, JitTrace_ELBO])
def test_posterior_flow_couplings_scales_train_under_plain_svi(elbo):
    from flowvae.models import posterior_flow_vae

    model = posterior_flow_vae("realnvp", 1, SHAPE, latent_dim=2, hidden=8, flow_hidden=8,
                               context_features=4)
    x = model.preprocess(torch.randint(0, 256, (BATCH, *SHAPE), dtype=torch.uint8))
    scales = {n: p.detach().clone() for n, p in model.named_parameters()
              if n.endswith(".scale")}
    assert len(scales) == 2
    svi_steps(model, x, elbo=elbo(max_plate_nesting=1, **(
        dict(ignore_jit_warnings=True) if elbo is JitTrace_ELBO else {})))
    for n, p in model.named_parameters():
        if n in scales:
            assert not torch.equal(p.detach(), scales[n]), n
            assert model.param_name(n) in pyro.get_param_store()


def test_two_models_of_one_class_train_side_by_side():
    raw = torch.randint(0, 256, (BATCH, *SHAPE), dtype=torch.uint8)
    first, second = CONFIGS["vae"](), CONFIGS["vae"]()
    x = first.preprocess(raw)
    svi_steps(first, x)
    before = {n: p.detach().clone() for n, p in second.named_parameters()}
    losses = svi_steps(second, x, steps=20)  # no pyro.clear_param_store() in between
    assert losses[-1] < losses[0]
    assert all(not torch.equal(p, before[n]) for n, p in second.named_parameters())


def test_state_dict_and_param_store_round_trips(tmp_path):
    raw = torch.randint(0, 256, (BATCH, *SHAPE), dtype=torch.uint8)
    make = lambda: VAE(SHAPE, latent_dim=2, hidden=8, guide="flow", name="saved")  # noqa: E731
    model = make()
    x = model.preprocess(raw)
    svi_steps(model, x)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    pyro.get_param_store().save(tmp_path / "store.pt")
    expected = {n: p.detach().clone() for n, p in model.named_parameters()}

    pyro.clear_param_store()  # a new process: a fresh model, then the saved weights
    restored = make()
    restored.load_state_dict(torch.load(tmp_path / "model.pt"))
    for n, p in restored.named_parameters():
        assert torch.equal(p, expected[n]), n

    pyro.clear_param_store()
    fresh = make()
    pyro.get_param_store().load(tmp_path / "store.pt")
    assert fresh.load_param_store() == len(expected)
    for n, p in fresh.named_parameters():
        assert torch.equal(p, expected[n]), n
    svi_steps(fresh, x, steps=1)  # and SVI trains the module itself again
    assert all(not torch.equal(p, expected[n]) for n, p in fresh.named_parameters()
               if n.startswith("encoder"))


def test_guide_only_actnorm_is_initialised_before_the_first_gradient_step():
    model, raw, x = build("guide=flow")  # initialize_on_data, as fit, or a user's loop, calls
    norms = [m for m in model.q.flow.modules() if hasattr(m, "initialized")]
    assert norms and all(bool(m.initialized) for m in norms)
    z = model.posterior(x).sample()
    model.eval()
    before = model.posterior(x).log_prob(z)
    model.train()
    model.posterior(x).log_prob(z)  # a first log_prob in training mode changes nothing now
    model.eval()
    torch.testing.assert_close(model.posterior(x).log_prob(z), before)


def test_first_svi_step_initialises_a_guide_only_actnorm_before_its_gradient():
    pyro.set_rng_seed(0)
    model = CONFIGS["guide=flow"]()
    x = model.preprocess(torch.randint(0, 256, (BATCH, *SHAPE), dtype=torch.uint8))
    svi_steps(model, x, steps=1)
    norms = [m for m in model.q.flow.modules() if hasattr(m, "initialized")]
    assert all(bool(m.initialized) for m in norms)


def _flow_distribution():
    from flowvae import ConditionalRealNVP, FlowDistribution

    flow = ConditionalRealNVP((3,), context_features=2, hidden_features=8)
    for p in flow.parameters():  # away from the identity start, so that the flow matters
        torch.nn.init.normal_(p, std=0.3)
    context = torch.randn(5, 2)
    return flow, lambda: FlowDistribution(flow, torch.zeros(3), torch.ones(3), context=context)


def test_flow_distribution_scores_a_no_grad_sample_with_gradients():
    flow, make = _flow_distribution()
    params = list(flow.parameters())
    d = make()
    x = d.sample()  # drawn without gradients: its cached log-density has none
    ours = torch.autograd.grad(d.log_prob(x).sum(), params)
    expected = torch.autograd.grad(make().log_prob(x).sum(), params)
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b)
    assert sum(b.abs().sum() for b in expected) > 0


def test_flow_distribution_cache_follows_an_optimizer_step():
    flow, make = _flow_distribution()
    d = make()
    x = d.rsample()
    loss = -d.log_prob(x).sum()
    loss.backward()
    torch.optim.SGD(flow.parameters(), lr=0.1).step()
    torch.testing.assert_close(d.log_prob(x), make().log_prob(x))
    assert not torch.allclose(d.log_prob(x), -loss.detach() / 5 * torch.ones(5))


def test_nflows_transform_module_in_a_training_loop_and_in_svi():
    import pyro.distributions as dist

    from flowvae import ConditionalRealNVP
    from flowvae.distributions import NflowsTransformModule

    flow = ConditionalRealNVP((3,), hidden_features=8)
    bridge = NflowsTransformModule(flow)
    base = dist.Normal(torch.zeros(3), torch.ones(3)).to_event(1)
    d = dist.TransformedDistribution(base, [bridge])
    data = torch.randn(32, 3) * 2 + 1
    optim = torch.optim.Adam(flow.parameters(), lr=0.05)
    for _ in range(3):  # the second step used to backward through a freed graph
        optim.zero_grad()
        (-d.log_prob(data).mean()).backward()
        optim.step()
    fresh = dist.TransformedDistribution(base, [NflowsTransformModule(flow)])
    torch.testing.assert_close(d.log_prob(data), fresh.log_prob(data))  # not the old weights
    y = d.rsample((4,))
    torch.testing.assert_close(d.log_prob(y), fresh.log_prob(y.detach().clone()))

    def model(data):
        pyro.module("bridge", bridge)
        with pyro.plate("data", len(data)):
            pyro.sample("x", d, obs=data)

    svi = SVI(model, lambda data: None, Adam({"lr": 0.05}), Trace_ELBO())
    losses = [svi.step(data) for _ in range(5)]
    assert losses[-1] < losses[0]


# ------------------------------------------------- saving, loading and copying (issue 28)
#: the models of issue 28, each built with a fixed ``name``; ActNorm and srVAE carry buffers
NAMED = {
    "vapnev": lambda name: VAPNEV(SHAPE, latent_dim=2, hidden=4, flow_kwargs=FLOW, name=name),
    "likelihood=flow": lambda name: VAE(SHAPE, latent_dim=2, hidden=8, likelihood="flow",
                                        likelihood_kwargs=FLOW, name=name),
    "guide=flow+actnorm": lambda name: VAE(
        SHAPE, latent_dim=2, hidden=8, guide="flow", name=name,
        guide_kwargs=dict(context_features=4, actnorm=True, **VECTOR_FLOW)),
    "flow_density": lambda name: FlowDensity(SHAPE, flow_kwargs=FLOW, name=name),
    "flow_prior_vae": lambda name: FlowPriorVAE(SHAPE, latent_shape=(2, 4, 4), name=name,
                                                **DENSE),
    "srvae": lambda name: SRVAE(SHAPE, latent_shape=(2, 2, 2), name=name, **DENSE),
    "sequential_vae": lambda name: SequentialVAE(SHAPE, steps=2, latent_dim=2, hidden=8,
                                                 name=name),
}


def trained(make, raw, steps=2):
    """A model trained a few SVI steps (after fit's data-dependent initialisation), its SVI."""
    pyro.set_rng_seed(0)
    model = make()
    initialize_on_data(model, raw)
    svi = SVI(model.model, model.guide, Adam({"lr": 1e-2}), Trace_ELBO(max_plate_nesting=1))
    x = model.preprocess(raw)
    for _ in range(steps):
        svi.step(x)
    return model, svi, x


def continued(model, svi, x, steps=2):
    pyro.set_rng_seed(1)  # the same draws in the uninterrupted and the resumed run
    for _ in range(steps):
        svi.step(x)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_the_named_models_cover_every_model_class():
    assert {type(make("m")) for make in NAMED.values()} >= set(MODELS.values())


@pytest.mark.parametrize("key", list(NAMED))
def test_save_and_load_param_store_restore_everything_and_resume_bit_exactly(key, tmp_path):
    raw = torch.randint(0, 256, (BATCH, *SHAPE), dtype=torch.uint8)
    make = lambda: NAMED[key]("saved")  # noqa: E731
    model, svi, x = trained(make, raw)
    model.save_param_store(tmp_path / "model.pt", optim=svi.optim)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    assert any(True for _ in model.buffers()) or key == "sequential_vae"
    uninterrupted = continued(model, svi, x)

    pyro.clear_param_store()  # a new process: a fresh model (other weights), then the file
    pyro.set_rng_seed(7)
    fresh = make()
    optim = Adam({"lr": 1e-2})
    assert fresh.load_param_store(tmp_path / "model.pt", optim=optim) == len(saved)
    restored = fresh.state_dict()
    assert restored.keys() == saved.keys()
    for k, v in saved.items():  # every parameter and buffer (ActNorm's initialized too)
        assert torch.equal(restored[k], v), k
    fresh.train()  # a training-mode pass must not re-initialise restored ActNorms
    svi = SVI(fresh.model, fresh.guide, optim, Trace_ELBO(max_plate_nesting=1))
    resumed = continued(fresh, svi, x)
    for k, v in uninterrupted.items():
        assert torch.equal(resumed[k], v), k
    assert any(not torch.equal(v, saved[k]) for k, v in resumed.items())


def test_a_saved_model_loads_under_another_name_with_its_optimizer_state(tmp_path):
    raw = torch.randint(0, 256, (BATCH, *SHAPE), dtype=torch.uint8)
    model, svi, x = trained(lambda: NAMED["vapnev"]("first"), raw)
    model.save_param_store(tmp_path / "model.pt", optim=svi.optim)
    uninterrupted = continued(model, svi, x)
    pyro.clear_param_store()
    other, optim = NAMED["vapnev"]("second"), Adam({"lr": 1e-2})
    other.load_param_store(tmp_path / "model.pt", optim=optim)
    resumed = continued(other, SVI(other.model, other.guide, optim,
                                   Trace_ELBO(max_plate_nesting=1)), x)
    for k, v in uninterrupted.items():
        assert torch.equal(resumed[k], v), k


def test_param_store_files_of_another_model_are_refused_in_one_line(tmp_path):
    NAMED["flow_density"]("a").save_param_store(tmp_path / "density.pt")
    with pytest.raises(ValueError, match=r"holds a FlowDensity, not a VAE$"):
        NAMED["likelihood=flow"]("b").load_param_store(tmp_path / "density.pt")
    bigger = FlowDensity(SHAPE, flow_kwargs=dict(FLOW, hidden_channels=8))
    with pytest.raises(ValueError, match="does not fit this FlowDensity"):
        bigger.load_param_store(tmp_path / "density.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not a file of PyroModel.save_param_store"):
        bigger.load_param_store(tmp_path / "other.pt")


def test_pyros_store_route_copies_parameters_under_every_module_path_and_warns(tmp_path):
    """The former route: the store keeps whichever path a shared flow was read under."""
    raw = torch.randint(0, 256, (BATCH, *SHAPE), dtype=torch.uint8)
    model, svi, x = trained(lambda: NAMED["vapnev"]("stored"), raw)
    expected = {n: p.detach().clone() for n, p in model.named_parameters()}
    pyro.get_param_store().save(tmp_path / "store.pt")
    pyro.clear_param_store()
    fresh = NAMED["vapnev"]("stored")
    pyro.get_param_store().load(tmp_path / "store.pt")
    with pytest.warns(UserWarning, match="param store holds no buffers"):
        assert fresh.load_param_store() == len(expected)
    for n, p in fresh.named_parameters():
        assert torch.equal(p, expected[n]), n


class _Payload:
    """Runs ``touch <marker>`` when unpickled without restriction."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def _planted(path, state):
    """``state`` with the payload hidden among its tensors, saved to ``path``."""
    torch.save({**state, "extra": [_Payload(path.parent / "pwned")]}, path)
    return path


def _checkpoint_state(model):
    from flowvae.train.checkpoint import write_checkpoint

    return write_checkpoint, {"model": type(model).__name__, "config": model.config,
                              "state_dict": model.state_dict()}


def _load_through(route, model, path):
    from flowvae.train import fit, load_model, read_checkpoint

    if route == "load_param_store":
        return model.load_param_store(path)
    if route == "read_checkpoint":
        return read_checkpoint(str(path))
    if route == "fit_resume":  # fit(resume=True) reads out_dir/checkpoint.pt
        path.rename(path.parent / "checkpoint.pt")
        raw = torch.randint(0, 256, (BATCH, *SHAPE), dtype=torch.uint8)
        return fit(model, raw, epochs=2, batch_size=BATCH, out_dir=str(path.parent),
                   resume=True, progress=False)
    return load_model(str(path))


@pytest.mark.parametrize("route", ["load_param_store", "read_checkpoint", "load_model",
                                   "checkpoint_payload", "fit_resume"])
@pytest.mark.parametrize("key", list(NAMED))
def test_a_planted_payload_never_runs_through_a_documented_loading_path(key, route, tmp_path):
    model = NAMED[key]("target")
    path = tmp_path / "file.pt"
    if route == "load_param_store":
        model.save_param_store(path)
        _planted(path, torch.load(path, weights_only=True))
    elif route in ("checkpoint_payload", "fit_resume"):  # in a checksummed envelope
        write, state = _checkpoint_state(model)
        write(str(path), {**state, "extra": [_Payload(tmp_path / "pwned")]})
        route = "load_model" if route == "checkpoint_payload" else route
    else:  # a flowvae 0.3 checkpoint, no envelope
        _planted(path, _checkpoint_state(model)[1])
    with pytest.raises(ValueError, match=r"holds a (posix|nt)\.system, which is not plain"):
        _load_through(route, model, path)
    assert not (tmp_path / "pwned").exists()
    if route == "load_param_store":  # the payload is live: an unrestricted load runs it
        torch.load(path, weights_only=False)
        assert (tmp_path / "pwned").exists()


@pytest.mark.parametrize("key", list(NAMED))
def test_a_deep_copy_trains_on_its_own(key):
    import copy

    raw = torch.randint(0, 256, (BATCH, *SHAPE), dtype=torch.uint8)
    original, _, x = trained(lambda: NAMED[key](None), raw, steps=1)
    twin = copy.deepcopy(original)
    assert twin.name != original.name and type(twin) is type(original)
    loss = Trace_ELBO(max_plate_nesting=1).differentiable_loss(twin.model, twin.guide, x)
    params = dict(twin.named_parameters())
    gradients = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    moving = {n for n, g in zip(params, gradients) if g is not None and bool(g.abs().sum() > 0)}
    assert moving
    before = {n: p.detach().clone() for n, p in original.state_dict().items()}
    start = {n: p.detach().clone() for n, p in params.items()}
    svi_steps(twin, x, steps=2)
    for n, p in twin.named_parameters():
        assert n not in moving or not torch.equal(p, start[n]), n
    for n, p in original.state_dict().items():  # not one tensor of the original changed
        assert torch.equal(p, before[n]), n


def test_copy_takes_a_name_and_name_works_on_every_model_class():
    raw = torch.randint(0, 256, (BATCH, *SHAPE), dtype=torch.uint8)
    for key, make in NAMED.items():
        model = make(f"given_{key}")
        assert model.name == f"given_{key}" and "name" not in model.config
        clone = model.copy(name=f"copy_{key}")
        assert clone.name == f"copy_{key}"
        initialize_on_data(clone, raw)
        svi_steps(clone, clone.preprocess(raw), steps=1)
        names = list(pyro.get_param_store().keys())
        assert names and all(not n.startswith(f"given_{key}.") for n in names), key
        assert any(n.startswith(f"copy_{key}.") for n in names), key
        pyro.clear_param_store()
