"""Property-based tests (hypothesis) of the public transforms and the flow distribution.

Hypothesis draws the architecture (transform kind, shape, mask, parity, context width, scales,
ActNorm), the batch size, the dtype and the scale of the inputs (1e-6 to 1e4, zeros), and checks:

* ``inverse(forward(x)) == x`` and ``forward(inverse(v)) == v``, with log-dets that cancel;
* the log-det against the autograd Jacobian (float64, at most 32 dimensions);
* on arbitrary, often bad, arguments (NaN, inf, huge values, integer/float16/float64 tensors,
  empty batches, wrong shapes and contexts): a ValueError/TypeError whose message starts with
  the transform's name, or a finite result of the right shape and dtype;
* ``FlowDistribution.log_prob`` equals the change-of-variables formula evaluated by hand, for
  any sample and batch shape.

Tolerances are relative to the largest magnitude a computation handles, since a coupling's
shift grows with its input and float rounding is relative.
"""

from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional, Tuple

import pyro
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.autograd.functional import jacobian

from flowvae.distributions import FlowDistribution
from flowvae.transforms import (
    ConcatConditioner,
    ConditionalAffineCoupling,
    ConditionalRealNVP,
    MLPConditioner,
    MultiplicativeConditioner,
)

# derandomized: the same examples on every run, no example database written into the tree
FAST = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
DTYPES = {torch.float32: 2e-5, torch.float64: 1e-11}  # relative tolerance of a round trip


@dataclass
class Drawn:
    name: str
    build: Callable[[], torch.nn.Module]
    shape: Tuple[int, ...]
    context_features: Optional[int]


def _mlp(ctx, i, o, size):
    return MLPConditioner(i, o, context_features=ctx, hidden_features=8)


def _conv(cls, ctx, i, o, size):
    return cls(i, o, size, context_features=ctx, hidden_channels=4, num_blocks=1)


