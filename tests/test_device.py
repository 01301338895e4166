"""Every transform, distribution and model runs with its parameters and data on one device.

On ``meta`` (tensors with shapes and no values) any tensor made on the CPU inside the code, and
any value read on the host (``.item()``, the truth of a tensor), is an error. With Pyro's
validation off (it gates every host-side value check), the ELBO, a training step of
:func:`flowvae.train.fit`, sampling, reconstruction, the IWAE bound and the per-point ELBO run
there; so on a GPU the step queues its kernels without waiting for the device. The same tests
run on ``cuda`` where there is one, with the values compared to the CPU's.
"""

import copy
from dataclasses import dataclass
from typing import Callable, Tuple

import pyro
import pytest
import torch
from test_transforms import CASES, built, inputs_for

from flowvae.distributions import FlowDistribution
from flowvae.infer import elbo_per_datapoint, iwae_log_likelihood
from flowvae.infer.device_elbo import DeviceTrace_ELBO
from flowvae.models import (
    SRVAE,
    VAE,
    VAPNEV,
    FlowDensity,
    FlowPriorVAE,
    SequentialVAE,
    posterior_flow_vae,
)
from flowvae.parts import LIKELIHOODS
from flowvae.train import DifferentiableELBO, initialize_on_data, training_step
from flowvae.transforms import ConditionalRealNVP

DEVICES = ["meta", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))]


@pytest.fixture
def no_validation():
    """Pyro's validation off: value checks (and their host reads) are skipped."""
    pyro.enable_validation(False)
    yield
    pyro.enable_validation(True)


@pytest.fixture(autouse=True)
def exact_cuda_math():
    """No TF32 in CUDA matmuls and convolutions while values are compared with the CPU's."""
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def on(device, *tensors):
    return [None if t is None else t.to(device) for t in tensors]


def check_against_cpu(device, got, expected, atol=1e-4):
    """On meta only the shape and device can be checked; elsewhere the values too."""
    assert got.shape == expected.shape and got.device.type == device
    if device != "meta":
        assert torch.allclose(got.cpu(), expected, atol=atol, rtol=1e-4)


# ------------------------------------------------------------------------------ transforms
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_transform_forward_inverse_and_gradient_on_the_device(device, case, no_validation):
    transform = built(case).train()  # training mode: ActNorm's first-pass branch is read
    x, ctx = inputs_for(case, 3)
    y, logdet = transform(x, context=ctx)
    back, _ = transform.inverse(y, context=ctx)
    moved = copy.deepcopy(transform).to(device)
    xd, cd = on(device, x, ctx)
    yd, logdet_d = moved(xd, context=cd)
    check_against_cpu(device, yd, y.detach())
    check_against_cpu(device, logdet_d, logdet.detach())
    check_against_cpu(device, moved.inverse(yd, context=cd)[0], back.detach())
    if list(moved.parameters()):
        (yd.sum() + logdet_d.sum()).backward()
    assert all(p.grad is not None and p.grad.device.type == device
               for p in moved.parameters())
    assert all(b.device.type == device for b in moved.buffers())


@pytest.mark.parametrize("device", DEVICES)
def test_a_fresh_actnorm_initialises_on_the_device(device, no_validation):
    """The bug this file was written for: the flag was written as a new CPU tensor."""
    from flowvae.transforms import ActNorm

    norm = ActNorm(2).to(device)
    norm(torch.randn(8, 2, 3, 3, device=device))
    assert norm.initialized.device.type == device
    if device != "meta":
        assert bool(norm.initialized)


# ---------------------------------------------------------------------------- distributions
@pytest.mark.parametrize("device", DEVICES)
def test_flow_distribution_samples_and_scores_on_the_device(device, no_validation):
    flow = ConditionalRealNVP((3,), context_features=2, hidden_features=8)
    loc, scale, ctx = torch.zeros(3), torch.ones(3), torch.randn(5, 2)
    flow_d = copy.deepcopy(flow).to(device)
    d = FlowDistribution(flow_d, *on(device, loc, scale, ctx))
    x = d.rsample((4,))
    assert x.shape == (4, 5, 3) and x.device.type == device
    expected = FlowDistribution(flow, loc, scale, ctx).log_prob(x.cpu()) if device != "meta" \
        else torch.empty(4, 5)
    check_against_cpu(device, d.log_prob(x.clone()), expected.detach())


# ---------------------------------------------------------------------------------- models
SMALL_FLOW = dict(hidden_channels=4, num_blocks=1)
FLOW_LIKELIHOOD = dict(num_checkerboard=1, num_channelwise=1, num_final=1, **SMALL_FLOW)
TINY_SR = dict(hidden=8, growth=4, num_layers=1, num_mixtures=2, flow_kwargs=SMALL_FLOW)


@dataclass
class Model:
    name: str  # also which distributions it exercises
    build: Callable
    reconstructs: bool = True


