"""DiscretizedLogisticMixture: normalization, tails, sampling against the pmf, Pyro integration."""

import math
from decimal import Decimal, localcontext

import pyro
import pytest
import torch
from pyro import poutine

from flowvae.distributions.logistic import DiscretizedLogisticMixture

LEVELS = 256


def one_pixel(logit_probs, loc, log_scale, coeffs=None, **kwargs):
    """A 1x1-image mixture from per-component lists: loc and log_scale are ``(K, C)``."""
    loc = torch.as_tensor(loc, dtype=torch.get_default_dtype())
    return DiscretizedLogisticMixture(
        torch.as_tensor(logit_probs, dtype=loc.dtype)[..., None, None],
        loc[..., None, None],
        torch.as_tensor(log_scale, dtype=loc.dtype)[..., None, None],
        None if coeffs is None else torch.as_tensor(coeffs, dtype=loc.dtype)[..., None, None],
        **kwargs,
    )


def all_values():
    """Every 8-bit value as a batch of 1-channel 1x1 images, shape ``(256, 1, 1, 1)``."""
    return torch.arange(LEVELS, dtype=torch.get_default_dtype()).view(-1, 1, 1, 1)


def chi_square_threshold(dof, z=4.75):
    """Wilson-Hilferty quantile of chi^2(dof) at the standard-normal quantile ``z`` (1e-6 tail)."""
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


def chi_square(counts, probs):
    """Pearson statistic over bins expected to hold >= 5 draws; the rest are pooled into one."""
    expected = probs * counts.sum()
    keep = expected >= 5
    observed = torch.cat([counts[keep], counts[~keep].sum().view(1)])
    expected = torch.cat([expected[keep], expected[~keep].sum().view(1)])
    if expected[-1] < 5:  # too little pooled mass to test: fold it into the largest kept bin
        observed, expected = observed[:-1], expected[:-1]
    statistic = ((observed - expected) ** 2 / expected).sum().item()
    return statistic, len(observed) - 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_single_channel_pmf_sums_to_one(dtype):
    loc = torch.tensor([[0.1, -0.6, 0.9], [-5.0, 5.0, 0.0], [0.3, -1.0, 1.0], [0.0, 0.5, -0.2]])
    log_scale = torch.tensor(
        [[-2.0, -3.0, -1.0], [-7.0, -7.0, -9.0], [-7.0, -4.0, 3.0]] + [[4.0] * 3]
    )
    logits = torch.randn(4, 3)
    p = DiscretizedLogisticMixture(
        logits[..., None, None].to(dtype),
        loc[..., None, None, None].to(dtype),
        log_scale[..., None, None, None].to(dtype),
    )
    values = torch.arange(LEVELS, dtype=dtype).view(-1, 1, 1, 1, 1)
    total = p.log_prob(values).exp().sum(0)
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=tolerance)


def test_fewer_bits_pmf_sums_to_one(float64):
    p = one_pixel([0.0, 1.0], [[0.2], [-0.5]], [[-1.5], [-2.5]], num_bits=5)
    values = torch.arange(32.0).view(-1, 1, 1, 1)
    assert p.log_prob(values).exp().sum().item() == pytest.approx(1.0, abs=1e-12)
    assert p.sample((1000,)).max() <= 31


RGB = {
    "logit_probs": [0.3, -0.4],
    "loc": [[0.1, -0.2, 0.4], [-0.7, 0.5, 0.0]],
    "log_scale": [[-2.5, -2.0, -3.0], [-1.5, -2.8, -2.2]],
    "coeffs": [[0.6, -0.4, 0.5], [-0.8, 0.3, 0.9]],  # (green<-red, blue<-red, blue<-green)
}


def rgb_grid(reds, levels=LEVELS):
    """All (red, green, blue) triples with red in ``reds``, shape ``(len * levels^2, 3, 1, 1)``."""
    values = torch.arange(levels, dtype=torch.get_default_dtype())
    r, g, b = torch.meshgrid(reds, values, values, indexing="ij")
    return torch.stack([r, g, b], dim=-1).reshape(-1, 3, 1, 1)


