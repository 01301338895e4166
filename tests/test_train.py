"""The training loop's optimizer path and its speed options (compile, bf16, jit, data on the
device), each checked against the plain float32 path."""

import pyro
import pytest
import torch

from flowvae.models import VAE, VAPNEV, FlowDensity
from flowvae.train import accelerate, fit, initialize_on_data, trainable_parameters
from flowvae.train.checkpoint import read_checkpoint, write_checkpoint
from flowvae.transforms import ActNorm

TINY_FLOW = dict(hidden_channels=4, num_blocks=1, num_checkerboard=1, num_channelwise=1,
                 num_final=1)


def binary_images(n, shape=(1, 8, 8)):
    # already 0/1 (a Bernoulli likelihood told so: data_levels=2) draws nothing: with the delta
    # guide the whole loss is deterministic and two runs can be compared exactly
    return torch.randint(0, 2, (n, *shape), dtype=torch.uint8)


def grey_images(n, shape=(1, 8, 8)):
    return torch.randint(0, 256, (n, *shape), dtype=torch.uint8)


def delta_vapnev(flow=TINY_FLOW):
    torch.manual_seed(0)
    model = VAPNEV((1, 8, 8), latent_dim=3, hidden=4, flow_kwargs=flow, guide="delta")
    with torch.no_grad():  # move the zero-initialised coupling outputs off the identity
        for p in model.p_x.flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def losses(model, data, epochs=2, **kwargs):
    pyro.set_rng_seed(0)  # dequantization noise: the same draws in both runs
    history = fit(model, data, epochs=epochs, batch_size=8, lr=1e-3, progress=False, **kwargs)
    return torch.tensor([row["train_nelbo"] for row in history])


def test_fit_updates_pyro_params_outside_the_module():
    class Penalised(VAE):
        def model(self, x):
            super().model(x)
            offset = pyro.param("offset", torch.tensor(3.0))
            pyro.factor("penalty", -100.0 * offset**2)

    torch.manual_seed(0)
    vae = Penalised((1, 8, 8), latent_dim=2, hidden=8)
    pyro.clear_param_store()
    params = trainable_parameters(vae, grey_images(2))
    assert len(params) == len(list(vae.parameters())) + 1
    fit(vae, grey_images(32), epochs=5, batch_size=4, lr=0.1, progress=False)
    assert abs(pyro.param("offset").item()) < 0.5  # Adam, ~0.1 a step: 40 steps from 3 to ~0


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::FutureWarning")
def test_jit_elbo_gives_the_trace_elbo_losses():
    def fresh():
        torch.manual_seed(0)
        return VAE((1, 8, 8), latent_dim=2, hidden=8, guide="delta")

    data = binary_images(30)  # a last batch of 6: the traced ELBO must follow the batch size
    plain = losses(fresh(), data)
    jit = losses(fresh(), data, elbo="jit")
    assert torch.allclose(plain, jit, rtol=1e-5, atol=0)


def test_bf16_couplings_train_close_to_float32():
    data = grey_images(32)
    full = losses(delta_vapnev(), data)
    model = delta_vapnev()
    half = losses(model, data, precision="bf16")
    flow = model.p_x.flow
    assert all(c.compute_dtype is torch.bfloat16 for c in flow.modules()
               if hasattr(c, "compute_dtype"))
    assert not torch.equal(full, half)  # the networks really ran in bfloat16...
    assert torch.allclose(full, half, rtol=2e-3, atol=0)  # ...and the losses barely moved
    assert accelerate(model, precision="float32") == 3  # back to float32 networks


def test_compiled_couplings_give_the_eager_losses():
    """Two couplings (one scale), two steps of one epoch: what compiling costs is per
    coupling and per batch shape, so this is the smallest run that checks both halves."""
    from torch._dynamo.utils import counters

    flow = dict(hidden_channels=4, num_blocks=1, num_scales=1, num_final=2)
    data = grey_images(16)
    eager = losses(delta_vapnev(flow), data, epochs=1)
    graphs, breaks = counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())
    model = delta_vapnev(flow)
    compiled = losses(model, data, epochs=1, compile=True)
    assert torch.allclose(eager, compiled, rtol=1e-5, atol=0)
    # both couplings run a compiled twin, traced into a graph without a break (no silent
    # fallback to eager); twins of one structure may share that graph
    twins = [m for m in model.modules() if "_compiled_conditioner" in m.__dict__]
    assert len(twins) == accelerate(model) == 2
    assert counters["stats"]["unique_graphs"] > graphs
    assert sum(counters["graph_break"].values()) == breaks


def test_data_on_device_gives_the_same_run():
    def fresh():
        torch.manual_seed(0)
        return VAE((1, 8, 8), latent_dim=2, hidden=8, guide="delta")

    data = binary_images(32)
    assert torch.equal(losses(fresh(), data), losses(fresh(), data, data_on_device=True))


def test_speed_options_reject_unknown_values():
    with pytest.raises(ValueError, match="precision must be one of"):
        fit(VAE((1, 8, 8), latent_dim=2, hidden=8), grey_images(8), precision="fp8")
    with pytest.raises(ValueError, match="elbo must be one of"):
        fit(VAE((1, 8, 8), latent_dim=2, hidden=8), grey_images(8), elbo="fast")


