"""One generic test for every Transform in flowvae: add a transform by adding a line to CASES."""

import io
import math
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Optional, Tuple

import pyro
import pytest
import torch
from hypothesis import strategies as st
from torch.autograd.functional import jacobian

from flowvae.transforms import (
    ActNorm,
    AffineCoupling,
    CheckerboardMask,
    ConcatConditioner,
    ConditionalAffineCoupling,
    ConditionalRealNVP,
    LogitTransform,
    MLPConditioner,
    MultiplicativeConditioner,
    MultiscaleRealNVP,
    Partition,
    SqueezedCheckerboard,
    VectorRealNVP,
    squeeze,
    unsqueeze,
)
from flowvae.transforms.partitions import PARTITIONS


def mlp(ctx, i, o, size):
    return MLPConditioner(i, o, context_features=ctx, hidden_features=8)


def conv(cls, ctx, i, o, size):
    return cls(i, o, size, context_features=ctx, hidden_channels=4, num_blocks=1)


def coupling(shape, context_features, partition="channel", parity=0,
             conditioner=MultiplicativeConditioner):
    """A ConditionalAffineCoupling with an MLP (vectors) or a small conv conditioner."""
    factory = (partial(mlp, context_features) if len(shape) == 1
               else partial(conv, conditioner, context_features))
    return ConditionalAffineCoupling(shape, factory, partition, parity=parity)


@dataclass
class Case:
    """One line of the table of transforms that the generic checks here and the property tests
    (``tests/test_properties.py``) share: ``make(shape, context_features, **options)`` builds
    it; ``space(draw)``, where given, draws ``shape`` and options of the same family for
    hypothesis (the property tests explore those families; the context is drawn there)."""

    name: str
    make: Callable
    shape: Tuple[int, ...]
    context_features: Optional[int] = None
    options: dict = field(default_factory=dict)
    unit_interval: bool = False  # inputs must lie in [0, 1]
    starts_as_identity: bool = True
    space: Optional[Callable] = None

    def build(self):
        return self.make(self.shape, self.context_features, **self.options)


def _parity_and_conditioner(draw) -> dict:
    return dict(parity=draw(st.integers(0, 1)), conditioner=draw(st.sampled_from(
        [MultiplicativeConditioner, ConcatConditioner])))


def _vector_coupling_space(draw) -> dict:
    return dict(shape=(draw(st.integers(2, 6)),), parity=draw(st.integers(0, 1)))


def _image_coupling_space(smallest_channels: int):
    def space(draw) -> dict:
        shape = (draw(st.integers(smallest_channels, 3)), draw(st.integers(1, 4)),
                 draw(st.integers(1, 4)))
        return dict(shape=shape, **_parity_and_conditioner(draw))
    return space


def _squeezed_space(draw) -> dict:
    shape = (draw(st.integers(1, 2)), draw(st.sampled_from([2, 4])), draw(st.sampled_from([2, 4])))
    return dict(shape=shape, **_parity_and_conditioner(draw))


def _image_flow_space(draw) -> dict:
    scales = draw(st.integers(1, 2))
    unit = 2 ** (scales - 1)
    shape = (draw(st.integers(1, 2)), unit * draw(st.integers(1, 2)),
             unit * draw(st.integers(1, 2)))
    return dict(shape=shape, num_scales=scales, num_channelwise=draw(st.integers(0, 2)),
                conditioner=draw(st.sampled_from(["multiplicative", "concat"])),
                checkerboard=draw(st.sampled_from(["masked", "squeezed"]))
                if shape[1] % (2 * unit) == 0 and shape[2] % (2 * unit) == 0 else "masked",
                actnorm=draw(st.booleans()))


def _vector_flow_space(draw) -> dict:
    return dict(shape=(draw(st.integers(2, 6)),), num_couplings=draw(st.integers(1, 3)),
                actnorm=draw(st.booleans()))


