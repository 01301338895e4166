"""One generic test for every Transform in flowvae: add a transform by adding a line to CASES."""

import io
import math
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import pytest
import torch
from torch.autograd.functional import jacobian

from flowvae.transforms import (
    ActNorm,
    ConcatConditioner,
    ConditionalAffineCoupling,
    ConditionalRealNVP,
    LogitTransform,
    MLPConditioner,
    MultiplicativeConditioner,
    squeeze,
    unsqueeze,
)


def mlp(ctx):
    return lambda i, o, size: MLPConditioner(i, o, context_features=ctx, hidden_features=8)


def conv(cls, ctx):
    return lambda i, o, size: cls(i, o, size, context_features=ctx, hidden_channels=4,
                                  num_blocks=1)


@dataclass
class Case:
    name: str
    build: Callable
    shape: Tuple[int, ...]
    context_features: Optional[int] = None
    unit_interval: bool = False  # inputs must lie in [0, 1]
    starts_as_identity: bool = True


SMALL = dict(hidden_channels=4, num_blocks=1, num_checkerboard=2, num_channelwise=2, num_final=2)
CASES = [
    Case("coupling-vector", lambda: ConditionalAffineCoupling((4,), mlp(3)), (4,), 3),
    Case("coupling-vector-odd", lambda: ConditionalAffineCoupling((5,), mlp(None), parity=1),
         (5,)),
    Case("coupling-channel", lambda: ConditionalAffineCoupling(
        (3, 4, 4), conv(MultiplicativeConditioner, 2), mask="channel", parity=1), (3, 4, 4), 2),
    Case("coupling-masked-mult", lambda: ConditionalAffineCoupling(
        (1, 4, 4), conv(MultiplicativeConditioner, 3), mask="checkerboard"), (1, 4, 4), 3),
    Case("coupling-masked-concat", lambda: ConditionalAffineCoupling(
        (2, 4, 4), conv(ConcatConditioner, 3), mask="checkerboard", parity=1), (2, 4, 4), 3),
    Case("coupling-squeezed", lambda: ConditionalAffineCoupling(
        (2, 4, 4), conv(MultiplicativeConditioner, 3), mask="checkerboard",
        checkerboard="squeezed"), (2, 4, 4), 3),
    Case("coupling-squeezed-uncond", lambda: ConditionalAffineCoupling(
        (1, 4, 6), conv(ConcatConditioner, None), mask="checkerboard", parity=1,
        checkerboard="squeezed"), (1, 4, 6)),
    Case("realnvp-image-masked", lambda: ConditionalRealNVP((1, 4, 4), 3, **SMALL), (1, 4, 4), 3),
    Case("realnvp-image-squeezed-concat", lambda: ConditionalRealNVP(
        (2, 4, 4), 3, conditioner="concat", checkerboard="squeezed", **SMALL), (2, 4, 4), 3),
    Case("realnvp-image-uncond-3scales", lambda: ConditionalRealNVP(
        (1, 8, 4), None, num_scales=3, **SMALL), (1, 8, 4)),
    Case("realnvp-image-actnorm", lambda: ConditionalRealNVP(
        (1, 4, 4), 2, actnorm=True, **SMALL), (1, 4, 4), 2, starts_as_identity=False),
    Case("realnvp-vector", lambda: ConditionalRealNVP((5,), 2, hidden_features=8), (5,), 2),
    Case("realnvp-vector-actnorm", lambda: ConditionalRealNVP(
        (4,), None, actnorm=True, hidden_features=8), (4,), starts_as_identity=False),
    Case("actnorm-image", lambda: ActNorm(2), (2, 3, 3), starts_as_identity=False),
    Case("actnorm-vector", lambda: ActNorm(3), (3,), starts_as_identity=False),
    Case("logit", lambda: LogitTransform(0.05), (1, 3, 3), unit_interval=True,
         starts_as_identity=False),
]


def inputs_for(case, batch, generator=None):
    x = torch.rand(batch, *case.shape) if case.unit_interval else torch.randn(batch, *case.shape)
    ctx = None if case.context_features is None else torch.randn(batch, case.context_features)
    return x, ctx


def built(case):
    """The transform with data-dependent init done and every parameter moved off its init."""
    transform = case.build()
    x, ctx = inputs_for(case, 16)
    transform(x, context=ctx)  # ActNorm initialises itself on the first training pass
    with torch.no_grad():
        for p in transform.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return transform.eval()