def test_time_limit_stops_after_an_epoch_and_resume_finishes_the_run(tmp_path):
    def fresh():
        torch.manual_seed(0)
        return VAE((1, 8, 8), latent_dim=2, hidden=8, guide="delta",
                   likelihood_kwargs=dict(data_levels=2))

    data, kwargs = binary_images(32), dict(epochs=3, batch_size=8, progress=False)
    straight = fit(fresh(), data, out_dir=str(tmp_path / "a"), **kwargs)
    first = fit(fresh(), data, out_dir=str(tmp_path / "b"), time_limit=0, **kwargs)
    assert [row["epoch"] for row in first] == [1]  # over the limit after the first epoch
    rest = fit(fresh(), data, out_dir=str(tmp_path / "b"), resume=True, **kwargs)
    assert [r["train_nelbo"] for r in rest] == [r["train_nelbo"] for r in straight]


def test_initialize_on_data_normalises_the_first_batch_and_leaves_the_rng_alone():
    torch.manual_seed(0)
    model = FlowDensity((1, 8, 8), flow_kwargs=TINY_FLOW).eval()
    norms = [m for m in model.modules() if isinstance(m, ActNorm)]
    assert len(norms) == 3 and not any(bool(m.initialized) for m in norms)
    x = grey_images(32)
    rng = torch.get_rng_state()
    assert initialize_on_data(model, x, seed=3)
    assert torch.equal(torch.get_rng_state(), rng) and not model.training
    assert all(bool(m.initialized) for m in norms)
    # the same dequantization noise (seed 3, drawn first): the first ActNorm, right after the
    # logit transform, now outputs zero mean and unit variance on this batch
    torch.manual_seed(3)
    logit, _ = model.p_x.transform._transforms[0](model.preprocess(x))
    y, _ = norms[0](logit)
    assert abs(y.mean().item()) < 1e-5 and abs(y.std(unbiased=False).item() - 1) < 1e-4
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert not initialize_on_data(model, grey_images(32), seed=4)  # nothing left to initialise
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_resume_refuses_a_checkpoint_of_another_architecture(tmp_path):
    data = binary_images(16)
    fit(VAE((1, 8, 8), latent_dim=2, hidden=8), data, epochs=1, batch_size=8, progress=False,
        out_dir=str(tmp_path))
    path = tmp_path / "checkpoint.pt"
    state = read_checkpoint(str(path))  # as if written before a layer was added
    state["state_dict"].pop("decoder.net.0.bias")
    write_checkpoint(str(path), state)
    with pytest.raises(ValueError, match="lacks 1 of its tensors .e.g. decoder.net.0.bias"):
        fit(VAE((1, 8, 8), latent_dim=2, hidden=8), data, epochs=2, batch_size=8,
            progress=False, out_dir=str(tmp_path), resume=True)


@pytest.mark.parametrize("build", [
    lambda: VAE((1, 8, 8), latent_dim=2, hidden=8, likelihood="categorical"),
    lambda: VAPNEV((1, 8, 8), latent_dim=2, hidden=4, flow_kwargs=TINY_FLOW,
                   dequantization="variational"),
], ids=["vae-categorical", "vapnev-variational"])
def test_a_float64_model_trains_and_evaluates_in_float64(build):
    from flowvae.train import DifferentiableELBO, evaluate_elbo
    from flowvae.train.step import ELBOS

    torch.manual_seed(0)
    model = build().double()
    data = grey_images(16)
    x = model.preprocess(data)
    assert x.dtype == torch.float64  # preprocess follows the parameters' dtype
    loss = DifferentiableELBO(model, ELBOS["trace"](max_plate_nesting=1))(x)
    assert loss.dtype == torch.float64
    history = fit(model, data, data[:8], epochs=2, batch_size=8, progress=False)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert all(torch.isfinite(torch.tensor(row["test_nelbo"])) for row in history)
    assert torch.isfinite(torch.tensor(evaluate_elbo(model, data)["nelbo"]))


def _counted(guide, calls):
    """``guide``, recording each call's observation in ``calls``."""
    def counted(x, *args, **kwargs):
        calls.append(x)
        return guide(x, *args, **kwargs)

    return counted


def test_setup_computes_the_elbo_once_before_the_first_step(tmp_path):
    """One pass finds the tensors to train and initialises the data-dependent layers (it was
    two); a resumed run, with nothing to initialise, makes one pass too."""
    from flowvae.nn.init import needs_data_init
    from flowvae.train import Callback

    class GuideCalls(Callback):
        def on_start(self, run):
            self.before_step_1 = len(calls)

    for resume in (False, True):
        model, calls = delta_vapnev(), []
        assert needs_data_init(model)
        model.guide = _counted(model.guide, calls)
        hook = GuideCalls()
        fit(model, grey_images(16), epochs=1 + resume, batch_size=8, progress=False,
            out_dir=str(tmp_path), resume=resume, callbacks=[hook])
        assert hook.before_step_1 == 1, resume
        if not resume:
            assert not needs_data_init(model) and len(calls[0]) == 8  # the first batch