SMALL = dict(hidden_channels=4, num_blocks=1, num_checkerboard=2, num_channelwise=2, num_final=2)
CASES = [
    Case("coupling-vector", coupling, (4,), 3, space=_vector_coupling_space),
    Case("coupling-vector-odd", coupling, (5,), options=dict(parity=1)),
    Case("coupling-channel", coupling, (3, 4, 4), 2, dict(parity=1),
         space=_image_coupling_space(2)),
    Case("coupling-masked-mult", coupling, (1, 4, 4), 3, dict(partition="masked"),
         space=_image_coupling_space(1)),
    Case("coupling-masked-concat", coupling, (2, 4, 4), 3,
         dict(partition="masked", parity=1, conditioner=ConcatConditioner)),
    Case("coupling-squeezed", coupling, (2, 4, 4), 3, dict(partition="squeezed"),
         space=_squeezed_space),
    Case("coupling-squeezed-uncond", coupling, (1, 4, 6), None,
         dict(partition="squeezed", parity=1, conditioner=ConcatConditioner)),
    Case("affine-coupling", lambda shape, ctx: AffineCoupling(
        CheckerboardMask(shape, parity=1), conv(MultiplicativeConditioner, ctx, 1, 2, (4, 4))),
        (1, 4, 4), 2),
    Case("realnvp-image-masked", ConditionalRealNVP, (1, 4, 4), 3, SMALL,
         space=_image_flow_space),
    Case("realnvp-image-squeezed-concat", ConditionalRealNVP, (2, 4, 4), 3,
         dict(SMALL, conditioner="concat", checkerboard="squeezed")),
    Case("realnvp-image-uncond-3scales", ConditionalRealNVP, (1, 8, 4), None,
         dict(SMALL, num_scales=3, num_checkerboard=1, num_channelwise=1, num_final=1)),
    Case("realnvp-image-actnorm", ConditionalRealNVP, (1, 4, 4), 2, dict(SMALL, actnorm=True),
         starts_as_identity=False),
    Case("realnvp-vector", ConditionalRealNVP, (5,), 2, dict(hidden_features=8),
         space=_vector_flow_space),
    Case("realnvp-vector-actnorm", ConditionalRealNVP, (4,), None,
         dict(actnorm=True, hidden_features=8), starts_as_identity=False),
    Case("multiscale-realnvp", MultiscaleRealNVP, (2, 4, 4), None, dict(SMALL, num_scales=1)),
    Case("vector-realnvp", VectorRealNVP, (3,), 1, dict(hidden_features=8, num_couplings=3)),
    Case("actnorm-image", lambda shape, ctx: ActNorm(shape[0]), (2, 3, 3),
         starts_as_identity=False),
    Case("actnorm-vector", lambda shape, ctx: ActNorm(shape[0]), (3,), starts_as_identity=False),
    Case("logit", lambda shape, ctx: LogitTransform(0.05), (1, 3, 3), unit_interval=True,
         starts_as_identity=False),
]


def inputs_for(case, batch, dtype=None, scale=1.0):
    """Inputs ``(batch, *shape)`` (in ``[0, 1]`` where the case needs it, else normal times
    ``scale``) and a context, or None, in ``dtype`` (default: torch's default dtype)."""
    x = (torch.rand(batch, *case.shape, dtype=dtype) if case.unit_interval
         else torch.randn(batch, *case.shape, dtype=dtype) * scale)
    ctx = None if case.context_features is None else torch.randn(batch, case.context_features,
                                                                  dtype=dtype)
    return x, ctx


def built(case, dtype=None, seed=None, amount=0.1, init_batch=16):
    """The transform (in ``dtype``) with data-dependent init done and every parameter moved
    off its init by ``amount`` times a normal draw, in evaluation mode."""
    if seed is not None:
        torch.manual_seed(seed)
    transform = case.build()
    if dtype is not None:
        transform = transform.to(dtype)
    x, ctx = inputs_for(case, init_batch, dtype)
    transform(x, context=ctx)  # ActNorm initialises itself on the first training pass
    with torch.no_grad():
        for p in transform.parameters():
            p.add_(amount * torch.randn_like(p))
    return transform.eval()


