"""Do the models' latents carry information? Each model is trained briefly on the 8x8 digits and
judged as a latent-variable model: the rate of every latent site (KL, nats per image) must be
above a floor, and a logistic-regression classifier trained on the digits must give the
reconstructions their original's label far more often than chance (10%).

Trained on the plain ELBO for so few steps, most of these models have not started to use
their latent yet (measured: the Bernoulli VAE's rate is 0.06 nats after 15 epochs), so each is
trained with free bits, the documented option against collapse. The VAPNEV pair is the
acceptance test: the same check passes on the default
(free bits) model and fails on the same model trained on the plain ELBO, whose latent
collapses.
"""

import pyro
import pytest
import torch

from flowvae.data import load_dataset
from flowvae.infer import GeneralizedELBO, label_agreement
from flowvae.models import SRVAE, VAE, VAPNEV, FlowPriorVAE, SequentialVAE, posterior_flow_vae
from flowvae.models.rho_vae import rho_vae
from flowvae.train import evaluate_elbo, fit

RATE_FLOOR = 1.0  # nats per image and latent site
LABELS_FLOOR = 0.2  # chance is about 0.1; 200 test images: 5 standard errors above it
DENSE = dict(hidden=8, growth=4, num_layers=1, num_mixtures=2, latent_shape=(2, 4, 4),
             flow_kwargs=dict(hidden_channels=8, num_blocks=1, num_scales=1))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train"), load_dataset("digits", "test")


def latent_use(model, train, test, reconstruct=None):
    """``(rates per site, labels kept)`` of a trained model on 200 test digits."""
    images, labels = test.images[:200], test.labels[:200]
    metrics = evaluate_elbo(model, images)
    rates = {k[len("rate_"):]: v for k, v in metrics.items() if k.startswith("rate_")}
    with torch.no_grad():
        x = model.preprocess(images)
        recon = (reconstruct or model.reconstruct)(x)
    kept = label_agreement(recon, labels, train.images, train.labels)["labels_kept"]
    return rates, kept


def uses_its_latent(rates, kept) -> bool:
    return min(rates.values()) >= RATE_FLOOR and kept >= LABELS_FLOOR


def tiny_vapnev():
    return VAPNEV((1, 8, 8), latent_dim=8, hidden=16,
                  flow_kwargs=dict(hidden_channels=8, num_blocks=1))


FREE_BITS = GeneralizedELBO("elbo", free_bits=1.0, free_bits_group="dimension",
                            max_plate_nesting=1)


def test_vapnev_uses_z_with_free_bits_and_collapses_on_the_plain_elbo(digits):
    train, test = digits
    results = {}
    for name, elbo in (("free bits", FREE_BITS), ("plain ELBO", "trace")):
        torch.manual_seed(0)
        pyro.set_rng_seed(0)
        model = tiny_vapnev()
        if not isinstance(elbo, str):
            elbo.step = 0
        fit(model, train, epochs=6, batch_size=64, lr=3e-3, elbo=elbo, progress=False)
        mean_recon = lambda x, m=model: m.reconstruct(x, temperature=0.5, mean=True)  # noqa: E731
        results[name] = latent_use(model, train, test, mean_recon)
    assert uses_its_latent(*results["free bits"]), results
    assert not uses_its_latent(*results["plain ELBO"]), results


def _sequential_last_step(model):
    return lambda x: model.reconstruct(x)[-1]


