"""Bad inputs to the transforms end in flowvae's own message (issue 21, "Nothing silent").

Each line of BAD is a bad input and the message it must get: the class (or function) that
received it, the argument, what was expected. A silent result or an error from inside torch
fails the test. Models, ``fit`` and the CLI keep their own lists beside their owners' tests.
"""

import math

import pyro
import pytest
import torch

from flowvae.distributions import FlowDistribution
from flowvae.transforms import (
    ActNorm,
    ConcatConditioner,
    ConditionalAffineCoupling,
    ConditionalRealNVP,
    ContextDecoder,
    LogitTransform,
    MLPConditioner,
    MultiplicativeConditioner,
    squeeze,
    unsqueeze,
)

NAN, INF = float("nan"), float("inf")


def image_flow():
    torch.manual_seed(0)
    flow = ConditionalRealNVP((1, 4, 4), context_features=2, hidden_channels=4, num_blocks=1,
                              num_checkerboard=1, num_channelwise=1, num_final=1)
    with torch.no_grad():  # off the identity initialisation, so that values propagate
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return flow


def coupling():
    return ConditionalAffineCoupling(
        (3,), lambda i, o, size: MLPConditioner(i, o, context_features=2, hidden_features=4))


def x_img(batch=2, fill=None, dtype=torch.float32):
    x = torch.randn(batch, 1, 4, 4)
    if fill is not None and batch:
        x[0, 0, 1, 1] = fill
    return x.to(dtype)


def ctx(batch=2, width=2, fill=None, dtype=torch.float32):
    c = torch.randn(batch, width)
    if fill is not None:
        c[-1, -1] = fill
    return c.to(dtype)


def call(build, method, x, c):
    return lambda: getattr(build(), method)(x, context=c)


BAD = []
for method in ("forward", "inverse"):
    M = rf"ConditionalRealNVP(\.{method})?: "
    BAD += [
        (f"{method}: NaN input", call(image_flow, method, x_img(fill=NAN), ctx()),
         ValueError, M + r"inputs: expected finite values, got 1 NaN"),
        (f"{method}: inf input", call(image_flow, method, x_img(fill=-INF), ctx()),
         ValueError, M + r"inputs: expected finite values, got 0 NaN and 1 infinite"),
        (f"{method}: NaN context", call(image_flow, method, x_img(), ctx(fill=NAN)),
         ValueError, M + r"context: expected finite values"),
        (f"{method}: inf context", call(image_flow, method, x_img(), ctx(fill=INF)),
         ValueError, M + r"context: expected finite values"),
        (f"{method}: overflow from finite input",
         call(image_flow, method, x_img().clamp(-1, 1) * 3e38, ctx()),
         ValueError, M + r"outputs: expected finite values.*overflows torch.float32"),
        (f"{method}: int64 pixels", call(image_flow, method, x_img().abs().mul(50).long(), ctx()),
         TypeError, M + r"inputs: expected dtype torch.float32 .*got torch.int64; scale and "
                        r"dequantize"),
        (f"{method}: uint8 pixels", call(image_flow, method, x_img().abs().to(torch.uint8), ctx()),
         TypeError, M + r"inputs: expected dtype torch.float32 .*got torch.uint8"),
        (f"{method}: float64 input", call(image_flow, method, x_img(dtype=torch.float64), ctx()),
         TypeError, M + r"inputs: expected dtype torch.float32 .*got torch.float64; convert"),
        (f"{method}: float16 input", call(image_flow, method, x_img(dtype=torch.float16), ctx()),
         TypeError, M + r"inputs: expected dtype torch.float32 .*got torch.float16"),
        (f"{method}: float64 context",
         call(image_flow, method, x_img(), ctx(dtype=torch.float64)),
         TypeError, M + r"context: expected dtype torch.float32 .*got torch.float64"),
        (f"{method}: int context", call(image_flow, method, x_img(), ctx(dtype=torch.int64)),
         TypeError, M + r"context: expected dtype torch.float32 .*got torch.int64"),
        (f"{method}: empty batch", call(image_flow, method, x_img(0), ctx(0)),
         ValueError, M + r"inputs: expected a non-empty batch, got shape \(0, 1, 4, 4\)"),
        (f"{method}: no batch dimension", call(image_flow, method, x_img()[0], ctx()),
         ValueError, M + r"inputs: expected shape \(B, 1, 4, 4\), got \(1, 4, 4\)"),
        (f"{method}: wrong event shape", call(image_flow, method, torch.randn(2, 1, 4, 5), ctx()),
         ValueError, M + r"inputs: expected shape \(B, 1, 4, 4\), got \(2, 1, 4, 5\)"),
        (f"{method}: context of another batch", call(image_flow, method, x_img(), ctx(3)),
         ValueError, M + r"context: expected shape \(2, 2\), got \(3, 2\)"),
        (f"{method}: context too wide", call(image_flow, method, x_img(), ctx(width=5)),
         ValueError, M + r"context: expected shape \(2, 2\), got \(2, 5\)"),
        (f"{method}: context missing", call(image_flow, method, x_img(), None),
         ValueError, M + r"context: expected shape \(2, 2\), got None"),
        (f"{method}: numpy input", call(image_flow, method, x_img().numpy(), ctx()),
         TypeError, M + r"inputs: expected a torch.Tensor, got <class 'numpy.ndarray'>"),
        (f"{method}: list context", call(image_flow, method, x_img(), [[0.0, 0.0]] * 2),
         TypeError, M + r"context: expected a torch.Tensor"),
    ]