@st.composite
def transforms(draw, max_dims: int = 32):
    """A small public transform, described by its build function, shape and context width."""
    ctx = draw(st.one_of(st.none(), st.integers(1, 3)))
    kind = draw(st.sampled_from(["coupling-vector", "coupling-channel", "coupling-masked",
                                 "coupling-squeezed", "realnvp-image", "realnvp-vector"]))
    parity = draw(st.integers(0, 1))
    cls = draw(st.sampled_from([MultiplicativeConditioner, ConcatConditioner]))
    if kind == "coupling-vector":
        shape = (draw(st.integers(2, 6)),)
        build = partial(ConditionalAffineCoupling, shape, partial(_mlp, ctx), parity=parity)
    elif kind in ("coupling-channel", "coupling-masked"):
        shape = (draw(st.integers(2 if kind == "coupling-channel" else 1, 3)),
                 draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        mask = "channel" if kind == "coupling-channel" else "checkerboard"
        build = partial(ConditionalAffineCoupling, shape, partial(_conv, cls, ctx), mask=mask,
                        parity=parity)
    elif kind == "coupling-squeezed":
        shape = (draw(st.integers(1, 2)), draw(st.sampled_from([2, 4])),
                 draw(st.sampled_from([2, 4])))
        build = partial(ConditionalAffineCoupling, shape, partial(_conv, cls, ctx),
                        mask="checkerboard", parity=parity, checkerboard="squeezed")
    elif kind == "realnvp-image":
        scales = draw(st.integers(1, 2))
        unit = 2 ** (scales - 1)
        shape = (draw(st.integers(1, 2)), unit * draw(st.integers(1, 2)),
                 unit * draw(st.integers(1, 2)))
        build = partial(
            ConditionalRealNVP, shape, ctx, num_scales=scales, num_checkerboard=2,
            num_channelwise=draw(st.integers(0, 2)), num_final=2, hidden_channels=4,
            num_blocks=1, conditioner=draw(st.sampled_from(["multiplicative", "concat"])),
            checkerboard=draw(st.sampled_from(["masked", "squeezed"]))
            if shape[1] % (2 * unit) == 0 and shape[2] % (2 * unit) == 0 else "masked",
            actnorm=draw(st.booleans()),
        )
    else:
        shape = (draw(st.integers(2, 6)),)
        build = partial(ConditionalRealNVP, shape, ctx, num_couplings=draw(st.integers(1, 3)),
                        hidden_features=8, actnorm=draw(st.booleans()))
    numel = torch.Size(shape).numel()
    if numel > max_dims:
        shape, build = (4,), partial(ConditionalAffineCoupling, (4,), partial(_mlp, ctx))
    return Drawn(kind, build, shape, ctx)


def built(case: Drawn, dtype: torch.dtype, seed: int):
    """The transform in ``dtype`` with data-dependent init done and its parameters moved off
    their (identity) initialisation, in evaluation mode."""
    torch.manual_seed(seed)
    transform = case.build().to(dtype)
    x = torch.randn(8, *case.shape, dtype=dtype)
    ctx = None if case.context_features is None else torch.randn(8, case.context_features,
                                                                  dtype=dtype)
    transform(x, context=ctx)  # ActNorm initialises on its first training pass
    with torch.no_grad():
        for p in transform.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return transform.eval()


def inputs(case: Drawn, batch: int, dtype: torch.dtype, log10_scale: float):
    x = torch.randn(batch, *case.shape, dtype=dtype) * 10.0 ** log10_scale
    ctx = None if case.context_features is None else torch.randn(
        batch, case.context_features, dtype=dtype)
    return x, ctx


scales = st.one_of(st.floats(-6, 4), st.just(float("-inf")))  # -inf: an all-zero input


@FAST
@given(case=transforms(), batch=st.integers(1, 4), dtype=st.sampled_from(list(DTYPES)),
       log10_scale=scales, seed=st.integers(0, 2**16))
def test_inverse_undoes_forward(case, batch, dtype, log10_scale, seed):
    transform = built(case, dtype, seed)
    x, ctx = inputs(case, batch, dtype, log10_scale)
    with torch.no_grad():
        noise, logdet = transform(x, context=ctx)
        back, logdet_back = transform.inverse(noise, context=ctx)
        v = torch.randn_like(x)
        x_of_v, logdet_v = transform.inverse(v, context=ctx)
        v_back, _ = transform(x_of_v, context=ctx)
    assert noise.shape == x.shape and noise.dtype == dtype and logdet.shape == (batch,)
    assert torch.isfinite(noise).all() and torch.isfinite(logdet).all()
    tol = DTYPES[dtype]
    magnitude = 1 + max(x.abs().max(), noise.abs().max())
    assert (back - x).abs().max() <= tol * magnitude
    assert (logdet + logdet_back).abs().max() <= tol * (1 + logdet.abs().max()) * magnitude
    assert (v_back - v).abs().max() <= tol * (1 + x_of_v.abs().max())
    assert torch.isfinite(logdet_v).all()


def _jacobian_logdet(fn, x, ctx):
    out = []
    for i in range(x.shape[0]):
        c = None if ctx is None else ctx[i : i + 1]

        def flat(v, c=c):
            return fn(v.view(1, *x.shape[1:]), context=c)[0].reshape(-1)

        out.append(torch.linalg.slogdet(jacobian(flat, x[i].reshape(-1)))[1])
    return torch.stack(out)


@FAST
@given(case=transforms(max_dims=16), batch=st.integers(1, 2),
       log10_scale=st.floats(-2, 2), seed=st.integers(0, 2**16))
def test_logabsdet_is_the_log_abs_jacobian_determinant(case, batch, log10_scale, seed):
    transform = built(case, torch.float64, seed)
    x, ctx = inputs(case, batch, torch.float64, log10_scale)
    noise, logdet = transform(x, context=ctx)
    expected = _jacobian_logdet(transform, x, ctx)
    assert torch.allclose(logdet, expected, atol=1e-8, rtol=1e-10)
    _, inv_logdet = transform.inverse(noise, context=ctx)
    assert torch.allclose(inv_logdet, _jacobian_logdet(transform.inverse, noise, ctx),
                          atol=1e-8, rtol=1e-10)


# ---- arbitrary arguments: a clear error or a finite result ---------------------------------

SPECIAL = [float("nan"), float("inf"), -float("inf"), 1e30, -1e30, 0.0, -0.0, 1e-40]


@st.composite
def arguments(draw, case: Drawn):
    """Inputs and context that are right most of the time and wrong in one or more ways."""
    batch = draw(st.integers(0, 3))
    shape = list(case.shape)
    if draw(st.integers(0, 5)) == 0:  # a wrong event shape
        shape[draw(st.integers(0, len(shape) - 1))] += draw(st.sampled_from([-1, 1, 2]))
        shape = [max(s, 0) for s in shape]
    dtype = draw(st.sampled_from([torch.float32] * 4 + [torch.float64, torch.float16,
                                                        torch.int64, torch.uint8]))
    x = torch.randn(batch, *shape) * 10.0 ** draw(st.floats(-3, 3))
    if x.numel() and draw(st.booleans()):
        x.view(-1)[draw(st.integers(0, x.numel() - 1))] = draw(st.sampled_from(SPECIAL))
    x = (x.abs() * 50).to(dtype) if not dtype.is_floating_point else x.to(dtype)
    width = case.context_features or 2
    context_kind = draw(st.sampled_from(["right"] * 4 + ["none", "wide", "batch", "nan",
                                                         "float64"]))
    ctx = torch.randn(batch, width)
    if context_kind == "none":
        ctx = None
    elif context_kind == "wide":
        ctx = torch.randn(batch, width + 1)
    elif context_kind == "batch":
        ctx = torch.randn(batch + 1, width)
    elif context_kind == "nan" and batch:
        ctx[0, 0] = draw(st.sampled_from(SPECIAL[:3]))
    elif context_kind == "float64":
        ctx = ctx.double()
    if case.context_features is None and context_kind == "right":
        ctx = None
    return x, ctx


@settings(FAST, max_examples=100)
@given(data=st.data(), case=transforms(), direction=st.sampled_from(["forward", "inverse"]))
def test_any_arguments_give_a_clear_error_or_a_finite_result(data, case, direction):
    transform = built(case, torch.float32, 0)
    x, ctx = data.draw(arguments(case))
    name = type(transform).__name__
    try:
        y, logdet = getattr(transform, direction)(x, context=ctx)
    except (ValueError, TypeError) as err:
        assert str(err).startswith(name), f"not flowvae's message: {err!r}"
        return
    assert y.shape == x.shape and logdet.shape == x.shape[:1] and y.dtype == torch.float32
    assert torch.isfinite(y).all() and torch.isfinite(logdet).all()


@FAST
@given(case=transforms(), batch=st.integers(1, 3), bad=st.sampled_from(SPECIAL[:3]),
       where=st.sampled_from(["inputs", "context"]))
def test_validation_switch_decides_whether_values_are_read(case, batch, bad, where):
    """With Pyro's validation off a NaN/inf passes (no value is read on the host); on, it is
    named."""
    transform = built(case, torch.float32, 0)
    x, ctx = inputs(case, batch, torch.float32, 0.0)
    if where == "context" and ctx is None:
        where = "inputs"
    (x if where == "inputs" else ctx).view(-1)[0] = bad
    with pytest.raises(ValueError, match=rf"^{type(transform).__name__}.*{where}: expected "
                                         r"finite values, got"):
        transform(x, context=ctx)
    pyro.enable_validation(False)
    try:
        y, _ = transform(x, context=ctx)
    finally:
        pyro.enable_validation(True)
    assert not torch.isfinite(y).all()


# ---- FlowDistribution: log_prob is the change of variables --------------------------------

@FAST
@given(case=transforms(max_dims=16), sample_shape=st.lists(st.integers(1, 2), max_size=2),
       batch_shape=st.lists(st.integers(1, 3), max_size=2),
       dtype=st.sampled_from(list(DTYPES)), seed=st.integers(0, 2**16))
def test_flow_distribution_log_prob_is_the_change_of_variables(
        case, sample_shape, batch_shape, dtype, seed):
    transform = built(case, dtype, seed)
    batch_shape, sample_shape = torch.Size(batch_shape), torch.Size(sample_shape)
    event = torch.Size(case.shape)
    loc = torch.randn(batch_shape + event, dtype=dtype)
    scale = torch.rand(batch_shape + event, dtype=dtype) + 0.5
    ctx = None if case.context_features is None else torch.randn(
        *batch_shape, case.context_features, dtype=dtype)
    d = FlowDistribution(transform, loc, scale, context=ctx)
    assert d.batch_shape == batch_shape and d.event_shape == event
    with torch.no_grad():
        x = d.sample(sample_shape)
        log_prob = d.log_prob(x)
        assert x.shape == sample_shape + batch_shape + event and x.dtype == dtype
        assert log_prob.shape == sample_shape + batch_shape
        # by hand, one event at a time
        flat_x = x.reshape(-1, *event)
        n = flat_x.shape[0]
        flat_loc = loc.expand(sample_shape + batch_shape + event).reshape(n, *event)
        flat_scale = scale.expand(sample_shape + batch_shape + event).reshape(n, *event)
        flat_ctx = None if ctx is None else ctx.expand(
            *sample_shape, *batch_shape, ctx.shape[-1]).reshape(n, -1)
        noise, logdet = transform(flat_x, context=flat_ctx)
        base = torch.distributions.Normal(flat_loc, flat_scale).log_prob(noise)
        expected = (base.reshape(n, -1).sum(1) + logdet).reshape(log_prob.shape)
    tol = DTYPES[dtype] * 50 * (1 + expected.abs().max())
    assert (log_prob - expected).abs().max() <= tol
