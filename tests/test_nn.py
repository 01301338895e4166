"""Weight-normalised layers (data-dependent init) and the DenseNet blocks with channel attention."""

import pyro
import pytest
import torch
from pyro.nn.module import to_pyro_module_
from torch import nn

from flowvae.nn.densenet import ChannelAttention, DenseBlock, DenseLayer, DenseNet
from flowvae.nn.weightnorm import WNConv2d, WNConvTranspose2d, WNLinear

# (weight-normalised layer, the plain torch layer with the same arguments, input shape,
#  the output's reduction dims: every dim but the channel one)
LAYERS = {
    "linear": (lambda **kw: WNLinear(4, 3, **kw), lambda: nn.Linear(4, 3), (7, 9, 4), (0, 1)),
    "conv": (lambda **kw: WNConv2d(3, 5, 3, padding=1, **kw),
             lambda: nn.Conv2d(3, 5, 3, padding=1), (6, 3, 5, 5), (0, 2, 3)),
    "conv-strided": (lambda **kw: WNConv2d(2, 4, 4, stride=2, padding=1, **kw),
                     lambda: nn.Conv2d(2, 4, 4, stride=2, padding=1), (6, 2, 8, 6), (0, 2, 3)),
    "conv-transpose": (lambda **kw: WNConvTranspose2d(4, 3, 4, stride=2, padding=1, **kw),
                       lambda: nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1), (5, 4, 3, 3),
                       (0, 2, 3)),
}


@pytest.fixture(params=sorted(LAYERS))
def layer_case(request, float64):
    return LAYERS[request.param]


def _data(shape):
    return 3.0 * torch.randn(*shape) + 1.5  # far from standardised, so the init has work


@pytest.mark.parametrize("init_scale", [1.0, 0.3])
def test_data_init_standardises_each_output_channel(layer_case, init_scale):
    build, _, shape, dims = layer_case
    layer = build(init_scale=init_scale)
    x = _data(shape)
    returned = layer.data_init(x)
    out = layer(x)
    assert torch.allclose(returned, out, atol=1e-12)
    assert torch.allclose(out.mean(dims), torch.zeros(()), atol=1e-10)
    assert torch.allclose(out.std(dims, correction=0), torch.full((), init_scale), rtol=1e-5)


def test_weight_is_a_plain_reparametrisation(layer_case):
    build, plain_build, shape, _ = layer_case
    layer = build()
    with torch.no_grad():
        layer.weight_g.uniform_(0.5, 2.0)
        layer.bias.normal_()
    plain = plain_build()
    with torch.no_grad():
        plain.weight.copy_(layer.weight)
        plain.bias.copy_(layer.bias)
    x = _data(shape)
    assert torch.allclose(layer(x), plain(x), atol=1e-12)
    # w_o = g_o v_o / |v_o| per output unit (dim layer.norm_dim of the weight)
    w, v, g = layer.weight, layer.weight_v, layer.weight_g
    other = tuple(d for d in range(w.dim()) if d != layer.norm_dim)
    assert torch.allclose(torch.linalg.vector_norm(w, dim=other, keepdim=True), g.abs())
    assert torch.allclose(w, g * v / torch.linalg.vector_norm(v, dim=other, keepdim=True))
    with torch.no_grad():  # the length of v does not matter
        before = layer(x)
        layer.weight_v.mul_(3.7)
    assert torch.allclose(layer(x), before, atol=1e-12)


def test_gradients_reach_g_v_and_b(layer_case):
    build, _, shape, _ = layer_case
    layer = build()
    layer(_data(shape)).square().sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_init_on_first_batch_runs_once_and_only_in_training(layer_case):
    build, _, shape, dims = layer_case
    layer = build(init_on_first_batch=True)
    x = _data(shape)
    layer.eval()
    layer(x)
    assert not layer.initialized
    layer.train()
    out = layer(x)
    assert layer.initialized
    assert torch.allclose(out.std(dims, correction=0), torch.ones(()), rtol=1e-5)
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    layer(_data(shape) * 5)  # a second batch leaves the parameters alone
    assert all(torch.equal(state[k], v) for k, v in layer.state_dict().items())
    # a restored layer is not initialised again on its first batch
    restored = build(init_on_first_batch=True)
    restored.load_state_dict(state)
    assert restored.initialized
    assert torch.allclose(restored(x), layer(x), atol=1e-12)