def red_marginal():
    """The red channel alone: it is coupled to nothing before it and shares the mixture weights."""
    return one_pixel(
        RGB["logit_probs"], [[m[0]] for m in RGB["loc"]], [[s[0]] for s in RGB["log_scale"]]
    )


def test_three_channel_joint_sums_to_one(float64):
    # the full joint of one coupled pixel; 5 bits (32^3 values) runs the 8-bit code path at a
    # 512th of the cost of 256^3, and the 8-bit joint is covered by the slices and the
    # factorization checked below
    p = one_pixel(**RGB, num_bits=5)
    total = p.log_prob(rgb_grid(torch.arange(32.0), levels=32)).exp().sum()
    assert total.item() == pytest.approx(1.0, abs=1e-12)


def test_three_channel_slices_sum_to_red_marginal(float64):
    # sum_{g, b} p(r, g, b) = p(r): the (green, blue) conditional of the mixture sums to one
    p = one_pixel(**RGB)
    reds = torch.tensor([0.0, 17.0, 128.0, 200.0, 255.0])
    slices = p.log_prob(rgb_grid(reds)).exp().view(len(reds), -1).sum(-1)
    expected = red_marginal().log_prob(reds.view(-1, 1, 1, 1)).exp()
    torch.testing.assert_close(slices, expected, rtol=1e-9, atol=1e-15)


def test_three_channel_factorizes_as_pixelcnnpp(float64):
    # one component: p(r, g, b) = p(r) p(g | r) p(b | r, g), each conditional a 1-channel logistic
    (mr, mg, mb), (sr, sg, sb) = RGB["loc"][0], RGB["log_scale"][0]
    c_gr, c_br, c_bg = RGB["coeffs"][0]
    p = one_pixel([0.0], [RGB["loc"][0]], [RGB["log_scale"][0]], [RGB["coeffs"][0]])
    values = torch.randint(0, LEVELS, (50, 3, 1, 1)).double()
    values[:5, 0], values[5:10, 1], values[10:15, 2] = 0, 255, 255  # edge bins
    r, g, b = (values[:, c, 0, 0] / 127.5 - 1 for c in range(3))

    def channel(v, loc, log_scale):
        # a batch of 50 single-component, single-channel pixels: one per row of `values`
        q = one_pixel(torch.zeros(50, 1), loc.view(50, 1, 1), torch.full((50, 1, 1), log_scale))
        return q.log_prob(v.view(-1, 1, 1, 1))

    expected = (
        channel(values[:, 0, 0, 0], torch.full_like(r, mr), sr)
        + channel(values[:, 1, 0, 0], mg + c_gr * r, sg)
        + channel(values[:, 2, 0, 0], mb + c_br * r + c_bg * g, sb)
    )
    torch.testing.assert_close(p.log_prob(values), expected)


def reference_log_prob(value, loc, log_scale, levels=LEVELS):
    """Log-probability of one channel value under one logistic, in 60-digit decimal arithmetic."""
    with localcontext() as context:
        context.prec = 60
        h = Decimal(levels - 1) / 2
        x = Decimal(value) / h - 1
        scale = Decimal(log_scale).exp()
        upper = (x + 1 / (2 * h) - Decimal(loc)) / scale
        lower = (x - 1 / (2 * h) - Decimal(loc)) / scale

        def sigmoid(t):
            return 1 / (1 + (-t).exp())

        if value == 0:
            prob = sigmoid(upper)
        elif value == levels - 1:
            prob = sigmoid(-lower)
        elif upper + lower > 0:  # right tail: difference of the small complements
            prob = sigmoid(-lower) - sigmoid(-upper)
        else:
            prob = sigmoid(upper) - sigmoid(lower)
        return float(prob.ln())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tails_and_edges_with_tiny_scales(dtype):
    cases = [
        (value, loc, log_scale)
        for value in (0, 1, 127, 128, 254, 255)
        for loc in (-5.0, -1.0, 0.3, 1.0, 5.0)
        for log_scale in (-7.0, 0.0, 4.0)
    ]
    values, locs, log_scales = (torch.tensor(column, dtype=dtype) for column in zip(*cases))
    locs.requires_grad_()
    p = DiscretizedLogisticMixture(
        torch.zeros(len(cases), 1, 1, 1, dtype=dtype),
        locs.view(-1, 1, 1, 1, 1),
        log_scales.view(-1, 1, 1, 1, 1),
    )
    log_prob = p.log_prob(values.view(-1, 1, 1, 1))
    expected = torch.tensor([reference_log_prob(*case) for case in cases], dtype=dtype)
    assert torch.isfinite(log_prob).all()
    if dtype == torch.float64:
        torch.testing.assert_close(log_prob, expected, rtol=1e-9, atol=1e-12)
    else:
        # float32 rounds ``v / 127.5 - 1 - loc`` before it is divided by a scale of ~1e-3
        torch.testing.assert_close(log_prob, expected, rtol=1e-4, atol=1e-3)
    log_prob.sum().backward()
    assert torch.isfinite(locs.grad).all()


