"""A zuko flow as a flowvae part (examples/zuko_prior.py): a zuko NSF prior, registered from
outside flowvae, trains inside ``VAE`` under plain ``pyro.infer.SVI``."""

import json

import pytest
import torch

pytest.importorskip("zuko")
pyro = pytest.importorskip("pyro")

from pyro.infer import SVI, Trace_ELBO  # noqa: E402
from pyro.optim import Adam  # noqa: E402

from flowvae.data import load_dataset  # noqa: E402
from flowvae.models import VAE  # noqa: E402
from flowvae.models.vae import LATENT  # noqa: E402
from flowvae.parts import PRIORS  # noqa: E402


@pytest.fixture
def example(load_example):
    """The example, its "zuko-nsf" prior registered for this test only."""
    registered = dict(PRIORS)
    yield load_example("zuko_prior")
    PRIORS.clear()
    PRIORS.update(registered)


def test_zuko_prior_scores_z_with_zukos_density_and_trains_under_svi(example):
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = VAE((1, 8, 8), latent_dim=3, hidden=16, prior="zuko-nsf",
              prior_kwargs=dict(transforms=2, hidden_features=(8, 8)))
    x = vae.preprocess(load_dataset("digits", "train").images[:32])
    # the model's z site is scored by the zuko flow's own log_prob
    guide_trace = pyro.poutine.trace(vae.guide).get_trace(x)
    model_trace = pyro.poutine.trace(pyro.poutine.replay(vae.model, guide_trace)).get_trace(x)
    z = model_trace.nodes[LATENT]["value"]
    site_log_prob = model_trace.nodes[LATENT]["fn"].log_prob(z)
    assert torch.allclose(site_log_prob, vae.p_z.flow().log_prob(z))
    # plain SVI: Pyro finds every parameter of the flow and updates it
    flow_params = dict(vae.p_z.flow.named_parameters())
    before = {name: p.detach().clone() for name, p in flow_params.items()}
    svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-2}), Trace_ELBO())
    losses = [svi.step(x) for _ in range(30)]
    store = {id(p) for p in pyro.get_param_store().values()}
    assert all(id(p) in store for p in flow_params.values())
    unchanged = [n for n, p in flow_params.items() if torch.equal(p.detach(), before[n])]
    assert not unchanged, f"zuko parameters SVI did not update: {unchanged}"
    assert sum(losses[-5:]) < sum(losses[:5])
    assert vae.generate(4).shape == (4, 1, 8, 8)  # samples through the zuko prior


def test_zuko_example_runs_and_writes_its_results(example, tmp_path, capsys):
    config = example.Config(epochs=1, batch_size=500, latent_dim=2, hidden=8, transforms=1,
                            flow_hidden=8, out=str(tmp_path))
    results = example.main(config)
    assert set(results) == {"normal", "zuko-nsf"}
    saved = json.loads((tmp_path / "results.json").read_text())["results"]
    assert saved["zuko-nsf"]["nelbo"] == results["zuko-nsf"]["nelbo"] > 0
    assert "| test -ELBO (nats) |" in capsys.readouterr().out
    assert (tmp_path / "zuko-nsf" / "samples.png").stat().st_size > 0