MODELS = [
    Model("vae-mlp-bernoulli", lambda: VAE((1, 8, 8), latent_dim=2, hidden=8)),
    Model("vae-ar1-guide-gaussian", lambda: VAE((1, 8, 8), latent_dim=4, guide="ar1",
                                                likelihood="gaussian", hidden=8)),
    Model("vae-conv-logistic-mixture-3ch", lambda: VAE(
        (3, 8, 8), latent_dim=4, likelihood="logistic", network="conv", hidden=8,
        likelihood_kwargs=dict(num_mixtures=2))),
    Model("vae-flow-guide-prior-likelihood", lambda: VAE(
        (1, 8, 8), latent_dim=4, guide="flow", prior="flow", likelihood="flow", network="conv",
        hidden=8, guide_kwargs=dict(hidden_features=8), prior_kwargs=dict(hidden_features=8),
        likelihood_kwargs=FLOW_LIKELIHOOD)),
    Model("vae-dense-tensor-latent", lambda: VAE(
        (1, 8, 8), latent_dim=(2, 4, 4), network="dense", likelihood="logistic", hidden=8,
        likelihood_kwargs=dict(num_mixtures=2), network_kwargs=dict(growth=4, num_layers=1))),
    Model("vapnev", lambda: VAPNEV((1, 8, 8), latent_dim=3, hidden=4, flow_kwargs=SMALL_FLOW)),
    Model("vapnev-variational-dequantization", lambda: VAPNEV(
        (1, 8, 8), latent_dim=3, hidden=4, flow_kwargs=SMALL_FLOW,
        dequantization="variational")),
    Model("flow-density", lambda: FlowDensity((1, 8, 8), flow_kwargs=SMALL_FLOW),
          reconstructs=False),
    Model("flow-prior-vae", lambda: FlowPriorVAE((1, 16, 16), (2, 4, 4), **TINY_SR)),
    Model("srvae", lambda: SRVAE((1, 16, 16), (2, 4, 4), **TINY_SR)),
    Model("vae-pixelcnn", lambda: VAE((1, 6, 6), latent_dim=2, hidden=8, likelihood="pixelcnn",
                                      likelihood_kwargs=dict(hidden_channels=4, num_blocks=1,
                                                             kernel_size=3, context_channels=2))),
    Model("sequential-vae", lambda: SequentialVAE((1, 6, 6), steps=2, latent_dim=2, hidden=8,
                                                  feature_dim=4)),
    Model("planar-posterior", lambda: posterior_flow_vae("planar", 2, (1, 8, 8), latent_dim=2,
                                                         hidden=8)),
    Model("realnvp-posterior", lambda: posterior_flow_vae("realnvp", 2, (1, 8, 8),
                                                          latent_dim=2, hidden=8, flow_hidden=8)),
]

# every other registered likelihood in the generic VAE: a new likelihood file is tested here too
_COVERED = {"bernoulli", "gaussian", "logistic", "flow", "pixelcnn"}
MODELS += [Model(f"vae-{name}", lambda name=name: VAE((1, 8, 8), latent_dim=2, hidden=8,
                                                      likelihood=name))
           for name in LIKELIHOODS if name not in _COVERED]


def prepared(config: Model, device: str) -> Tuple[object, torch.Tensor, torch.Tensor]:
    """The model initialised on a CPU batch (as fit does before training), moved to
    ``device``, with the preprocessed batch there too (preprocessed on the host, so that its
    draws come from the host's generator whatever the device)."""
    torch.manual_seed(0)
    module = config.build()
    images = torch.randint(0, 256, (4, *module.shape), dtype=torch.uint8)
    initialize_on_data(module, images)
    x = module.preprocess(images)
    return module.to(device), x.to(device), x


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("config", MODELS, ids=lambda m: m.name)
def test_model_trains_samples_and_evaluates_on_the_device(device, config, no_validation):
    module, x, _ = prepared(config, device)
    module.train()
    objective = DifferentiableELBO(module, DeviceTrace_ELBO(max_plate_nesting=1))
    params = list(module.parameters())
    optim = torch.optim.Adam(params, lr=1e-3)
    loss = training_step(objective, optim, params, x, clip_norm=10.0)
    assert isinstance(loss, torch.Tensor) and loss.device.type == device and loss.dim() == 0
    assert all(p.device.type == device for p in params)
    if device != "meta":
        assert torch.isfinite(loss)
    module.eval()
    outputs = [module.generate(2), module.reconstruct(x) if config.reconstructs else []]
    for images in [i for out in outputs for i in (out if isinstance(out, list) else [out])]:
        assert images.shape[1:] == module.shape and images.device.type == device
    for estimate in (iwae_log_likelihood(module.model, module.guide, x, num_samples=3,
                                         chunk_size=2),
                     elbo_per_datapoint(module.model, module.guide, x)):
        assert estimate.shape == (len(x),) and estimate.device.type == device


