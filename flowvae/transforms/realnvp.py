"""Multi-scale ConditionalRealNVP for images and the vector RealNVP, as nflows Transforms."""

from __future__ import annotations

from functools import partial
from typing import List, Optional, Sequence

import torch
from nflows.transforms.base import CompositeTransform, Transform
from torch import Tensor

from flowvae.transforms.conditioners import (
    ConcatConditioner,
    MLPConditioner,
    MultiplicativeConditioner,
)
from flowvae.transforms.coupling import ConditionalAffineCoupling, squeeze, unsqueeze
from flowvae.transforms.normalization import ActNorm
from flowvae.validation import (
    check_finite,
    check_int,
    check_transform_inputs,
    module_dtype,
    nested,
)

CONDITIONERS = {"multiplicative": MultiplicativeConditioner, "concat": ConcatConditioner}


class _Scale(Transform):
    """One level of the multi-scale flow: couplings, squeeze, couplings, factor out half the
    channels, the next level on the rest; the factored half is put back in place so that the
    output has the input's shape."""

    def __init__(self, before: Transform, after: Transform, rest: Transform):
        super().__init__()
        self.before, self.after, self.rest = before, after, rest

    def forward(self, inputs: Tensor, context: Optional[Tensor] = None):
        x, logdet = self.before(inputs, context)
        x, logdet_after = self.after(squeeze(x), context)
        factored, x = x.chunk(2, dim=1)
        x, logdet_rest = self.rest(x, context)
        return unsqueeze(torch.cat([factored, x], dim=1)), logdet + logdet_after + logdet_rest

    def inverse(self, inputs: Tensor, context: Optional[Tensor] = None):
        factored, x = squeeze(inputs).chunk(2, dim=1)
        x, logdet_rest = self.rest.inverse(x, context)
        x, logdet_after = self.after.inverse(torch.cat([factored, x], dim=1), context)
        x, logdet = self.before.inverse(unsqueeze(x), context)
        return x, logdet + logdet_after + logdet_rest