def test_min_log_scale_is_a_lower_bound(float64):
    values = torch.tensor([0.0, 100.0, 140.0, 255.0]).view(-1, 1, 1, 1)

    def log_prob(log_scale, **kwargs):
        return one_pixel([0.0], [[0.1]], [[log_scale]], **kwargs).log_prob(values)

    torch.testing.assert_close(log_prob(-20.0), log_prob(-7.0))
    assert not torch.allclose(log_prob(-20.0, min_log_scale=-20.0), log_prob(-7.0))
    torch.testing.assert_close(
        log_prob(-9.0, min_log_scale=-9.0), log_prob(-10.0, min_log_scale=-9)
    )


def sample_counts(samples):
    return torch.bincount(samples.long().flatten(), minlength=LEVELS).double()


def test_single_channel_samples_match_pmf(float64):
    # mass on both edge bins, a tight component and a broad one
    p = one_pixel([0.5, 0.0, -0.5], [[-0.95], [0.2], [0.9]], [[-2.5], [-5.0], [-1.0]])
    n = 100_000
    samples = p.sample((n,))
    assert samples.shape == (n, 1, 1, 1)
    assert torch.equal(samples, samples.round()) and samples.min() >= 0 and samples.max() <= 255
    probs = p.log_prob(all_values()).exp()
    statistic, dof = chi_square(sample_counts(samples), probs)
    assert statistic < chi_square_threshold(dof)
    assert probs[0] > 0.01 and probs[-1] > 0.01  # the edge bins are really exercised
    # the mixture is sampled, not its argmax component (the srVAE reference code's bug)
    assert ((samples > 200).double().mean() - probs[201:].sum()).abs() < 0.01


def test_three_channel_samples_match_marginal_and_conditional(float64):
    p = one_pixel(**RGB)
    samples = p.sample((100_000,))[:, :, 0, 0]
    red = red_marginal().log_prob(all_values()).exp()
    statistic, dof = chi_square(sample_counts(samples[:, 0]), red)
    assert statistic < chi_square_threshold(dof)

    # green given the most frequent red value, against the conditional obtained from log_prob
    r0 = torch.mode(samples[:, 0]).values
    chosen = samples[samples[:, 0] == r0]
    assert len(chosen) > 1000
    joint = p.log_prob(rgb_grid(r0.view(1))).exp().view(LEVELS, LEVELS)
    green_given_red = joint.sum(-1) / joint.sum()
    statistic, dof = chi_square(sample_counts(chosen[:, 1]), green_given_red)
    assert statistic < chi_square_threshold(dof)


def test_coupling_uses_the_discretized_earlier_channel(float64):
    # green = red + 10 bins up to a negligible noise: sampling must feed the *binned* red value
    # to green's location, as log_prob conditions on it
    p = one_pixel(
        [0.0], [[0.0, 10 / 127.5, 0.0]], [[0.0, -12.0, -1.0]], [[1.0, 0.0, 0.0]], min_log_scale=-12
    )
    samples = p.sample((20_000,))[:, :, 0, 0]
    assert torch.equal(samples[:, 1], (samples[:, 0] + 10).clamp(max=255))
    interior = samples[(samples[:, 0] > 0) & (samples[:, 0] < 245)]
    assert (p.log_prob(interior.view(-1, 3, 1, 1)) > -20).all()