# (build, epochs): every model with a latent, at sizes that train in seconds
MODELS = {
    "vae-bernoulli": (lambda: VAE((1, 8, 8), latent_dim=4, hidden=64), 10),
    "vae-logistic-conv": (lambda: VAE((1, 8, 8), latent_dim=4, likelihood="logistic",
                                      network="conv", hidden=8), 10),
    "vae-flow-prior": (lambda: VAE((1, 8, 8), latent_dim=4, hidden=64, prior="flow"), 10),
    "posterior-realnvp": (lambda: posterior_flow_vae("realnvp", 1, (1, 8, 8), latent_dim=4,
                                                     hidden=64, flow_hidden=16), 10),
    "posterior-planar": (lambda: posterior_flow_vae("planar", 1, (1, 8, 8), latent_dim=4,
                                                    hidden=64), 10),
    "flow-prior-vae": (lambda: FlowPriorVAE((1, 8, 8), **DENSE), 6),
    "srvae": (lambda: SRVAE((1, 8, 8), **DENSE), 3),
    "sequential": (lambda: SequentialVAE((1, 8, 8), steps=2, latent_dim=4, hidden=64), 10),
}


def anti_collapse(**kwargs):
    """Free bits, 4 nats per latent site: the training option against collapse."""
    return GeneralizedELBO("elbo", free_bits=4.0, latent_site=None, max_plate_nesting=1,
                           **kwargs)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_uses_its_latent(name, digits):
    train, test = digits
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    build, epochs = MODELS[name]
    model = build()
    fit(model, train, epochs=epochs, batch_size=64, lr=3e-3, elbo=anti_collapse(),
        progress=False)
    reconstruct = _sequential_last_step(model) if name == "sequential" else None
    rates, kept = latent_use(model, train, test, reconstruct)
    assert uses_its_latent(rates, kept), (rates, kept)
    if name == "srvae":
        assert set(rates) == {"u", "z"}
    if name == "sequential":
        assert set(rates) == {"z_1", "z_2"}  # one rate per step


# rho-VAE's InfoVAE (alpha = 0: ELBO + lambda N MMD^2), trained as below from scratch at other
# weights (issue 26, seed 0): lambda 0 / 1 / 10 keep rate 3.6 / 3.9 / 4.3 nats and 33 / 39 / 26%
# of labels; 30 gives 2.2 nats, 16%; 80 gives 0.003 nats, 11%. The MMD term matches an
# independent computation (tests/test_infovae.py): the collapse is the weight's, not a defect.
INFOVAE_COLLAPSE = (
    "measured, not a defect: InfoVAE at MMD weight 80 (latent 4) collapses on the digits when "
    "the weight is on from the first step (rate 0.003 nats, 11% labels kept; 30: 2.2 nats, 16%), "
    "although the objective prefers the informative model: trained at weight 0 it keeps "
    "lambda MMD^2 of its aggregate posterior at 0.25 nats against 5.4 nats of distortion saved, "
    "and it stays informative when the weight is then switched on "
    "(test_informative_infovae_survives_its_mmd_weight)")


@pytest.mark.parametrize("variant, mmd_weight", [
    ("vanilla", 0.0), ("beta", 0.0), ("infovae", 10.0),
    pytest.param("infovae", 80.0, marks=pytest.mark.xfail(strict=True, reason=INFOVAE_COLLAPSE)),
])
def test_rho_vae_variants_use_their_latent(variant, mmd_weight, digits):
    train, test = digits
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    model, _ = rho_vae(variant, "ar1", (1, 8, 8), latent_dim=4, hidden=64, mmd_weight=mmd_weight)
    fit(model, train, epochs=10, batch_size=64, lr=3e-3, elbo=anti_collapse(analytic_kl=True),
        progress=False)
    assert uses_its_latent(*latent_use(model, train, test))


def test_informative_infovae_survives_its_mmd_weight(digits):
    """The weight that collapses InfoVAE from scratch (80) keeps a latent that is already in use:
    5 epochs at weight 0, then 5 at 80 (measured: rate 4.09 -> 3.41 nats, labels kept 22% ->
    23%)."""
    train, test = digits
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    model, _ = rho_vae("infovae", "ar1", (1, 8, 8), latent_dim=4, hidden=64, mmd_weight=80.0)
    for weight in (0.0, 80.0):
        model.mmd_weight = weight
        fit(model, train, epochs=5, batch_size=64, lr=3e-3, elbo=anti_collapse(analytic_kl=True),
            progress=False)
    assert uses_its_latent(*latent_use(model, train, test))