@pytest.mark.parametrize("config", [m for m in MODELS if m.name in (
    "vapnev", "vae-flow-guide-prior-likelihood", "srvae")], ids=lambda m: m.name)
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_model_elbo_on_cuda_equals_the_cpu_one(config):
    """Different devices draw different z: the mean ELBO over many draws is compared."""
    module, _, x = prepared(config, "cpu")
    cuda = copy.deepcopy(module).to("cuda").eval()
    module.eval()
    cpu_elbo = elbo_per_datapoint(module.model, module.guide, x, num_samples=256).mean()
    cuda_elbo = elbo_per_datapoint(cuda.model, cuda.guide, x.to("cuda"), num_samples=256)
    assert abs(cpu_elbo - cuda_elbo.mean().cpu()) < 0.02 * abs(cpu_elbo) + 0.5


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shaping", [dict(free_bits=1.0, free_bits_group="dimension"),
                                     dict(free_bits=0.5, free_bits_group="site"),
                                     dict(warmup_steps=10), dict(kind="mmd", mmd_weight=2.0)],
                         ids=["free-bits-dimension", "free-bits-site", "warmup", "mmd"])
def test_the_vapnev_training_step_of_every_objective_on_the_device(device, shaping,
                                                                   no_validation):
    """The main job's step (VAPNEV, free bits 1 nat per dimension) and the other shaped
    objectives: one GeneralizedELBO path that reads nothing on the host."""
    from flowvae.infer import GeneralizedELBO

    module, x, _ = prepared(next(m for m in MODELS if m.name == "vapnev"), device)
    module.train()
    kind = shaping.pop("kind", "elbo")
    elbo = GeneralizedELBO(kind, max_plate_nesting=1, **shaping)
    params = list(module.parameters())
    loss = training_step(DifferentiableELBO(module, elbo), torch.optim.Adam(params), params, x)
    assert isinstance(loss, torch.Tensor) and loss.device.type == device and loss.dim() == 0
    assert all(p.grad is not None and p.grad.device.type == device for p in params
               if p.requires_grad) and elbo.step == 1


def test_the_step_reads_the_host_only_with_validation_on():
    """With validation on, training_step checks the loss on the host (and so refuses meta)."""
    module, x, _ = prepared(MODELS[0], "meta")
    objective = DifferentiableELBO(module, DeviceTrace_ELBO(max_plate_nesting=1))
    params = list(module.parameters())
    with pytest.raises(RuntimeError, match="meta"):
        training_step(objective, torch.optim.Adam(params), params, x)


def test_device_elbo_equals_pyros_trace_elbo_in_value_and_gradient(float64):
    module, x, _ = prepared(MODELS[3], "cpu")
    grads = []
    for elbo in (pyro.infer.Trace_ELBO(max_plate_nesting=1),
                 DeviceTrace_ELBO(max_plate_nesting=1)):
        pyro.set_rng_seed(3)
        module.zero_grad()
        loss = elbo.differentiable_loss(module.model, module.guide, x)
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in module.parameters()]))
    (loss_a, grad_a), (loss_b, grad_b) = grads
    assert torch.allclose(loss_a, loss_b, rtol=1e-10)
    assert all(torch.allclose(a, b, rtol=1e-8, atol=1e-12) for a, b in zip(grad_a, grad_b))



def test_device_elbo_keeps_the_score_function_terms_of_discrete_guide_sites(float64):
    import pyro.distributions as dist

    theta = torch.tensor(0.3, requires_grad=True)

    def model(x):
        z = pyro.sample("z", dist.Bernoulli(torch.tensor([0.3, 0.6, 0.5])).to_event(1))
        pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide(x):
        pyro.sample("z", dist.Bernoulli(torch.sigmoid(theta).expand(3)).to_event(1))

    x = torch.tensor([1.0, 0.0, 2.0])
    results = []
    for elbo in (pyro.infer.Trace_ELBO(num_particles=7), DeviceTrace_ELBO(num_particles=7)):
        pyro.set_rng_seed(5)
        loss = elbo.differentiable_loss(model, guide, x)
        results.append((loss.detach(), torch.autograd.grad(loss, theta)[0]))
    assert results[1][1] != 0  # the score-function gradient is there
    assert torch.allclose(results[0][0], results[1][0]) and torch.allclose(results[0][1],
                                                                            results[1][1])


def test_the_gpu_command_dry_run_writes_its_summary(tmp_path):
    """``python -m benchmarks.gpu --dry-run``: the GPU command's code on the CPU, tiny."""
    import json

    from benchmarks import gpu

    report = gpu.main(["--out", str(tmp_path), "--dry-run"])
    assert report["device_tests"]["rc"] == 0, report["device_tests"]
    rows = report["transforms"]["rows"]
    assert {"nflows", "plain-squeezed", "flowvae-squeezed"} <= {r["candidate"] for r in rows}
    assert all(r["tflops"] > 0 and 0 < r["share_of_bf16_peak"] for r in rows)
    vapnev = report["vapnev"]
    assert vapnev["steps"] > 0 and vapnev["images_per_s"] > 0, vapnev
    assert 0 < vapnev["test_bpd_iwae"] < 16  # uniform noise at 8 bits is about 8
    assert json.loads((tmp_path / "summary.json").read_text())["vapnev"] == vapnev
    assert "VAPNEV on MNIST" in (tmp_path / "summary.md").read_text()
