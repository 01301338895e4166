"""--elbo jit: torch's FutureWarning about torch.jit.trace, which Pyro's JitTrace_ELBO
calls, is filtered where flowvae calls it (flowvae.train.step)."""

import warnings

import torch

from flowvae.data import load_dataset
from flowvae.models import VAE
from flowvae.train import fit


def jit_future_warnings(caught):
    return [w for w in caught if issubclass(w.category, FutureWarning)
            and "torch.jit.trace" in str(w.message)]


def test_torch_warns_on_trace_but_fit_with_the_jit_elbo_does_not_pass_it_on():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.jit.trace(lambda x: x * 2, torch.ones(2))
    assert jit_future_warnings(caught), "torch no longer warns: the filter can go"
    data = load_dataset("digits", "train").images[:64]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = fit(VAE((1, 8, 8), latent_dim=2, hidden=8), data, epochs=1, batch_size=32,
                      elbo="jit", progress=False, device="cpu")
    assert history[0]["step"] == 2
    assert not jit_future_warnings(caught)