def jacobian_logdet(fn, x, ctx):
    """log|det J| of fn at each sample, by autograd on the flattened single-sample map."""
    out = []
    for i in range(x.shape[0]):
        c = None if ctx is None else ctx[i : i + 1]

        def flat(v, c=c):
            return fn(v.view(1, *x.shape[1:]), context=c)[0].reshape(-1)

        out.append(torch.linalg.slogdet(jacobian(flat, x[i].reshape(-1)))[1])
    return torch.stack(out)


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


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_logabsdet_matches_autograd_jacobian(case, float64):
    transform = built(case)
    x, ctx = inputs_for(case, 2)
    noise, logdet = transform(x, context=ctx)
    assert torch.allclose(logdet, jacobian_logdet(transform, x, ctx), atol=1e-8, rtol=0)
    _, inv_logdet = transform.inverse(noise, context=ctx)
    expected = jacobian_logdet(transform.inverse, noise, ctx)
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
        coupling((1, 5, 4), None, "squeezed", conditioner=ConcatConditioner)
    with pytest.raises(ValueError, match="at least 2 channels"):
        coupling((1, 4, 4), None, "channel", conditioner=ConcatConditioner)


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
        layer = coupling((2, 4, 6), None, kind, parity, ConcatConditioner)
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
    tol = 1e-4 if "coupling" in case.name else 3e-3
    assert torch.allclose(logdet, jacobian_logdet(transform, x, ctx), atol=tol, rtol=0)


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


# ------------------------------------------------------------- the family: kinds and partitions
IMAGE_ONLY = dict(num_scales=2, num_checkerboard=1, num_channelwise=1, num_final=1,
                  hidden_channels=4, num_blocks=1, conditioner="concat", checkerboard="masked")
VECTOR_ONLY = dict(num_couplings=2, hidden_features=4, num_layers=1)


@pytest.mark.parametrize("shape,kind", [((1, 4, 4), MultiscaleRealNVP), ((3,), VectorRealNVP)])
def test_conditional_realnvp_builds_the_kind_its_shape_asks_for(shape, kind):
    """The same flow as the kind's own constructor at the same seed: same parameters, same
    outputs; still a ConditionalRealNVP."""
    options = IMAGE_ONLY if kind is MultiscaleRealNVP else VECTOR_ONLY
    torch.manual_seed(0)
    flow = ConditionalRealNVP(shape, 2, **options, actnorm=False)
    torch.manual_seed(0)
    direct = kind(shape, 2, **options)
    assert type(flow) is kind and isinstance(flow, ConditionalRealNVP)
    assert flow.entry_name == "ConditionalRealNVP" and direct.entry_name == kind.__name__
    assert flow.state_dict().keys() == direct.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(flow.state_dict().values(),
                                                 direct.state_dict().values()))


@pytest.mark.parametrize("shape,given,says", [
    # the example: vector options on an image shape were silently ignored
    ((1, 8, 8), dict(hidden_features=3, num_layers=7, num_couplings=9),
     r"shape \(1, 8, 8\) makes the image flow \(MultiscaleRealNVP\), which does not take "
     r"hidden_features \(vector flow\), num_layers \(vector flow\), num_couplings \(vector "
     r"flow\); its options: num_scales"),
    ((4,), dict(conditioner="nonsense"),
     r"shape \(4,\) makes the vector flow \(VectorRealNVP\), which does not take conditioner "
     r"\(image flow\); its options: num_couplings"),
    ((4,), dict(checkerboard="masked", num_scales=2, hidden_channels=4),
     r"checkerboard \(image flow\), num_scales \(image flow\), hidden_channels \(image flow\)"),
    ((1, 4, 4), dict(num_blocks=1, nonsense=3), r"the image flow .* nonsense \(unknown\)"),
    ((4,), dict(hidden_features=4, mask="channel"), r"the vector flow .* mask \(unknown\)"),
])
def test_conditional_realnvp_refuses_options_of_the_other_kind_in_one_error(shape, given, says):
    with pytest.raises(TypeError, match="^ConditionalRealNVP: .*" + says):
        ConditionalRealNVP(shape, None, **given)


