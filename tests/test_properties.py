"""Property-based tests (hypothesis) of the public transforms and the flow distribution.

Hypothesis draws the architecture (a family of ``tests/test_transforms.py``'s case table, and
in it the shape, partition parity, conditioner, context width, scales, ActNorm), the batch size,
the dtype and the scale of the inputs (1e-6 to 1e4, zeros), and checks:

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

from dataclasses import replace
from math import prod

import pyro
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_transforms import CASES, built, inputs_for, jacobian_logdet

from flowvae.distributions import FlowDistribution

# derandomized: the same examples on every run, no example database written into the tree
FAST = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
DTYPES = {torch.float32: 2e-5, torch.float64: 1e-11}  # relative tolerance of a round trip
#: the families of tests/test_transforms.py's case table that hypothesis explores
FAMILIES = [case for case in CASES if case.space is not None]


@st.composite
def transforms(draw, max_dims: int = 32):
    """A small public transform: a line of the case table with the shape, options and context
    width drawn from its family."""
    case = draw(st.sampled_from(FAMILIES))
    ctx = draw(st.one_of(st.none(), st.integers(1, 3)))
    drawn = case.space(draw)
    shape = drawn.pop("shape")
    if prod(shape) > max_dims:
        return replace(CASES[0], context_features=ctx)  # a (4,) coupling
    return replace(case, shape=shape, context_features=ctx, options={**case.options, **drawn})


def inputs(case, batch: int, dtype: torch.dtype, log10_scale: float):
    return inputs_for(case, batch, dtype, 10.0 ** log10_scale)


scales = st.one_of(st.floats(-6, 4), st.just(float("-inf")))  # -inf: an all-zero input


@FAST
@given(case=transforms(), batch=st.integers(1, 4), dtype=st.sampled_from(list(DTYPES)),
       log10_scale=scales, seed=st.integers(0, 2**16))
def test_inverse_undoes_forward(case, batch, dtype, log10_scale, seed):
    transform = built(case, dtype, seed, amount=0.3, init_batch=8)
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


@FAST
@given(case=transforms(max_dims=16), batch=st.integers(1, 2),
       log10_scale=st.floats(-2, 2), seed=st.integers(0, 2**16))
def test_logabsdet_is_the_log_abs_jacobian_determinant(case, batch, log10_scale, seed):
    transform = built(case, torch.float64, seed, amount=0.3, init_batch=8)
    x, ctx = inputs(case, batch, torch.float64, log10_scale)
    noise, logdet = transform(x, context=ctx)
    expected = jacobian_logdet(transform, x, ctx)
    assert torch.allclose(logdet, expected, atol=1e-8, rtol=1e-10)
    _, inv_logdet = transform.inverse(noise, context=ctx)
    assert torch.allclose(inv_logdet, jacobian_logdet(transform.inverse, noise, ctx),
                          atol=1e-8, rtol=1e-10)


# ---- arbitrary arguments: a clear error or a finite result ---------------------------------

SPECIAL = [float("nan"), float("inf"), -float("inf"), 1e30, -1e30, 0.0, -0.0, 1e-40]


@st.composite
def arguments(draw, case):
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
    transform = built(case, torch.float32, 0, amount=0.3, init_batch=8)
    x, ctx = data.draw(arguments(case))
    name = transform.entry_name  # ConditionalRealNVP for the flow it built
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
    transform = built(case, torch.float32, 0, amount=0.3, init_batch=8)
    x, ctx = inputs(case, batch, torch.float32, 0.0)
    if where == "context" and ctx is None:
        where = "inputs"
    (x if where == "inputs" else ctx).view(-1)[0] = bad
    with pytest.raises(ValueError, match=rf"^{transform.entry_name}.*{where}: expected "
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
    transform = built(case, dtype, seed, amount=0.3, init_batch=8)
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
