"""The training loop's optimizer path and its speed options (compile, bf16, jit, data on the
device), each checked against the plain float32 path."""

import pyro
import pytest
import torch

from flowvae.models import VAE, VAPNEV
from flowvae.train import accelerate, fit, trainable_parameters

TINY_FLOW = dict(hidden_channels=4, num_blocks=1, num_checkerboard=1, num_channelwise=1,
                 num_final=1)


def binary_images(n, shape=(1, 8, 8)):
    # already 0/1, so the Bernoulli likelihood's preprocessing draws nothing: with the delta
    # guide the whole loss is deterministic and two runs can be compared exactly
    return torch.randint(0, 2, (n, *shape), dtype=torch.uint8)


def grey_images(n, shape=(1, 8, 8)):
    return torch.randint(0, 256, (n, *shape), dtype=torch.uint8)


def delta_vapnev():
    torch.manual_seed(0)
    model = VAPNEV((1, 8, 8), latent_dim=3, hidden=4, flow_kwargs=TINY_FLOW, guide="delta")
    with torch.no_grad():  # move the zero-initialised coupling outputs off the identity
        for p in model.p_x.flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def losses(model, data, **kwargs):
    pyro.set_rng_seed(0)  # dequantization noise: the same draws in both runs
    history = fit(model, data, epochs=2, batch_size=8, lr=1e-3, progress=False, **kwargs)
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
    from torch._dynamo.utils import counters

    data = grey_images(16)
    eager = losses(delta_vapnev(), data)
    graphs = counters["stats"]["unique_graphs"]
    compiled = losses(delta_vapnev(), data, compile=True)
    assert torch.allclose(eager, compiled, rtol=1e-5, atol=0)
    # each of the 3 couplings' conditioners became a graph (no silent fallback to eager)
    assert counters["stats"]["unique_graphs"] - graphs >= 3


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
        return VAE((1, 8, 8), latent_dim=2, hidden=8, guide="delta")

    data, kwargs = binary_images(32), dict(epochs=3, batch_size=8, progress=False)
    straight = fit(fresh(), data, out_dir=str(tmp_path / "a"), **kwargs)
    first = fit(fresh(), data, out_dir=str(tmp_path / "b"), time_limit=0, **kwargs)
    assert [row["epoch"] for row in first] == [1]  # over the limit after the first epoch
    rest = fit(fresh(), data, out_dir=str(tmp_path / "b"), resume=True, **kwargs)
    assert [r["train_nelbo"] for r in rest] == [r["train_nelbo"] for r in straight]