BAD += [
    ("coupling: NaN input", lambda: coupling()(torch.tensor([[0.0, NAN, 1.0]]),
                                               context=torch.zeros(1, 2)),
     ValueError, r"ConditionalAffineCoupling\.forward: inputs: expected finite values"),
    ("coupling: inf context", lambda: coupling().inverse(torch.zeros(1, 3),
                                                         context=torch.tensor([[INF, 0.0]])),
     ValueError, r"ConditionalAffineCoupling\.inverse: context: expected finite values"),
    ("coupling: int input", lambda: coupling()(torch.ones(1, 3, dtype=torch.int32),
                                               context=torch.zeros(1, 2)),
     TypeError, r"ConditionalAffineCoupling: inputs: expected dtype torch.float32"),
    ("coupling: empty batch", lambda: coupling()(torch.zeros(0, 3), context=torch.zeros(0, 2)),
     ValueError, r"ConditionalAffineCoupling: inputs: expected a non-empty batch"),
    ("coupling: context to an unconditional layer", lambda: ConditionalAffineCoupling(
        (2,), lambda i, o, size: MLPConditioner(i, o)
    )(torch.zeros(1, 2), context=torch.zeros(1, 1)),
     ValueError, r"ConditionalAffineCoupling: context: this transform takes no context"),
    ("FlowDistribution.log_prob of inf", lambda: FlowDistribution(
        ConditionalRealNVP((3,), hidden_features=4), torch.zeros(3), torch.ones(3)
    ).log_prob(torch.tensor([[0.0, INF, 0.0]])),
     ValueError, r"ConditionalRealNVP.forward: inputs: expected finite values"),
    ("FlowDistribution.log_prob of int values", lambda: FlowDistribution(
        ConditionalRealNVP((3,), hidden_features=4), torch.zeros(3), torch.ones(3)
    ).log_prob(torch.ones(2, 3, dtype=torch.int64)),
     TypeError, r"ConditionalRealNVP: inputs: expected dtype torch.float32"),
    # ActNorm's data-dependent initialisation (it used to hold NaN silently)
    ("ActNorm init on an empty batch", lambda: ActNorm(2)(torch.zeros(0, 2)),
     ValueError, r"ActNorm: data-dependent initialisation needs a non-empty batch"),
    ("ActNorm init on an empty image batch", lambda: ActNorm(2)(torch.zeros(0, 2, 3, 3)),
     ValueError, r"ActNorm: data-dependent initialisation needs a non-empty batch"),
    ("ActNorm init on a NaN batch", lambda: ActNorm(2)(torch.tensor([[0.0, NAN], [1.0, 2.0]])),
     ValueError, r"ActNorm: data-dependent initialisation got a batch holding 1 NaN"),
    ("ActNorm init on a NaN batch inside a flow", lambda: ConditionalRealNVP(
        (2,), actnorm=True, hidden_features=4)(torch.tensor([[0.0, NAN], [1.0, 2.0]])),
     ValueError, r"ActNorm: data-dependent initialisation got a batch holding 1 NaN"),
    # squeeze / unsqueeze
    ("squeeze of an odd image", lambda: squeeze(torch.zeros(1, 1, 3, 4)),
     ValueError, r"squeeze: expected \(B, C, H, W\) with even H and W, got \(1, 1, 3, 4\)"),
    ("squeeze of a vector", lambda: squeeze(torch.zeros(2, 4)),
     ValueError, r"squeeze: expected \(B, C, H, W\)"),
    ("unsqueeze of 3 channels", lambda: unsqueeze(torch.zeros(1, 3, 2, 2)),
     ValueError, r"unsqueeze: expected \(B, 4C, H, W\) with channels divisible by 4"),
]