ids = [c.name for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=ids)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_inverse_both_ways(case, batch, dtype, tol):
    torch.set_default_dtype(dtype)
    try:
        transform = built(case)
        x, ctx = inputs_for(case, batch)
        noise, logdet = transform(x, context=ctx)
        assert noise.shape == x.shape and logdet.shape == (batch,)
        x_back, logdet_back = transform.inverse(noise, context=ctx)
        assert (x_back - x).abs().max() < tol
        assert (logdet + logdet_back).abs().max() < tol * 10 * max(1, logdet.abs().max())
        if not case.unit_interval:
            v = torch.randn_like(x)
            assert (transform(transform.inverse(v, context=ctx)[0], context=ctx)[0] - v
                    ).abs().max() < tol
    finally:
        torch.set_default_dtype(torch.float32)


def _jacobian_logdet(fn, x, ctx):
    """log|det J| of fn at each sample, by autograd on the flattened single-sample map."""
    out = []
    for i in range(x.shape[0]):
        c = None if ctx is None else ctx[i : i + 1]

        def flat(v, i=i, c=c):
            return fn(v.view(1, *x.shape[1:]), context=c)[0].reshape(-1)

        jac = jacobian(flat, x[i].reshape(-1))
        out.append(torch.linalg.slogdet(jac)[1])
    return torch.stack(out)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_logabsdet_matches_autograd_jacobian(case, float64):
    transform = built(case)
    x, ctx = inputs_for(case, 2)
    noise, logdet = transform(x, context=ctx)
    assert torch.allclose(logdet, _jacobian_logdet(transform, x, ctx), atol=1e-8, rtol=0)
    _, inv_logdet = transform.inverse(noise, context=ctx)
    expected = _jacobian_logdet(transform.inverse, noise, ctx)
    assert torch.allclose(inv_logdet, expected, atol=1e-8, rtol=0)


@pytest.mark.parametrize("case", [c for c in CASES if c.context_features], ids=lambda c: c.name)
def test_context_changes_output(case):
    transform = built(case)
    x, ctx = inputs_for(case, 3)
    y1, _ = transform(x, context=ctx)
    y2, _ = transform(x, context=ctx + 1)
    assert (y1 - y2).abs().max() > 1e-3


@pytest.mark.parametrize("case", [c for c in CASES if c.starts_as_identity], ids=lambda c: c.name)
def test_identity_at_init(case):
    transform = case.build()
    x, ctx = inputs_for(case, 3)
    y, logdet = transform(x, context=ctx)
    assert torch.equal(y, x) and torch.equal(logdet, torch.zeros(3))