def test_mean(float64):
    p = one_pixel([0.2, -0.3], [[-0.98], [0.4]], [[-2.0], [-1.0]])
    exact = (p.log_prob(all_values()).exp() * torch.arange(256.0)).sum()
    torch.testing.assert_close(p.mean.view(()), exact)

    # channels share the component but no coupling: each channel mean is exact
    params = {k: v for k, v in RGB.items() if k != "coeffs"}
    uncoupled = one_pixel(**params).mean.view(3)
    for c in range(3):
        q = one_pixel(
            RGB["logit_probs"], [[m[c]] for m in RGB["loc"]], [[s[c]] for s in RGB["log_scale"]]
        )
        torch.testing.assert_close(uncoupled[c], q.mean.view(()))
    zero_coeffs = one_pixel(**params, coeffs=torch.zeros(2, 3)).mean.view(3)
    torch.testing.assert_close(zero_coeffs, uncoupled)
    # with coupling the first channel stays exact
    torch.testing.assert_close(one_pixel(**RGB).mean.view(3)[0], uncoupled[0])


def test_single_channel_images_in_plate_with_obs():
    n, k, h, w = 4, 3, 5, 6
    p = DiscretizedLogisticMixture(
        torch.randn(n, k, h, w), torch.randn(n, k, 1, h, w) * 0.5, torch.randn(n, k, 1, h, w) - 2
    )
    images = torch.randint(0, 256, (n, 1, h, w), dtype=torch.uint8)

    def model(x):
        with pyro.plate("images", n):
            pyro.sample("x", p, obs=x)

    trace = poutine.trace(model).get_trace(images)
    trace.compute_log_prob()
    torch.testing.assert_close(trace.nodes["x"]["log_prob_sum"], p.log_prob(images.float()).sum())
    assert trace.nodes["x"]["log_prob"].shape == (n,)


def test_gradients_reach_all_parameters(float64):
    b, k, c, h, w = 2, 3, 3, 4, 4
    params = [
        torch.randn(b, k, h, w),
        torch.randn(b, k, c, h, w) * 0.5,
        torch.rand(b, k, c, h, w) - 3,
        torch.randn(b, k, 3, h, w) * 0.5,
    ]
    for param in params:
        param.requires_grad_()
    p = DiscretizedLogisticMixture(*params)
    x = torch.randint(0, 256, (b, c, h, w)).double()
    x[0, :, 0, 0], x[1, :, 0, 0] = 0, 255
    p.log_prob(x).sum().backward()
    for param in params:
        assert param.grad is not None and torch.isfinite(param.grad).all()
        assert (param.grad != 0).float().mean() > 0.9


def test_batch_shapes_and_expand():
    k, c, h, w = 2, 3, 2, 3
    p = DiscretizedLogisticMixture(
        torch.randn(3, k, h, w),  # broadcasts against the (2, 3) batch of the other parameters
        torch.randn(2, 3, k, c, h, w),
        torch.randn(2, 3, k, c, h, w) - 2,
        torch.randn(1, 3, k, 3, h, w),
    )
    assert p.batch_shape == (2, 3) and p.event_shape == (c, h, w)
    x = p.sample((4,))
    assert x.shape == (4, 2, 3, c, h, w) and x.dtype == torch.get_default_dtype()
    assert p.log_prob(x).shape == (4, 2, 3)
    assert p.log_prob(x[0, 0, 0]).shape == (2, 3)  # one image broadcast against the batch
    assert p.mean.shape == (2, 3, c, h, w)
    expanded = p.expand((5, 2, 3))
    assert expanded.batch_shape == (5, 2, 3) and expanded.sample().shape == (5, 2, 3, c, h, w)
    torch.testing.assert_close(expanded.log_prob(x[0]), p.log_prob(x[0]).expand(5, 2, 3))
    assert DiscretizedLogisticMixture.infer_shapes(
        logit_probs=(3, k, h, w), loc=(2, 3, k, c, h, w), log_scale=(2, 3, k, c, h, w)
    ) == ((2, 3), (c, h, w))
    assert p.to_event(2).log_prob(x).shape == (4,)