class ConditionalRealNVP(Transform):
    r"""RealNVP whose couplings may all be conditioned on a context vector (VAPNEV).

    Direction (nflows): ``forward(x, context) -> (noise, logabsdet)`` maps data to noise;
    ``inverse(noise, context) -> (x, logabsdet)``. ``logabsdet`` has shape ``(B,)``.

    **Images** ``shape = (C, H, W)``: each of the first ``num_scales - 1`` scales applies
    ``num_checkerboard`` checkerboard couplings, a 2x2 squeeze, ``num_channelwise`` channel-wise
    couplings, and factors out half of the channels; the last scale applies ``num_final``
    checkerboard couplings. The noise is returned **in the shape of** ``x`` (factored parts are
    un-squeezed back into place), so a decoder can emit the base mean and scale as images.
    Every coupling's conditioner sees the context at its own resolution (its own ``G`` net).
    Widths start at ``hidden_channels`` and double at every scale.

    **Vectors** ``shape = (D,)``: ``num_couplings`` alternating-halves MLP couplings.

    Args:
        shape: event shape, ``(C, H, W)`` or ``(D,)``.
        context_features: width of the context, or ``None`` for an unconditional flow.
        num_scales: scales of the image flow; ``H`` and ``W`` must be divisible by
            ``2 ** (num_scales - 1)`` (``2 ** num_scales`` with ``checkerboard="squeezed"``).
        num_checkerboard, num_channelwise, num_final: couplings per stage (paper: 3, 3, 4).
        hidden_channels: conditioner width ``k`` at the first scale (paper: 64).
        num_blocks: residual blocks per conditioner (paper: 2).
        conditioner: ``"multiplicative"`` (VAPNEV) or ``"concat"``.
        checkerboard: ``"masked"`` (paper: conditioner at full resolution) or ``"squeezed"``
            (conditioner on sub-pixel channels at half resolution; cheaper, different model).
        actnorm: put an :class:`ActNorm` (data-dependent init) before every coupling.
        num_couplings, hidden_features, num_layers: the vector flow's couplings and MLPs.

    Sizes and counts are checked when the flow is built (a TypeError for a non-integer, a
    ValueError below the minimum: widths, ``num_scales`` and ``num_couplings`` at least 1,
    ``num_checkerboard``, ``num_channelwise``, ``num_final``, ``num_blocks`` and ``num_layers``
    at least 0, where 0 leaves that stage out). Every call checks its arguments once through
    :mod:`flowvae.validation`: ``inputs`` a non-empty ``(B, *shape)`` tensor in the dtype of
    the flow's parameters (never cast: convert the input or the flow), ``context`` a
    ``(B, context_features)`` tensor of the same dtype, and, while Pyro's validation is on
    (``pyro.enable_validation``), both finite.

    Example:
        >>> import torch
        >>> flow = ConditionalRealNVP((1, 8, 8), context_features=4, hidden_channels=8)
        >>> x, z = torch.randn(2, 1, 8, 8), torch.randn(2, 4)
        >>> noise, logabsdet = flow(x, context=z)
        >>> noise.shape, logabsdet.shape
        (torch.Size([2, 1, 8, 8]), torch.Size([2]))
        >>> torch.allclose(flow.inverse(noise, context=z)[0], x, atol=1e-5)
        True
    """

    def __init__(
        self,
        shape: Sequence[int],
        context_features: Optional[int] = None,
        num_scales: int = 2,
        num_checkerboard: int = 3,
        num_channelwise: int = 3,
        num_final: int = 4,
        hidden_channels: int = 64,
        num_blocks: int = 2,
        conditioner: str = "multiplicative",
        checkerboard: str = "masked",
        actnorm: bool = False,
        num_couplings: int = 4,
        hidden_features: int = 128,
        num_layers: int = 2,
    ):
        super().__init__()
        owner = type(self).__name__
        self.shape = tuple(check_int(owner, f"shape[{i}]", s) for i, s in enumerate(shape))
        self.context_features = check_int(owner, "context_features", context_features,
                                          optional=True)
        for name, value, minimum in (
            ("num_scales", num_scales, 1), ("num_checkerboard", num_checkerboard, 0),
            ("num_channelwise", num_channelwise, 0), ("num_final", num_final, 0),
            ("hidden_channels", hidden_channels, 1), ("num_blocks", num_blocks, 0),
            ("num_couplings", num_couplings, 1), ("hidden_features", hidden_features, 1),
            ("num_layers", num_layers, 0),
        ):
            check_int(owner, name, value, minimum)
        if not isinstance(actnorm, bool):
            raise TypeError(f"{owner}: actnorm: expected a bool, got {actnorm!r}")
        self.actnorm = actnorm
        if len(self.shape) == 1:
            if self.shape[0] < 2:
                raise ValueError(f"a vector RealNVP needs D >= 2, got shape {self.shape}")
            factory = partial(
                _mlp_factory, context_features, hidden_features=hidden_features,
                num_layers=num_layers,
            )
            self.flow = self._stage(self.shape, factory, "channel", num_couplings, "masked")
        elif len(self.shape) == 3:
            if conditioner not in CONDITIONERS:
                raise ValueError(
                    f"conditioner must be one of {tuple(CONDITIONERS)}, got {conditioner!r}"
                )
            _check_halvings(owner, self.shape, num_scales, checkerboard)
            self.flow = self._image_flow(
                self.shape, num_scales, num_checkerboard, num_channelwise, num_final,
                CONDITIONERS[conditioner], hidden_channels, num_blocks, checkerboard,
            )
        else:
            raise ValueError(f"shape must be (C, H, W) or (D,), got {self.shape}")

    def _stage(self, shape, factory, mask, count, checkerboard) -> Transform:
        layers: List[Transform] = []
        for i in range(count):
            if self.actnorm:
                layers.append(ActNorm(shape[0]))
            layers.append(
                ConditionalAffineCoupling(
                    shape, factory, mask=mask, parity=i % 2,
                    checkerboard=checkerboard,
                )
            )
        return CompositeTransform(layers)

    def _image_flow(
        self, shape, num_scales, num_checkerboard, num_channelwise, num_final, conditioner_cls,
        width, num_blocks, checkerboard,
    ) -> Transform:
        factory = partial(
            _conv_factory, conditioner_cls, self.context_features, hidden_channels=width,
            num_blocks=num_blocks,
        )
        if num_scales == 1:
            return self._stage(shape, factory, "checkerboard", num_final, checkerboard)
        c, h, w = shape
        squeezed = (4 * c, h // 2, w // 2)
        return _Scale(
            self._stage(shape, factory, "checkerboard", num_checkerboard, checkerboard),
            self._stage(squeezed, factory, "channel", num_channelwise, checkerboard),
            self._image_flow(
                (2 * c, h // 2, w // 2), num_scales - 1, num_checkerboard, num_channelwise,
                num_final, conditioner_cls, 2 * width, num_blocks, checkerboard,
            ),
        )

    def _check(self, inputs: Tensor, context: Optional[Tensor]) -> None:
        check_transform_inputs(type(self).__name__, inputs, context, self.shape,
                               self.context_features, module_dtype(self))

    def forward(self, inputs: Tensor, context: Optional[Tensor] = None):
        self._check(inputs, context)
        with nested():  # checked once here, not again by every layer
            outputs, logabsdet = self.flow(inputs, context)
        check_finite(f"{type(self).__name__}.forward", dict(outputs=outputs, logabsdet=logabsdet),
                     inputs=inputs, context=context)
        return outputs, logabsdet

    def inverse(self, inputs: Tensor, context: Optional[Tensor] = None):
        self._check(inputs, context)
        with nested():
            outputs, logabsdet = self.flow.inverse(inputs, context)
        check_finite(f"{type(self).__name__}.inverse", dict(outputs=outputs, logabsdet=logabsdet),
                     inputs=inputs, context=context)
        return outputs, logabsdet


def _conv_factory(cls, context_features, in_channels, out_channels, size, **kwargs):
    return cls(in_channels, out_channels, size, context_features=context_features, **kwargs)


def _mlp_factory(context_features, in_features, out_features, size, **kwargs):
    return MLPConditioner(in_features, out_features, context_features=context_features, **kwargs)


def _check_halvings(owner: str, shape, num_scales: int, checkerboard: str) -> None:
    """Refuse an image shape whose H and W the scales cannot halve often enough."""
    # the squeezed checkerboard halves H and W once more inside every scale
    exponent = num_scales if checkerboard == "squeezed" else num_scales - 1
    factor = 2 ** exponent
    _, height, width = shape
    if height % factor or width % factor:
        raise ValueError(
            f"{owner}: shape {shape}: H and W must be divisible by 2**{exponent} = {factor} "
            f"for {num_scales} scales with the {checkerboard} checkerboard"
        )
