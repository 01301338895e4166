"""srVAE: the VAE with a RealNVP prior and the two-level super-resolution VAE."""

import math

import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from pyro.optim import Adam

from flowvae.data import load_dataset
from flowvae.infer import iwae_log_likelihood
from flowvae.models import SRVAE, VAE, FlowPriorVAE
from flowvae.models.srvae import data_dependent_init, downscale
from flowvae.nn import DenseDecoder
from flowvae.nn.densenet import ChannelAttention
from flowvae.train import fit, load_model

TINY = dict(hidden=8, growth=4, num_layers=1, num_mixtures=2,
            flow_kwargs=dict(hidden_channels=4, num_blocks=1))


def images(n, shape):
    return torch.randint(0, 256, (n, *shape), dtype=torch.uint8)


def tiny_srvae(shape=(1, 16, 16), latent=(2, 4, 4)):
    return SRVAE(shape, latent, **TINY)


def perturb(module, scale=0.05):
    """Move the zero-initialised flow layers away from the identity."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


@pytest.mark.parametrize("mean_field", [False, True])
def test_pyro_elbo_equals_eq6_assembled_from_the_four_terms(float64, mean_field):
    model = tiny_srvae()
    x = model.preprocess(images(5, (1, 16, 16)))
    model.initialize(x)  # else the first loss call would initialise the networks first
    perturb(model)
    loss_fn = (TraceMeanField_ELBO if mean_field else Trace_ELBO)(max_plate_nesting=1)
    torch.manual_seed(7)
    loss = loss_fn.differentiable_loss(model.model, model.guide, x)
    torch.manual_seed(7)  # the same draws of u, then z
    terms = model.elbo_terms(x, analytic_kl_z=mean_field)
    assert all(v.shape == (5,) for v in terms.values())
    by_hand = terms["RE_x"] + terms["RE_y"] - terms["KL_z"] - terms["KL_u"]
    assert torch.allclose(-loss, by_hand.sum(), rtol=1e-10)


def test_untrained_model_uses_both_latents_and_p_z_depends_on_y_and_u():
    model = tiny_srvae()
    perturb(model)
    x = model.preprocess(images(6, (1, 16, 16)))
    kls = [model.elbo_terms(x, analytic_kl_z=True) for _ in range(4)]
    assert min(k["KL_z"].min().item() for k in kls) > 0
    assert torch.stack([k["KL_u"] for k in kls]).mean() > 0
    y, u = model.downscale(x), torch.randn(6, 2, 4, 4)
    base = model.prior_z(y, u).base_dist
    other_y = model.prior_z(model.downscale(x.flip(0)), u).base_dist
    other_u = model.prior_z(y, torch.randn(6, 2, 4, 4)).base_dist
    for other in (other_y, other_u):
        assert (other.loc - base.loc).abs().max() > 1e-5
        assert (other.scale - base.scale).abs().max() > 1e-5


def conv_outputs(net, run):
    """The outputs of every convolution of ``net`` during ``run()``, in the order they ran."""
    outputs = []
    hooks = [m.register_forward_hook(lambda m, i, o: outputs.append((m, o)))
             for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    run()
    for h in hooks:
        h.remove()
    return outputs


def test_data_dependent_init_standardises_every_hidden_convolution():
    net = DenseDecoder((2, 4, 4), (3, 16, 16), hidden_channels=8, growth=4, num_layers=2)
    z = torch.randn(64, 2, 4, 4)
    gates = [m for a in net.modules() if isinstance(a, ChannelAttention) for m in a.modules()
             if isinstance(m, torch.nn.Conv2d)]
    last = conv_outputs(net, lambda: net(z))[-1][0]
    kept = {id(m): [p.clone() for p in m.parameters()] for m in gates + [last]}
    count = data_dependent_init(lambda: net(z), [net])
    with torch.no_grad():
        outputs = conv_outputs(net, lambda: net(z))
    hidden = [(m, o) for m, o in outputs if id(m) not in kept]
    # stem; 2 upsampling steps x (2 dense layers, transition, transposed conv); 2 dense layers
    assert count == len(hidden) == 11
    for _, out in hidden:
        assert torch.allclose(out.mean((0, 2, 3)), torch.zeros(out.shape[1]), atol=1e-4)
        assert torch.allclose(out.std((0, 2, 3), correction=0), torch.ones(out.shape[1]),
                              atol=1e-4)
    for m in gates + [last]:
        assert all(torch.equal(p, q) for p, q in zip(m.parameters(), kept[id(m)]))


def test_first_training_step_initialises_the_networks_and_leaves_the_flow_prior_alone():
    model = tiny_srvae()
    x = model.preprocess(images(16, (1, 16, 16)))
    flow = [p.clone() for p in model.p_u.parameters()]
    model.eval()
    model.guide(x)
    assert not model.initialized  # only in training mode
    model.train()
    poutine.trace(model.guide).get_trace(x)
    assert model.initialized
    assert all(torch.equal(p, q) for p, q in zip(model.p_u.parameters(), flow))
    # p(x|y,z) now depends on z about as much as on y (PyTorch's init: 1e-4 times as much)
    with torch.no_grad():
        y, z = model.downscale(x), torch.randn(16, 2, 4, 4)
        loc = model.likelihood_x(y, z).loc
        by_z = (model.likelihood_x(y, torch.randn_like(z)).loc - loc).abs().mean()
        by_y = (model.likelihood_x(model.downscale(x.flip(0)), z).loc - loc).abs().mean()
    assert by_z > 0.1 * by_y


def test_downscale_is_an_integer_average_pool():
    x = images(3, (3, 8, 8)).float()
    y = downscale(x)
    assert y.shape == (3, 3, 4, 4) and torch.equal(y, y.round())
    assert (y - torch.nn.functional.avg_pool2d(x, 2)).abs().max() <= 0.5
    assert torch.equal(downscale(x[None].expand(2, 3, 3, 8, 8)), y.expand(2, 3, 3, 4, 4))


@pytest.mark.parametrize("channels", [1, 3])
def test_one_svi_step_iwae_and_the_four_operations_on_32x32(channels):
    shape = (channels, 32, 32)
    model = tiny_srvae(shape, latent=(4, 8, 8))
    x = model.preprocess(images(3, shape))
    elbo = Trace_ELBO(num_particles=2, vectorize_particles=True, max_plate_nesting=1)
    svi = SVI(model.model, model.guide, Adam({"lr": 1e-3}), elbo)
    assert math.isfinite(svi.step(x))
    assert torch.isfinite(iwae_log_likelihood(model.model, model.guide, x, num_samples=3)).all()
    y = model.downscale(x)
    outputs = [model.super_resolve(y), model.super_resolve(y, mean=True),
               model.reconstruct(x), model.generative_reconstruct(x, temperature=0.5),
               model.generate(3, temperature=0.7)]
    for out in outputs:
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    gen_x, gen_y = model.generate(2, return_y=True)
    assert gen_y.shape == (2, *y.shape[1:])


def test_flow_prior_vae_svi_step_and_iwae_are_finite():
    model = FlowPriorVAE((1, 32, 32), (4, 8, 8), **TINY)
    baseline = VAE((1, 32, 32), latent_dim=(4, 8, 8), network="dense", likelihood="logistic",
                   hidden=8, network_kwargs=dict(growth=4, num_layers=1))
    x = model.preprocess(images(3, (1, 32, 32)))
    for vae in (model, baseline):
        svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), Trace_ELBO())
        assert math.isfinite(svi.step(x))
        log_px = iwae_log_likelihood(vae.model, vae.guide, x, num_samples=4)
        assert log_px.shape == (3,) and torch.isfinite(log_px).all()
        assert vae.generate(2, temperature=0.8).shape == (2, 1, 32, 32)
        assert vae.interpolate(x[0], x[1], steps=3).shape == (3, 1, 32, 32)


def test_vae_rejects_tensor_latents_with_vector_networks():
    with pytest.raises(ValueError, match="network='dense'"):
        VAE((1, 8, 8), latent_dim=(2, 4, 4), network="conv")
    with pytest.raises(ValueError, match="network='dense'"):
        VAE((1, 8, 8), latent_dim=4, network="dense")


@pytest.fixture(scope="module")
def trained(data_root):
    torch.manual_seed(0)
    data = load_dataset("fashion-mnist", "train", root=data_root).images[:1024]
    data = downscale(data.float()).to(torch.uint8)  # 14x14: keeps the test fast
    model = SRVAE((1, 14, 14), (4, 7, 7), hidden=16, growth=8, num_layers=1, num_mixtures=3,
                  flow_kwargs=dict(hidden_channels=8, num_blocks=1, num_scales=1))
    fit(model, data, epochs=4, batch_size=32, lr=3e-3, optimizer="adamax", progress=False,
        device="cpu")
    return model, data


def test_short_training_uses_both_latents(trained):
    # Measured: KL_z 9.6, KL_u 8.6 nats, z ~ q(z|x) worth 29 nats of log p(x|y,z) over
    # z ~ p(z|y,u); with data_init=False (z collapses) KL_z 0.09, KL_u 5.8 and 0 nats
    model, data = trained
    x = model.preprocess(data[:256])
    torch.manual_seed(0)
    with torch.no_grad():
        terms = model.elbo_terms(x, analytic_kl_z=True)
        y = model.downscale(x)
        z_prior = model.prior_z(y, model.posterior_u(y).sample()).sample()
        gain = terms["RE_x"] - model.likelihood_x(y, z_prior).log_prob(x)
    assert terms["KL_z"].mean() > 3 and terms["KL_u"].mean() > 3
    assert gain.mean() > 10


def test_generated_x_downscales_to_its_y_stage(trained):
    model, _ = trained
    torch.manual_seed(0)
    x, y = model.generate(64, temperature=0.5, return_y=True)
    matched = (downscale(255 * x) - 255 * y).abs().mean()
    shuffled = (downscale(255 * x) - 255 * y.roll(1, 0)).abs().mean()
    assert matched < 0.5 * shuffled


def test_checkpoint_rebuilds_the_model(tmp_path):
    model = tiny_srvae()
    fit(model, images(8, (1, 16, 16)), epochs=1, batch_size=4, out_dir=str(tmp_path),
        progress=False)
    loaded = load_model(str(tmp_path / "checkpoint.pt"))
    assert isinstance(loaded, SRVAE)
    for p, q in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(p, q)