@pytest.mark.parametrize("build,error,says", [
    (lambda: ConditionalRealNVP((1, 4, 4), conditioner="nonsense"), ValueError,
     r"ConditionalRealNVP: conditioner: expected one of \('multiplicative', 'concat'\), got "
     r"'nonsense'"),
    (lambda: ConditionalRealNVP((1, 4, 4), checkerboard="diagonal"), ValueError,
     r"ConditionalRealNVP: checkerboard: expected one of \('masked', 'squeezed'\)"),
    (lambda: ConditionalRealNVP((1, 4, 4), actnorm=1), TypeError,
     r"ConditionalRealNVP: actnorm: expected a bool, got 1"),
    (lambda: ConditionalRealNVP((4,), actnorm="yes"), TypeError,
     r"ConditionalRealNVP: actnorm: expected a bool"),
    (lambda: ConditionalRealNVP((4,), num_couplings=2.0), TypeError,
     r"ConditionalRealNVP: num_couplings: expected an integer, got 2.0"),
    (lambda: ConditionalRealNVP((1,), hidden_features=4), ValueError,
     r"ConditionalRealNVP: shape: a vector RealNVP needs D >= 2, got \(1,\)"),
    (lambda: ConditionalRealNVP((1, 4, 4, 4)), ValueError,
     r"ConditionalRealNVP: shape: expected \(C, H, W\) for an image flow or \(D,\)"),
    (lambda: ConditionalRealNVP((1, 4, 4), 2, 2), TypeError,
     r"ConditionalRealNVP: takes shape and context_features by position"),
    (lambda: MultiscaleRealNVP((4,)), ValueError,
     r"MultiscaleRealNVP: shape: the image flow takes \(C, H, W\), got \(4,\)"),
    (lambda: VectorRealNVP((4,), conditioner="concat"), TypeError, r"unexpected keyword"),
    (lambda: coupling((4,), None, "diagonal"), ValueError,
     r"partition must be one of \('channel', 'masked', 'squeezed'\), got 'diagonal'"),
])
def test_bad_option_values_are_refused_on_both_branches(build, error, says):
    with pytest.raises(error, match=says):
        build()


def test_conditional_realnvps_signature_is_the_table_of_defaults():
    import inspect

    from flowvae.choices import FLOW_OPTIONS

    parameters = inspect.signature(ConditionalRealNVP).parameters
    for kind, cls in (("vector", VectorRealNVP), ("image", MultiscaleRealNVP)):
        own = inspect.signature(cls).parameters
        for name, default in FLOW_OPTIONS[kind].items():
            assert parameters[name].default == own[name].default == default, (kind, name)
        assert set(own) == {"shape", "context_features", *FLOW_OPTIONS[kind]}


@pytest.mark.parametrize("old,new", [
    (dict(mask="channel"), "channel"),
    (dict(mask="checkerboard"), "masked"),
    (dict(mask="checkerboard", checkerboard="squeezed"), "squeezed"),
    (dict(mask="channel", checkerboard="squeezed"), "channel"),  # as 0.3 read it
])
def test_the_old_mask_spelling_warns_and_builds_the_same_layer(old, new):
    factory = partial(conv, ConcatConditioner, 2)
    torch.manual_seed(0)
    with pytest.warns(DeprecationWarning, match=f"use partition={new!r}"):
        legacy = ConditionalAffineCoupling((2, 4, 4), factory, parity=1, **old)
    torch.manual_seed(0)
    current = ConditionalAffineCoupling((2, 4, 4), factory, new, parity=1)
    assert type(legacy.partition) is type(current.partition)
    x, ctx = torch.randn(3, 2, 4, 4), torch.randn(3, 2)
    with torch.no_grad():
        for layer in (legacy, current):
            layer.conditioner.out.bias.fill_(0.3)
    assert torch.equal(legacy(x, context=ctx)[0], current(x, context=ctx)[0])