@pytest.mark.parametrize("case", [c for c in CASES if c.name != "logit"], ids=lambda c: c.name)
def test_gradients_reach_every_parameter(case, float64):
    transform = built(case).train()
    x, ctx = inputs_for(case, 3)
    noise, logdet = transform(x, context=ctx)
    (noise.square().sum() - logdet.sum()).backward()
    for name, p in transform.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_save_load_round_trip(case):
    transform = built(case)
    buffer = io.BytesIO()
    torch.save(transform.state_dict(), buffer)
    buffer.seek(0)
    fresh = case.build()
    fresh.load_state_dict(torch.load(buffer))
    fresh.eval()
    x, ctx = inputs_for(case, 3)
    for a, b in zip(transform(x, context=ctx), fresh(x, context=ctx)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("case", [c for c in CASES if not c.name.startswith(("actnorm", "logit"))],
                         ids=lambda c: c.name)
def test_bad_shapes_raise_value_errors_naming_shapes(case):
    transform = built(case)
    x, ctx = inputs_for(case, 2)
    wrong = torch.randn(2, *case.shape[:-1], case.shape[-1] + 2)
    with pytest.raises(ValueError, match=r"expected shape .*got"):
        transform(wrong, context=ctx)
    with pytest.raises(ValueError, match=r"expected shape .*got"):
        transform.inverse(wrong, context=ctx)
    if ctx is not None:
        with pytest.raises(ValueError, match=rf"\(2, {case.context_features}\), got \(2, 7\)"):
            transform(x, context=torch.randn(2, 7))
        with pytest.raises(ValueError, match="context"):
            transform(x, context=None)
    else:
        with pytest.raises(ValueError, match="takes no context"):
            transform(x, context=torch.randn(2, 3))


def test_construction_rejects_unsqueezable_shapes():
    with pytest.raises(ValueError, match=r"divisible by .*\(1, 7, 8\)|\(1, 7, 8\).*divisible"):
        ConditionalRealNVP((1, 7, 8), num_scales=2)
    with pytest.raises(ValueError, match="even H and W"):
        ConditionalAffineCoupling((1, 5, 4), conv(ConcatConditioner, None), mask="checkerboard",
                                  checkerboard="squeezed")
    with pytest.raises(ValueError, match="at least 2 channels"):
        ConditionalAffineCoupling((1, 4, 4), conv(ConcatConditioner, None), mask="channel")


def test_squeeze_is_a_permutation_and_unsqueeze_inverts_it():
    x = torch.arange(2 * 4 * 6).view(1, 2, 4, 6)
    s = squeeze(x)
    assert s.shape == (1, 8, 2, 3)
    assert torch.equal(s.flatten().sort().values, x.flatten())
    assert torch.equal(unsqueeze(s), x)
    # channel (2i + j) C + c holds pixel (2h + i, 2w + j) of channel c
    assert s[0, (2 * 1 + 0) * 2 + 1, 1, 2] == x[0, 1, 2 * 1 + 1, 2 * 2 + 0]


@pytest.mark.parametrize("parity", [0, 1])
def test_masked_and_squeezed_checkerboards_change_the_same_pixels(parity):
    x = torch.randn(1, 2, 4, 6)
    changed = {}
    for kind in ("masked", "squeezed"):
        layer = ConditionalAffineCoupling((2, 4, 6), conv(ConcatConditioner, None),
                                          mask="checkerboard", parity=parity, checkerboard=kind)
        with torch.no_grad():
            layer.conditioner.out.bias.fill_(0.5)  # a constant shift moves every changed pixel
        changed[kind] = layer(x)[0] != x
    assert torch.equal(changed["masked"], changed["squeezed"])
    rows, cols = torch.meshgrid(torch.arange(4), torch.arange(6), indexing="ij")
    assert torch.equal(changed["masked"][0, 0], (rows + cols) % 2 != parity)


def test_logit_transform_matches_formula(float64):
    x = torch.rand(3, 1, 2, 2)
    y, logdet = LogitTransform(0.05)(x)
    s = 0.05 + 0.9 * x
    assert torch.allclose(y, torch.log(s / (1 - s)))
    assert torch.allclose(logdet, torch.log(0.9 / (s * (1 - s))).flatten(1).sum(1))


@pytest.mark.parametrize("case", [c for c in CASES if "coupling" in c.name or "realnvp" in c.name],
                         ids=lambda c: c.name)
def test_bf16_networks_keep_the_inverse_and_logdet_exact(case):
    """Under ``accelerate(precision="bf16")`` the conditioner networks run in bfloat16, yet
    each coupling stays an exact bijection whose log-det is that of the map it computes (the
    unchanged half reproduces the same bfloat16 scale and shift in both directions). In a
    stack, a float32 rounding difference can round a later network input to another
    bfloat16 value: these small flows still invert to 1e-5, the paper-size ones to ~1e-3
    (benchmarks/transforms.py checks those)."""
    from flowvae.train import accelerate

    transform = built(case)
    x, ctx = inputs_for(case, 2)
    full, _ = transform(x, context=ctx)
    assert accelerate(transform, precision="bf16") > 0
    noise, logdet = transform(x, context=ctx)
    assert noise.dtype == logdet.dtype == torch.float32
    assert not torch.equal(noise, full) and torch.allclose(noise, full, atol=0.05)
    assert (transform.inverse(noise, context=ctx)[0] - x).abs().max() < 1e-5
    # one coupling's Jacobian is triangular: its determinant ignores the bfloat16 noise of the
    # off-diagonal block; a composition's numerical Jacobian mixes that noise in (~1e-3)
    tol = 1e-4 if case.name.startswith("coupling") else 3e-3
    assert torch.allclose(logdet, _jacobian_logdet(transform, x, ctx), atol=tol, rtol=0)


# ------------------------------------------------------------- LogitTransform at saturation
EXTREME_LOGITS = [-1e3, -100.0, -40.0, -20.0, -16.6, -5.0, 0.0, 5.0, 16.6, 20.0, 40.0, 100.0, 1e3]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("alpha", [0.05, 0.0])
def test_logit_transform_scores_every_output_of_its_inverse(dtype, alpha):
    """Every ``inverse`` output, saturated ends included, lies in the closed domain and is
    scored again with a finite value and log-det; where ``inverse`` does not saturate,
    ``forward`` agrees with the float64 (float32 inputs) closed form of the same ``x``, and its
    log-det with the autograd derivative."""
    t = LogitTransform(alpha)
    y = torch.tensor(EXTREME_LOGITS, dtype=dtype).reshape(-1, 1)
    x, _ = t.inverse(y)
    low, high = -alpha / (1 - 2 * alpha), (1 - alpha) / (1 - 2 * alpha)
    assert ((x >= low) & (x <= high)).all()
    assert (x == high).any() and (alpha == 0 or (x == low).any())  # the ends are reached
    x = x.detach().requires_grad_(True)
    again, logdet = t(x)
    assert again.dtype == logdet.dtype == dtype
    assert torch.isfinite(again).all() and torch.isfinite(logdet).all()
    assert (again.diff(dim=0) >= 0).all()  # still monotone through the saturated ends
    grad, = torch.autograd.grad(again.sum(), x)
    inside = ((x > low) & (x < high)).squeeze(1)
    assert torch.allclose(logdet[inside], grad[inside, 0].log(), rtol=1e-5, atol=1e-5)
    if dtype == torch.float32:  # float64 is the ground truth of a float32 input
        # the domain's ends are float32 numbers: s = (x - low) / (high - low) with those ends
        low32, high32 = (torch.tensor(v).double() for v in (low, high))
        s = (x.detach().double() - low32) / (high32 - low32)
        assert torch.allclose(again.detach()[inside].double(), (s / (1 - s)).log()[inside],
                              rtol=1e-5, atol=1e-4)
        expected = (math.log(1 - 2 * alpha) - s.log() - (1 - s).log())[inside, 0]
        assert torch.allclose(logdet.detach()[inside].double(), expected, rtol=1e-5, atol=1e-4)
    # the score of a saturated end is the inverse's own log-det at the logit it returns
    back, inverse_logdet = t.inverse(again.detach())
    assert torch.allclose(back, x.detach(), rtol=0, atol=4 * torch.finfo(dtype).eps)
    ends = ((x == high) | (x == low)).detach() if alpha else (x == high).detach()
    assert torch.equal(back[ends], x.detach()[ends])
    assert torch.allclose(inverse_logdet, -logdet.detach(), rtol=1e-6, atol=1e-6)


def test_logit_transform_round_trips_far_into_the_tails(float64):
    y = torch.linspace(-20, 20, 401).reshape(-1, 1)  # x resolves y to 1e-7 there
    x, inverse_logdet = LogitTransform(0.05).inverse(y)
    again, logdet = LogitTransform(0.05)(x)
    assert torch.allclose(again, y, atol=1e-6)
    assert torch.allclose(logdet, -inverse_logdet, atol=1e-6)


def test_logit_transform_refuses_what_lies_outside_only_with_validation_on():
    import pyro
    from nflows.transforms.base import InputOutsideDomain

    t = LogitTransform(0.05)
    for bad in (-0.06, 1.06, math.nan):
        with pytest.raises(InputOutsideDomain, match="defined on"):
            t(torch.tensor([[0.5, bad]]))
    pyro.enable_validation(False)
    try:  # no host synchronisation: the value is NaN instead of an error
        y, logdet = t(torch.tensor([[0.5, -0.06]]))
    finally:
        pyro.enable_validation(True)
    assert torch.isnan(y[0, 1]) and torch.isnan(logdet).all()


def test_logit_flow_distribution_scores_every_sample_it_draws():
    """Issue 21's case: a wide base saturates LogitTransform's inverse (16 of 500 samples
    could not be scored again before)."""
    from nflows.transforms import CompositeTransform

    from flowvae.distributions import FlowDistribution

    flow = CompositeTransform([LogitTransform(0.05), ConditionalRealNVP((4,), None,
                                                                       hidden_features=8)])
    d = FlowDistribution(flow, torch.zeros(4), torch.full((4,), 5.0), event_shape=(4,))
    x = d.sample((500,)).clone()  # a copy: no cached log-density
    log_p = d.log_prob(x)
    assert log_p.shape == (500,) and torch.isfinite(log_p).all()
    assert ((x == 1 / 0.9 - 0.05 / 0.9) | (x == -0.05 / 0.9)).any()  # some are saturated