@pytest.mark.parametrize("bad", [256.0, -1.0, 3.5])
def test_validation_rejects_values_outside_support(bad):
    p = one_pixel([0.0], [[0.0]], [[-2.0]])
    with pytest.raises(ValueError, match="support"):
        p.log_prob(torch.tensor(bad).view(1, 1, 1))
    assert torch.isfinite(
        p.log_prob(torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1))
    ).all()


def test_validation_rejects_bad_shapes():
    k, c, h, w = 2, 3, 4, 4
    logits, loc = torch.zeros(k, h, w), torch.zeros(k, c, h, w)
    with pytest.raises(ValueError, match=r"K=2, C, H=4, W=4.*got loc of shape \(3, 3, 4, 4\)"):
        DiscretizedLogisticMixture(logits, torch.zeros(3, c, h, w), loc)
    with pytest.raises(ValueError, match=r"got log_scale of shape \(2, 3, 4, 5\)"):
        DiscretizedLogisticMixture(logits, loc, torch.zeros(k, c, h, 5))
    with pytest.raises(ValueError, match=r"C\(C-1\)/2=3.*got coeffs of shape \(2, 2, 4, 4\)"):
        DiscretizedLogisticMixture(logits, loc, loc, torch.zeros(k, 2, h, w))
    with pytest.raises(ValueError, match=r"do not broadcast.*loc \(5, 2, 3, 4, 4\)"):
        DiscretizedLogisticMixture(torch.zeros(3, k, h, w), torch.zeros(5, k, c, h, w), loc)
    with pytest.raises(ValueError, match=r"\(\*batch, K, H, W\)"):
        DiscretizedLogisticMixture(torch.zeros(h, w), loc, loc)
    p = DiscretizedLogisticMixture(logits, loc, loc)
    with pytest.raises(ValueError):
        p.log_prob(torch.zeros(1, h, w))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradients_finite_for_extreme_parameters(dtype):
    # a VAE decoder can emit any log_scale and loc: a huge scale used to give NaN gradients
    # (from log(1 - exp(x)) at x ~ 0, and the unused branch of its torch.where) even for the
    # edge values 0 and 255, where that term is masked out of the result
    log_scales = [-50.0, -7.0, 0.0, 5.0, 12.0, 15.0, 22.0, 40.0, 90.0, 200.0, 800.0]
    locs = [-1e4, -30.0, -1.0, 0.0, 0.3, 1.0, 30.0, 1e4]
    cases = [
        (value, loc, log_scale)
        for value in (0, 1, 127, 128, 254, 255)
        for loc in locs
        for log_scale in log_scales
    ]
    values, loc, log_scale = (torch.tensor(column, dtype=dtype) for column in zip(*cases))
    n = len(cases)
    # two components (the second a plain one) and RGB coupling, so every parameter is exercised
    loc = torch.stack([loc, torch.zeros_like(loc)], -1).view(n, 2, 1, 1, 1).expand(n, 2, 3, 1, 1)
    log_scale = torch.stack([log_scale, torch.full_like(log_scale, -2.0)], -1)
    params = [
        torch.tensor([0.0, -20.0], dtype=dtype).expand(n, 2).reshape(n, 2, 1, 1).clone(),
        loc.clone(),
        log_scale.view(n, 2, 1, 1, 1).expand(n, 2, 3, 1, 1).clone(),
        torch.full((n, 2, 3, 1, 1), 0.5, dtype=dtype),
    ]
    for param in params:
        param.requires_grad_()
    images = values.view(n, 1, 1, 1).expand(n, 3, 1, 1)
    log_prob = DiscretizedLogisticMixture(*params).log_prob(images)
    assert torch.isfinite(log_prob).all()
    log_prob.sum().backward()
    for param in params:
        assert torch.isfinite(param.grad).all()
    # for a huge scale s an interior bin has probability ~ density 1 / (4 s) times width 2 / 255
    huge = one_pixel([0.0], [[0.0]], [[200.0]]).log_prob(torch.tensor(128.0).view(1, 1, 1))
    assert huge.item() == pytest.approx(-200.0 - math.log(510.0), abs=1e-3)