def test_parameter_names_are_flowvae_0_3s_and_its_state_dicts_load():
    """Checkpoints of 0.3 load: the parameter names are unchanged (written out here for a
    tiny vector flow), and a masked flow's state dict that still holds the checkerboard
    masks (0.3 kept them there; now they are derived) loads strictly, to the same outputs."""
    vector = ConditionalRealNVP((3,), 2, num_couplings=2, hidden_features=4, num_layers=1)
    assert [name for name, _ in vector.named_parameters()] == [
        f"flow._transforms.{i}.{name}" for i in (0, 1) for name in (
            "scale", "conditioner.net.0.weight", "conditioner.net.0.bias",
            "conditioner.net.2.weight", "conditioner.net.2.bias")]
    flow = built(CASES[ids.index("realnvp-image-masked")])
    legacy = dict(flow.state_dict())
    masked = [name for name, m in flow.named_modules() if isinstance(m, AffineCoupling)
              and isinstance(m.partition, CheckerboardMask)]
    assert masked and not any("partition" in key for key in legacy)
    for name in masked:  # the 0.3 layout: the mask beside the coupling's scale
        legacy[f"{name}.kept_mask"] = flow.get_submodule(name).partition.kept_mask.clone()
    fresh = CASES[ids.index("realnvp-image-masked")].build().eval()
    fresh.load_state_dict(legacy)  # strict
    x, ctx = inputs_for(CASES[ids.index("realnvp-image-masked")], 2)
    assert torch.equal(fresh(x, context=ctx)[0], flow(x, context=ctx)[0])


class EvenOddSplit(Partition):
    """The docs' example of a new partition: even features stay, odd ones change."""

    def __init__(self, shape, parity=0):
        super().__init__(shape, parity)
        (features,) = self.shape
        self.in_channels = (features + 1 - parity) // 2
        self.out_channels = 2 * (features - self.in_channels)
        self.size, self.scale_shape = None, (features - self.in_channels,)

    def split(self, x):
        return x[:, self.parity :: 2], x[:, 1 - self.parity :: 2]

    def merge(self, kept, changed):
        pair = (kept, changed) if self.parity == 0 else (changed, kept)
        merged = kept.new_empty(kept.shape[0], kept.shape[1] + changed.shape[1])
        merged[:, 0::2], merged[:, 1::2] = pair
        return merged


@pytest.mark.parametrize("parity", [0, 1])
def test_a_new_partition_is_one_class_and_one_table_entry(monkeypatch, parity, float64):
    """Registered under a name, the partition is used by the builder as is, and the coupling
    it makes is exact: inverse and log-det against the autograd Jacobian, and the kept
    features pass unchanged."""
    monkeypatch.setitem(PARTITIONS, "even-odd", EvenOddSplit)
    layer = coupling((5,), 2, "even-odd", parity)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x, ctx = torch.randn(3, 5), torch.randn(3, 2)
    y, logdet = layer(x, context=ctx)
    assert torch.equal(y[:, parity::2], x[:, parity::2])
    assert not torch.allclose(y[:, 1 - parity :: 2], x[:, 1 - parity :: 2])
    assert torch.allclose(layer.inverse(y, context=ctx)[0], x, atol=1e-12)
    assert torch.allclose(logdet, jacobian_logdet(layer, x, ctx), atol=1e-10)


def test_a_flow_checks_its_arguments_once_not_in_every_layer(monkeypatch):
    from flowvae.transforms.base import CheckedTransform

    flow = built(CASES[ids.index("realnvp-image-actnorm")])
    calls = []
    original = CheckedTransform._check
    monkeypatch.setattr(CheckedTransform, "_check",
                        lambda self, *a: calls.append(self.entry_name) or original(self, *a))
    x, ctx = inputs_for(CASES[ids.index("realnvp-image-actnorm")], 2)
    noise, _ = flow(x, context=ctx)
    flow.inverse(noise, context=ctx)
    assert calls == ["ConditionalRealNVP", "ConditionalRealNVP"]
    assert sum(isinstance(m, AffineCoupling) for m in flow.modules()) == 6  # not checked