CONSTRUCTORS = [
    (lambda: ConditionalRealNVP((1, 4, -4)), ValueError,
     r"ConditionalRealNVP: shape\[2\]: expected an integer >= 1, got -4"),
    (lambda: ConditionalRealNVP((0, 4, 4)), ValueError,
     r"ConditionalRealNVP: shape\[0\]: expected an integer >= 1"),
    (lambda: ConditionalRealNVP((4,), context_features=0), ValueError,
     r"ConditionalRealNVP: context_features: expected an integer >= 1, got 0"),
    (lambda: ConditionalRealNVP((4,), context_features=2.5), TypeError,
     r"ConditionalRealNVP: context_features: expected an integer, got 2.5"),
    (lambda: ConditionalRealNVP((1, 4, 4), hidden_channels=0), ValueError,
     r"ConditionalRealNVP: hidden_channels: expected an integer >= 1, got 0"),
    (lambda: ConditionalRealNVP((1, 4, 4), num_checkerboard=-1), ValueError,
     r"ConditionalRealNVP: num_checkerboard: expected an integer >= 0, got -1"),
    (lambda: ConditionalRealNVP((1, 4, 4), num_scales=0), ValueError,
     r"ConditionalRealNVP: num_scales: expected an integer >= 1, got 0"),
    (lambda: ConditionalRealNVP((1, 4, 4), num_blocks=True), TypeError,
     r"ConditionalRealNVP: num_blocks: expected an integer, got True"),
    (lambda: ConditionalRealNVP((4,), num_couplings=0), ValueError,
     r"ConditionalRealNVP: num_couplings: expected an integer >= 1, got 0"),
    (lambda: ConditionalRealNVP((4,), hidden_features=-8), ValueError,
     r"ConditionalRealNVP: hidden_features: expected an integer >= 1, got -8"),
    (lambda: ConditionalRealNVP((4,), num_layers=-1), ValueError,
     r"ConditionalRealNVP: num_layers: expected an integer >= 0, got -1"),
    (lambda: ConditionalRealNVP((4,), actnorm="yes"), TypeError,
     r"ConditionalRealNVP: actnorm: expected a bool, got 'yes'"),
    (lambda: ConditionalRealNVP((1, 2, 2), num_scales=2, checkerboard="squeezed"), ValueError,
     r"ConditionalRealNVP: shape \(1, 2, 2\): H and W must be divisible by 2\*\*2 = 4"),
    (lambda: ConditionalAffineCoupling((-3,), lambda i, o, s: MLPConditioner(i, o)), ValueError,
     r"ConditionalAffineCoupling: shape\[0\]: expected an integer >= 1, got -3"),
    (lambda: ConditionalAffineCoupling((4,), None), TypeError,
     r"ConditionalAffineCoupling: conditioner_factory: expected a callable"),
    (lambda: MLPConditioner(0, 4), ValueError,
     r"MLPConditioner: in_features: expected an integer >= 1, got 0"),
    (lambda: MLPConditioner(2, 4, num_layers=-2), ValueError,
     r"MLPConditioner: num_layers: expected an integer >= 0, got -2"),
    (lambda: MultiplicativeConditioner(1, 2, (4, 4), hidden_channels=0), ValueError,
     r"MultiplicativeConditioner: hidden_channels: expected an integer >= 1, got 0"),
    (lambda: MultiplicativeConditioner(1, 2, (4, -4)), ValueError,
     r"MultiplicativeConditioner: size\[1\]: expected an integer >= 1, got -4"),
    (lambda: ConcatConditioner(1, 2, (4, 4), context_features=3, context_channels=0), ValueError,
     r"ConcatConditioner: context_channels: expected an integer >= 1, got 0"),
    (lambda: ContextDecoder(4, 0, (8, 8)), ValueError,
     r"ContextDecoder: channels: expected an integer >= 1, got 0"),
    (lambda: ContextDecoder(4, 8, (8,)), ValueError, r"ContextDecoder: size: expected \(H, W\)"),
]