def test_data_init_without_bias_sets_only_the_scale(float64):
    layer = WNConv2d(2, 3, 1, bias=False)
    out = layer.data_init(_data((4, 2, 3, 3)))
    assert torch.allclose(out.std((0, 2, 3), correction=0), torch.ones(()), rtol=1e-5)
    assert out.mean((0, 2, 3)).abs().min() > 1e-3  # the mean is not removed without a bias


def test_weight_norm_rejects_bad_arguments():
    with pytest.raises(ValueError):
        WNLinear(2, 2, init_scale=0.0)


# ---------------------------------------------------------------------------- DenseNet
def test_channel_attention_gates_whole_channels():
    attention = ChannelAttention(6, reduction=2)
    x = torch.randn(3, 6, 4, 5)
    y = attention(x)
    gate = y / x
    assert torch.allclose(gate, gate[..., :1, :1].expand_as(gate), atol=1e-6)
    assert ((gate > 0) & (gate < 1)).all()
    perm = torch.randperm(20)  # the gate sees only channel means: spatially equivariant
    shuffled = attention(x.flatten(2)[..., perm].view_as(x))
    assert torch.allclose(shuffled.flatten(2), y.flatten(2)[..., perm], atol=1e-6)


def test_dense_layer_appends_growth_maps_to_its_input():
    layer = DenseLayer(3, growth=5)
    x = torch.randn(2, 3, 4, 6)
    y = layer(x)
    assert layer.out_channels == 8 and y.shape == (2, 8, 4, 6)
    assert torch.equal(y[:, :3], x)


@pytest.mark.parametrize("attention", [True, False])
@pytest.mark.parametrize("out_channels", [None, 7])
def test_dense_block_channels(attention, out_channels):
    block = DenseBlock(4, growth=3, num_layers=3, out_channels=out_channels,
                       attention=attention, reduction=2)
    expected = 4 + 3 * 3 if out_channels is None else out_channels
    assert block.out_channels == expected
    assert block(torch.randn(2, 4, 5, 3)).shape == (2, expected, 5, 3)
    has_attention = any(isinstance(m, ChannelAttention) for m in block.modules())
    assert has_attention == attention


def test_densenet_keeps_resolution_and_batch_dims_and_trains_every_parameter():
    net = DenseNet(2, 5, hidden_channels=6, growth=3, num_layers=2, num_blocks=3, reduction=2)
    x = torch.randn(4, 3, 2, 6, 7)
    y = net(x)
    assert y.shape == (4, 3, 5, 6, 7)
    y.square().sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_weight_normalised_densenet_starts_standardised_and_works_as_a_pyro_module(float64):
    net = DenseNet(1, 3, hidden_channels=4, growth=2, num_layers=2, num_blocks=2, reduction=2,
                   weight_norm=True)
    to_pyro_module_(net)
    x = _data((8, 1, 6, 6))
    out = net(x)  # the first training batch initialises every layer in turn
    wn = [m for m in net.modules() if isinstance(m, WNConv2d)]
    assert len(wn) == 1 + 2 * 3 and all(m.initialized for m in wn)
    assert torch.allclose(out.mean((0, 2, 3)), torch.zeros(()), atol=1e-10)
    assert torch.allclose(out.std((0, 2, 3), correction=0), torch.ones(()), rtol=1e-5)
    net(x).sum().backward()
    assert any("original0" in name for name in pyro.get_param_store().keys())


def test_dense_modules_reject_bad_sizes():
    with pytest.raises(ValueError):
        DenseLayer(2, 2, kernel_size=2)
    with pytest.raises(ValueError):
        DenseBlock(2, 2, num_layers=0)
    with pytest.raises(ValueError):
        DenseNet(2, 2, num_blocks=0)
    with pytest.raises(ValueError):
        ChannelAttention(0)