@pytest.mark.parametrize("shape,options", [
    ((1, 4, 4), dict(num_checkerboard=1, num_channelwise=1, num_final=1, hidden_channels=2,
                     num_blocks=0)),  # two scales: squeeze, both masks, the factored half
    ((3,), dict(num_couplings=2, hidden_features=2, num_layers=0)),
], ids=["image", "vector"])
def test_a_flows_forward_compiles_without_graph_breaks_with_validation_off(shape, options):
    """``torch._dynamo.explain`` of a flow's forward pass (the smallest flows of each kind,
    with ActNorm initialised): one graph, no break, while Pyro's validation is off."""
    case = Case("tiny", ConditionalRealNVP, shape, 2, dict(options, actnorm=True))
    flow = built(case)
    x, ctx = inputs_for(case, 2)
    pyro.enable_validation(False)
    try:
        torch._dynamo.reset()
        explained = torch._dynamo.explain(flow)(x, ctx)
    finally:
        pyro.enable_validation(True)
        torch._dynamo.reset()
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


def test_a_models_flow_options_reach_the_conditioner_as_given():
    """VAPNEV -> VAE -> FlowLikelihood -> ConditionalRealNVP -> conditioner: what the user
    wrote arrives, context_features is the latent's size (set once, by the VAE), and the
    likelihood's own defaults (ActNorm on) apply only where nothing was given."""
    from flowvae.models import VAE, VAPNEV

    options = dict(hidden_channels=5, num_blocks=1, num_scales=1, num_final=2,
                   checkerboard="squeezed", conditioner="concat")
    model = VAPNEV((1, 4, 4), latent_dim=3, hidden=4, flow_kwargs=options)
    couplings = [m for m in model.p_x.flow.modules() if isinstance(m, AffineCoupling)]
    assert len(couplings) == 2 and model.p_x.flow.actnorm
    for layer in couplings:
        assert isinstance(layer.partition, SqueezedCheckerboard)
        assert isinstance(layer.conditioner, ConcatConditioner)
        assert layer.conditioner.out.in_channels == 5 and layer.context_features == 3
    assert model.config["flow_kwargs"] == options  # recorded as given, nothing added
    plain = VAPNEV((1, 4, 4), latent_dim=3, hidden=4, conditional=False,
                   flow_kwargs=dict(options, actnorm=False))
    assert plain.p_x.flow.context_features is None and not plain.p_x.flow.actnorm
    vae = VAE((1, 4, 4), latent_dim=3, hidden=4, likelihood="flow", network="conv",
              likelihood_kwargs=dict(hidden_channels=5, num_blocks=1))
    assert vae.p_x.flow.context_features == 3
    with pytest.raises(TypeError, match="alpha"):
        VAPNEV((1, 4, 4), latent_dim=3, flow_kwargs=dict(alpha=0.1))
    with pytest.raises(TypeError, match=r"hidden_features \(vector flow\)"):
        VAPNEV((1, 4, 4), latent_dim=3, flow_kwargs=dict(hidden_features=8))


def test_finite_values_whose_sum_overflows_pass_the_finiteness_check():
    """The finiteness check sums all values in one reduction; when finite values overflow
    that sum, the exact second pass lets them through (and still names a real infinity)."""
    flow = ConditionalRealNVP((4,), None, hidden_features=4)  # the identity at init
    huge = torch.full((3, 4), 3e38)
    noise, logdet = flow(huge)
    assert torch.equal(noise, huge) and torch.equal(logdet, torch.zeros(3))
    huge[1, 2] = float("inf")
    with pytest.raises(ValueError, match=r"inputs: expected finite values, got 0 NaN and 1 inf"):
        flow(huge)