def _assert_flowvae_error(fn, error, pattern):
    with pytest.raises(error) as info:
        fn()
    assert info.match("^" + pattern), info.value
    # flowvae raised it (not torch, then rewrapped): the innermost frame is in flowvae
    frame = info.traceback[-1]
    assert "/flowvae/" in str(frame.path) and "site-packages" not in str(frame.path), frame


@pytest.mark.parametrize("label,fn,error,pattern", BAD, ids=[b[0] for b in BAD])
def test_bad_input_ends_in_flowvaes_message(label, fn, error, pattern):
    _assert_flowvae_error(fn, error, pattern)


@pytest.mark.parametrize("fn,error,pattern", CONSTRUCTORS,
                         ids=[c[2].split("expected")[0].replace("\\", "") for c in CONSTRUCTORS])
def test_bad_constructor_argument_ends_in_flowvaes_message(fn, error, pattern):
    _assert_flowvae_error(fn, error, pattern)


def test_value_checks_follow_pyros_validation_switch():
    """With validation off, NaN passes (no value is read on the host); back on, it is named."""
    flow = image_flow()
    x, c = x_img(fill=NAN), ctx()
    pyro.enable_validation(False)
    try:
        y, logdet = flow(x, context=c)
    finally:
        pyro.enable_validation(True)
    assert torch.isnan(y).any()
    with pytest.raises(ValueError, match="inputs: expected finite values"):
        flow(x, context=c)


def test_validation_off_reads_no_value_on_the_meta_device():
    """A tensor on the ``meta`` device has no values: any host read would raise."""
    flow = image_flow().to("meta")
    x, c = x_img().to("meta"), ctx().to("meta")
    pyro.enable_validation(False)
    try:
        y, logdet = flow(x, context=c)
        back, _ = flow.inverse(y, context=c)
    finally:
        pyro.enable_validation(True)
    assert y.shape == x.shape and logdet.shape == (2,) and back.device.type == "meta"
    # metadata checks stay on without validation
    pyro.enable_validation(False)
    try:
        with pytest.raises(TypeError, match="expected dtype torch.float32"):
            flow(x.double(), context=c)
    finally:
        pyro.enable_validation(True)


def test_nested_layers_do_not_read_values_again(monkeypatch):
    """A ConditionalRealNVP reads its values on the host once per call, not once per layer."""
    flow = image_flow()
    reads = []
    original = torch.Tensor.__bool__
    monkeypatch.setattr(torch.Tensor, "__bool__", lambda t: reads.append(1) or original(t))
    flow(x_img(), context=ctx())
    assert len(reads) == 1


def test_float64_flow_takes_float64_inputs():
    """The dtype contract: the flow's parameters decide, for inputs and context alike."""
    flow = image_flow().double()
    y, logdet = flow(x_img(dtype=torch.float64), context=ctx(dtype=torch.float64))
    assert y.dtype == logdet.dtype == torch.float64
    with pytest.raises(TypeError, match=r"inputs: expected dtype torch.float64 .*got .*float32"):
        flow(x_img(), context=ctx(dtype=torch.float64))



# ---- argument ranges of fit, the models and their entry points (issue 21) -------------------

def _tiny_vae():
    from flowvae.models import VAE

    return VAE((1, 8, 8), latent_dim=2, hidden=8)


def _fit(**options):
    from flowvae.train import fit

    images = torch.randint(0, 256, (8, 1, 8, 8), dtype=torch.uint8)
    return lambda: fit(_tiny_vae(), images, progress=False, **options)


def _vae(**kwargs):
    from flowvae.models import VAE

    return lambda: VAE((1, 8, 8), **{"latent_dim": 2, "hidden": 8, **kwargs})


