"""The 256-way categorical pixel likelihood (PixelRNN's softmax), checked against
log-probabilities computed by hand and the bits/dim of a uniform model."""

import math

import pytest
import torch

from flowvae.infer import bits_per_dim, evaluate
from flowvae.models import VAE
from flowvae.parts import LIKELIHOODS, CategoricalLikelihood


def test_log_prob_is_the_sum_of_per_subpixel_log_softmax_entries():
    torch.manual_seed(0)
    shape, batch = (3, 2, 2), 4
    likelihood = CategoricalLikelihood(shape)
    params = torch.randn(batch, 256 * 3, 2, 2, dtype=torch.float64)
    x = likelihood.preprocess(torch.randint(0, 256, (batch, *shape), dtype=torch.uint8))
    expected = torch.zeros(batch, dtype=torch.float64)
    for b in range(batch):
        for c in range(3):
            for i in range(2):
                for j in range(2):
                    logits = params[b, 256 * c : 256 * (c + 1), i, j]  # channel c's block
                    k = int(x[b, c, i, j])
                    expected[b] += logits[k] - torch.logsumexp(logits, 0)
    d = likelihood(params, None)
    assert d.event_shape == shape and d.batch_shape == (batch,)
    torch.testing.assert_close(d.log_prob(x), expected)


def test_a_uniform_model_costs_eight_bits_per_dimension():
    vae = VAE((1, 8, 8), latent_dim=2, hidden=8, likelihood="categorical")
    last = [m for m in vae.decoder.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():  # every logit 0: each of the 256 values has probability 1/256
        last.weight.zero_()
        last.bias.zero_()
    images = torch.randint(0, 256, (10, 1, 8, 8), dtype=torch.uint8)
    x = vae.preprocess(images)
    log_px = vae.likelihood(vae.posterior(x).sample()).log_prob(x)
    torch.testing.assert_close(log_px, torch.full((10,), -64 * math.log(256)))
    assert bits_per_dim(log_px.mean().item(), vae.shape, dequantized=False) == pytest.approx(8)
    results = evaluate(vae, images)
    assert vae.discrete and results["distortion"] == pytest.approx(64 * math.log(256))
    assert results["bpd"] == pytest.approx(8 + results["rate"] / (64 * math.log(2)))


def test_it_is_registered_and_samples_valid_pixels():
    assert LIKELIHOODS["categorical"] is CategoricalLikelihood
    torch.manual_seed(0)
    images = VAE((1, 4, 4), latent_dim=2, hidden=8, likelihood="categorical").generate(50)
    assert images.shape == (50, 1, 4, 4) and images.min() >= 0 and images.max() <= 1
    levels = images * 255
    assert torch.equal(levels, levels.round())


def test_fewer_levels_quantize_the_images():
    likelihood = CategoricalLikelihood((1, 1, 3), levels=4)
    x = likelihood.preprocess(torch.tensor([[[[0, 128, 255]]]], dtype=torch.uint8))
    assert x.tolist() == [[[[0.0, 2.0, 3.0]]]]
    with pytest.raises(ValueError, match="levels must be >= 2"):
        CategoricalLikelihood((1, 2, 2), levels=1)