RANGES = [
    (_fit(epochs=-1), ValueError, r"FitConfig: epochs: expected an integer >= 1, got -1"),
    (_fit(epochs=0), ValueError, r"FitConfig: epochs: expected an integer >= 1, got 0"),
    (_fit(batch_size=0), ValueError, r"FitConfig: batch_size: expected an integer >= 1, got 0"),
    (_fit(max_steps_per_epoch=0), ValueError,
     r"FitConfig: max_steps_per_epoch: expected an integer >= 1, got 0"),
    (_fit(num_particles=0), ValueError,
     r"FitConfig: num_particles: expected an integer >= 1, got 0"),
    (_fit(eval_batch_size=0), ValueError,
     r"FitConfig: eval_batch_size: expected an integer >= 1, got 0"),
    (_fit(eval_images=0), ValueError, r"FitConfig: eval_images: expected an integer >= 1"),
    (_fit(lr=0.0), ValueError, r"FitConfig: lr: expected a finite number > 0, got 0.0"),
    (_fit(lr=-1e-3), ValueError, r"FitConfig: lr: expected a finite number > 0"),
    (_fit(epochs=2.5), TypeError, r"FitConfig: epochs: expected an integer, got 2.5"),
    (_vae(beta=-1.0), ValueError, r"VAE: beta: expected a finite number >= 0"),
    (_vae(latent_dim=0), ValueError, r"VAE: latent_dim: expected an integer >= 1, got 0"),
    (lambda: _tiny_vae().generate(0), ValueError,
     r"VAE.generate: n: expected an integer >= 1, got 0"),
    (lambda: _tiny_vae().generate(2, temperature=0), ValueError,
     r"VAE.generate: temperature: expected a finite number > 0"),
    (lambda: _tiny_vae().generate(2, temperature=-1.0), ValueError,
     r"VAE.generate: temperature: expected a finite number > 0"),
    (lambda: _tiny_vae().preprocess(torch.zeros(0, 1, 8, 8, dtype=torch.uint8)), ValueError,
     r"VAE.preprocess: x: expected a non-empty batch, got shape \(0, 1, 8, 8\)"),
]


@pytest.mark.parametrize("fn,error,pattern", RANGES, ids=[r[2][:48] for r in RANGES])
def test_argument_out_of_range_ends_in_flowvaes_message(fn, error, pattern):
    _assert_flowvae_error(fn, error, pattern)


def test_a_flow_distributions_temperature_is_checked_on_every_assignment():
    flow = ConditionalRealNVP((2,), hidden_features=8)
    d = FlowDistribution(flow, torch.zeros(2), torch.ones(2), temperature=0.5)
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="FlowDistribution: temperature: expected a finite"):
            d.temperature = bad
    assert d.temperature == 0.5


@pytest.mark.parametrize("flags,says", [
    (["--epochs", "0"], "--epochs: must be >= 1, got 0"),
    (["--batch-size", "0"], "--batch-size: must be >= 1, got 0"),
    (["--lr", "0"], "--lr: must be > 0"),
    (["--particles", "0"], "--particles: must be >= 1, got 0"),
    (["--max-steps-per-epoch", "0"], "--max-steps-per-epoch: must be >= 1, got 0"),
    (["--eval-images", "0"], "--eval-images: must be >= 1, got 0"),
    (["--latent-dim", "0"], "--latent-dim: must be >= 1, got 0"),
])
def test_the_cli_refuses_out_of_range_flags(flags, says, capsys):
    from flowvae.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", *flags])
    assert exit_info.value.code == 2 and says in capsys.readouterr().err


# ---- likelihoods read the data's grey levels from a declaration, not from a batch ----------

def _dark_batch():
    """8-bit images whose pixels happen to be 0 and 1 (very dark), not binary images."""
    torch.manual_seed(0)
    return torch.randint(0, 2, (64, 1, 8, 8), dtype=torch.uint8)


def test_a_dark_8_bit_batch_is_not_taken_as_binary():
    from flowvae.models import VAE

    dark = _dark_batch()
    bernoulli = VAE((1, 8, 8), latent_dim=2, hidden=8)  # 8-bit data: binarized, p = x / 255
    assert bernoulli.p_x.data_levels == 256
    assert bernoulli.preprocess(dark).sum() < dark.sum().float() / 20
    pixelcnn = VAE((1, 8, 8), latent_dim=2, hidden=8, likelihood="pixelcnn",
                   likelihood_kwargs=dict(levels=256, hidden_channels=4, num_blocks=1))
    assert torch.equal(pixelcnn.preprocess(dark), dark.float() / 255)  # grey 1 stays 1/255
    binary = VAE((1, 8, 8), latent_dim=2, hidden=8, likelihood_kwargs=dict(data_levels=2))
    assert torch.equal(binary.preprocess(dark), dark.float())  # declared binary: as they are


def test_binarization_reads_no_value_on_the_host():
    from flowvae.parts import LIKELIHOODS

    meta = torch.zeros(2, 1, 8, 8, dtype=torch.uint8, device="meta")
    for likelihood in (LIKELIHOODS["bernoulli"]((1, 8, 8)),
                       LIKELIHOODS["pixelcnn"]((1, 8, 8), hidden_channels=4, num_blocks=1)):
        assert likelihood.preprocess(meta).shape == meta.shape


def test_the_cli_gives_the_datasets_levels_to_the_likelihood():
    from flowvae.cli import TrainConfig, build_model

    binarized = build_model(TrainConfig(model="vae", latent_dim=2, hidden=8), (1, 8, 8), 2)
    assert binarized.p_x.data_levels == 2
    grey = build_model(TrainConfig(model="vae", latent_dim=2, hidden=8), (1, 8, 8), 256)
    assert grey.p_x.data_levels == 256 and "likelihood_kwargs" not in [
        k for k, v in grey.config.items() if v]


def _ar1_log_prob_of_infinity():
    from flowvae.distributions.ar1 import AR1Normal

    d = AR1Normal(torch.zeros(3), torch.ones(3), torch.tensor(0.5))
    return d.log_prob(torch.tensor([0.0, float("inf"), 0.0]))


def _logistic_with_bits(bits):
    from flowvae.distributions.logistic import DiscretizedLogisticMixture

    return DiscretizedLogisticMixture(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 1, 2, 2),
                                      torch.zeros(1, 2, 1, 2, 2), num_bits=bits)


MORE = [
    (_ar1_log_prob_of_infinity, ValueError,
     r"AR1Normal.log_prob: value: expected finite values, got 0 NaN and 1 infinite"),
    (lambda: _logistic_with_bits(0), ValueError,
     r"DiscretizedLogisticMixture: num_bits: expected an integer >= 1, got 0"),
    (lambda: LogitTransform()(torch.ones(2, 3, dtype=torch.long)), TypeError,
     r"LogitTransform: inputs: expected a floating-point tensor, got torch.int64"),
    (lambda: LogitTransform().inverse(torch.ones(2, 3, dtype=torch.long)), TypeError,
     r"LogitTransform: inputs: expected a floating-point tensor, got torch.int64"),
]


@pytest.mark.parametrize("fn,error,pattern", MORE, ids=[m[2][:40] for m in MORE])
def test_distributions_and_logit_refuse_in_flowvaes_words(fn, error, pattern):
    _assert_flowvae_error(fn, error, pattern)


# ---- what Pyro users feed a model: raw images, NumPy, unbatched images, fit's options (issue 28)

def _raw(shape=(1, 8, 8), batch=4):
    return torch.randint(0, 256, (batch, *shape), dtype=torch.uint8)


def _models():
    from flowvae.models import SRVAE, VAPNEV, FlowDensity

    flow = dict(hidden_channels=4, num_blocks=1, num_checkerboard=1, num_channelwise=1,
                num_final=1)
    return {"VAPNEV": lambda: VAPNEV((1, 8, 8), latent_dim=2, hidden=4, flow_kwargs=flow),
            "FlowDensity": lambda: FlowDensity((1, 8, 8), flow_kwargs=flow),
            "SRVAE": lambda: SRVAE((1, 8, 8), latent_shape=(2, 2, 2), hidden=4, growth=4,
                                   num_layers=1, num_mixtures=2,
                                   flow_kwargs=dict(hidden_channels=4, num_blocks=1,
                                                    num_scales=1))}


def _iwae_of_raw_images():
    from flowvae.infer import iwae_log_likelihood

    vae = _tiny_vae()
    return iwae_log_likelihood(vae.model, vae.guide, _raw(), num_samples=2)


RAW = r"x: expected the observation that preprocess returns, got raw uint8 images; call " \
      r"model.preprocess\(images\) first"

ISSUE_28 = [
    (lambda: _tiny_vae().model(_raw()), TypeError, "VAE.model: " + RAW),
    (lambda: _tiny_vae().guide(_raw()), TypeError, "VAE.guide: " + RAW),
    (lambda: _tiny_vae().reconstruct(_raw()), TypeError, "VAE.reconstruct: " + RAW),
    (_iwae_of_raw_images, TypeError, "VAE.guide: " + RAW),
    (lambda: _models()["VAPNEV"]().model(_raw()), TypeError, "VAPNEV.model: " + RAW),
    (lambda: _models()["FlowDensity"]().model(_raw()), TypeError, "FlowDensity.model: " + RAW),
    (lambda: _models()["SRVAE"]().guide(_raw()), TypeError, "SRVAE.guide: " + RAW),
    (lambda: _vae()().model(_raw().numpy().astype("float32")), TypeError,
     r"VAE.model: x: expected a torch.Tensor \(B, 1, 8, 8\), got numpy.ndarray"),
    # one image without its batch dimension, once read as a batch of C = 3 images
    (lambda: _vae()().__class__((3, 8, 8), latent_dim=2, hidden=8).model(
        torch.rand(3, 8, 8).round()), ValueError,
     r"VAE.model: x: expected a batch \(B, 3, 8, 8\), got shape \(3, 8, 8\), an image without "
     r"its batch dimension; give x\[None\] for a batch of one"),
    (lambda: _tiny_vae().guide(torch.rand(1, 8, 8)), ValueError,
     r"VAE.guide: x: expected a batch \(B, 1, 8, 8\), got shape \(1, 8, 8\)"),
    (lambda: _tiny_vae().preprocess(_raw()[0]), ValueError,
     r"expected images of shape \(B, 1, 8, 8\), got \(1, 8, 8\)"),
    (lambda: _tiny_vae().preprocess([[0, 1]]), TypeError,
     r"VAE.preprocess: x: expected uint8 images \(B, C, H, W\) as a torch.Tensor or a NumPy "
     r"array, got builtins.list"),
    (lambda: __import__("flowvae.distributions.ar1", fromlist=["AR1Normal"]).AR1Normal(
        torch.zeros(2, 5, dtype=torch.long), 1.0, 0.5), TypeError,
     r"AR1Normal: loc: expected a floating-point tensor, got torch.int64"),
    (_vae(hidden=0), ValueError, r"VAE: hidden: expected an integer >= 1, got 0"),
    (lambda: FlowDistribution(ConditionalRealNVP((2,), hidden_features=8),
                              __import__("numpy").zeros(2), torch.ones(2)), TypeError,
     r"FlowDistribution: base_loc: expected a torch.Tensor, got <class 'numpy.ndarray'>"),
    (lambda: FlowDistribution(ConditionalRealNVP((2,), hidden_features=8), torch.zeros(2),
                              __import__("numpy").ones(2, dtype="float32")), TypeError,
     r"FlowDistribution: base_scale: expected a torch.Tensor"),
    (lambda: __import__("flowvae.infer", fromlist=["evaluate"]).evaluate(
        _tiny_vae(), _raw().tolist()), TypeError,
     r"evaluate: images: expected uint8 images \(N, C, H, W\) as a torch.Tensor or a NumPy "
     r"array, got builtins.list"),
    (_fit(seed=-1), ValueError, r"FitConfig: seed: expected an integer in \[0, 2\*\*31\), got -1"),
    (_fit(seed=2**31), ValueError, r"FitConfig: seed: expected an integer in \[0, 2\*\*31\)"),
    (_fit(seed=1.5), TypeError, r"FitConfig: seed: expected an integer, got 1.5"),
    (_fit(device="gpu"), ValueError, r"FitConfig: device: 'gpu' is not a torch device; use "
                                     r"'cpu', 'cuda'"),
    (_fit(elbo=pyro.infer.Trace_ELBO), TypeError,
     r"FitConfig: elbo: expected an ELBO object or one of \('trace', 'meanfield', 'jit'\), got "
     r"the class Trace_ELBO; pass an instance: Trace_ELBO\(\.\.\.\)"),
    (_fit(elbo=3), TypeError, r"FitConfig: elbo: expected one of .* or a Pyro ELBO object"),
    (_fit(callbacks=[object()]), TypeError,
     r"fit: callbacks\[0\]: a object lacks the hooks on_start, on_epoch_start, on_step, "
     r"on_epoch, should_stop; derive it from flowvae.train.Callback"),
    (_fit(callbacks=[__import__("flowvae.train", fromlist=["Callback"]).Callback]), TypeError,
     r"fit: callbacks\[0\]: expected a callback object, got the class Callback"),
    (_fit(callbacks=None), TypeError, r"fit: callbacks: expected a list of callbacks, got None"),
]
if not torch.cuda.is_available():
    ISSUE_28.append((_fit(device="cuda"), ValueError,
                     r"FitConfig: device: 'cuda' asked for, but CUDA is not available here"))


@pytest.mark.parametrize("fn,error,pattern", ISSUE_28, ids=[c[2][:50] for c in ISSUE_28])
def test_what_pyro_users_feed_a_model_ends_in_flowvaes_message(fn, error, pattern):
    _assert_flowvae_error(fn, error, pattern)


def _binary_dataset():
    from flowvae.data import ImageDataset

    torch.manual_seed(0)
    return ImageDataset((torch.rand(16, 1, 8, 8) < 0.16).to(torch.uint8), levels=2)


def test_fit_refuses_data_whose_levels_the_model_does_not_take_before_step_1():
    """``fit(VAE(...), load_dataset("binarized-mnist"))`` trained on near-empty images."""
    from flowvae.train import fit

    data = _binary_dataset()
    eight_bit = _tiny_vae()
    # the silent wrong number it used to train on: 8-bit binarization of {0, 1} images
    assert eight_bit.preprocess(data.images).mean() < data.images.float().mean() / 20
    steps = []
    hook = type("Count", (__import__("flowvae.train", fromlist=["Callback"]).Callback,),
                {"on_step": lambda self, run, loss, batch: steps.append(loss)})()
    with pytest.raises(ValueError, match=r"^fit: train_data has 2 grey levels .* but the VAE's "
                                         r"preprocess takes 256: build the model for them: its "
                                         r"likelihood's data_levels=2"):
        fit(eight_bit, data, epochs=1, progress=False, callbacks=[hook])
    assert steps == []
    with pytest.raises(ValueError, match=r"^fit: test_data has 2 grey levels"):
        fit(eight_bit, _raw(batch=8), data, epochs=1, progress=False)
    flow = __import__("flowvae.models", fromlist=["FlowDensity"]).FlowDensity(
        (1, 8, 8), flow_kwargs=dict(hidden_channels=4, num_blocks=1))
    with pytest.raises(ValueError, match="this model's likelihood takes 8-bit images only"):
        fit(flow, data, epochs=1, progress=False)
    # the correct result: a model built for binary data observes the images as they are
    binary = _vae(likelihood_kwargs=dict(data_levels=2))()
    assert torch.equal(binary.preprocess(data.images), data.images.float())
    history = fit(binary, data, epochs=1, batch_size=8, progress=False)
    assert math.isfinite(history[-1]["train_nelbo"])


def test_numpy_images_and_numbers_are_taken_as_their_tensors():
    import numpy as np

    from flowvae.infer import evaluate
    from flowvae.train import FitConfig

    raw = _raw(batch=6)
    vae = _tiny_vae()
    pyro.set_rng_seed(3)
    from_tensor = vae.preprocess(raw)
    pyro.set_rng_seed(3)
    assert torch.equal(vae.preprocess(raw.numpy()), from_tensor)
    pyro.set_rng_seed(4)
    expected = evaluate(vae, raw, batch_size=3)
    pyro.set_rng_seed(4)
    assert evaluate(vae, raw.numpy(), batch_size=3) == expected
    config = FitConfig(epochs=np.int64(3), lr=np.float32(1e-3), batch_size=np.int32(8),
                       seed=np.uint16(5), clip_norm=np.float64(2.0))
    assert (config.epochs, config.batch_size, config.seed) == (3, 8, 5)
    assert config.lr == float(np.float32(1e-3)) and config.clip_norm == 2.0
    assert all(type(getattr(config, k)) is int for k in ("epochs", "batch_size", "seed"))
    assert type(config.lr) is float
    with pytest.raises(ValueError, match="FitConfig: lr: expected a finite number > 0"):
        FitConfig(lr=np.float32("nan"))


def test_a_damaged_dataset_file_is_one_line_naming_it_and_the_fix(tmp_path):
    from flowvae.data.readers import read_amat, read_idx

    cut = tmp_path / "t10k-images-idx3-ubyte"
    cut.write_bytes(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") + (28).to_bytes(4, "big")
                    + (28).to_bytes(4, "big") + bytes(100))
    plain = tmp_path / "t10k-labels-idx1-ubyte.gz"
    plain.write_bytes(b"\x00\x00\x08\x01 not gzip")
    amat = tmp_path / "binarized_mnist_test.amat"
    amat.write_bytes(b"0 1 0\n1 1\n")
    for read, path in ((read_idx, cut), (read_idx, plain), (read_amat, amat)):
        with pytest.raises(ValueError) as info:
            read(str(path))
        message = str(info.value)
        assert message.startswith(f"{path} is truncated or corrupted (") and "\n" not in message
        assert "download=True" in message
