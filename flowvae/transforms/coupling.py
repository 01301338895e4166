"""Affine coupling layers with an optional context, as nflows Transforms (data -> noise)."""

from __future__ import annotations

import copy
from typing import Callable, Optional, Sequence, Tuple

import torch
from nflows.transforms.base import Transform
from pyro.nn import PyroModule
from torch import Tensor, nn

from flowvae.validation import (  # check_shape, check_context: re-exported for old imports
    check_context,
    check_finite,
    check_int,
    check_shape,
    check_transform_inputs,
    module_dtype,
)

__all__ = ["ConditionalAffineCoupling", "check_context", "check_shape", "squeeze", "unsqueeze"]

# conditioner_factory(in_channels, out_channels, spatial_size_or_None) -> conditioner
ConditionerFactory = Callable[[int, int, Optional[Tuple[int, int]]], nn.Module]

MASKS = ("checkerboard", "channel")
CHECKERBOARDS = ("masked", "squeezed")


def squeeze(x: Tensor) -> Tensor:
    """Space-to-depth by 2: ``(B, C, H, W) -> (B, 4C, H/2, W/2)``.

    Output channel ``(2 i + j) C + c`` holds pixel ``(2 h + i, 2 w + j)`` of input channel ``c``,
    so the first ``2C`` channels are the top sub-pixel row of every 2x2 block.
    """
    if x.dim() != 4 or x.shape[2] % 2 or x.shape[3] % 2:
        raise ValueError(f"squeeze: expected (B, C, H, W) with even H and W, got {tuple(x.shape)}")
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4)
    return x.reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze(x: Tensor) -> Tensor:
    """Inverse of :func:`squeeze`: ``(B, 4C, H, W) -> (B, C, 2H, 2W)``."""
    if x.dim() != 4 or x.shape[1] % 4:
        raise ValueError(
            f"unsqueeze: expected (B, 4C, H, W) with channels divisible by 4, got {tuple(x.shape)}"
        )
    b, c4, h, w = x.shape
    c = c4 // 4
    x = x.reshape(b, 2, 2, c, h, w).permute(0, 3, 4, 1, 5, 2)
    return x.reshape(b, c, 2 * h, 2 * w)


class ConditionalAffineCoupling(Transform):
    r"""Affine coupling ``y_B = x_B * exp(s(x_A, c)) + t(x_A, c)``, ``y_A = x_A``.

    Direction (nflows): ``forward(x, context)`` maps data to noise and returns
    ``(y, logabsdet)`` with ``logabsdet = sum s`` of shape ``(B,)``; ``inverse`` is exact.
    The log-scale is bounded, ``s = scale * tanh(raw)`` with a learned per-channel ``scale``,
    and the conditioner's last layer is zero, so the layer starts as the identity.

    Partitions (``mask``):

    * ``"channel"``: ``x_A`` is the first half of the channels (``parity=0``) or the second;
      for vectors ``(D,)`` this is the alternating-halves mask.
    * ``"checkerboard"`` with ``checkerboard="masked"`` (RealNVP paper): ``x_A`` is the image
      times the checkerboard ``b``, the conditioner runs at full resolution and ``s, t`` are
      multiplied by ``1 - b``.
    * ``"checkerboard"`` with ``checkerboard="squeezed"`` (as in nflows): the same partition,
      but the conditioner sees the ``A`` pixels as ``2C`` sub-pixel channels at half
      resolution (a cheaper, different function class). Needs even ``H`` and ``W``.

    Args:
        shape: event shape, ``(C, H, W)`` or ``(D,)``.
        conditioner_factory: ``(in_channels, out_channels, size) -> conditioner`` where
            ``size`` is the conditioner's ``(H, W)`` (``None`` for vectors); the conditioner is
            called as ``net(x_A, context)`` and has a ``context_features`` attribute.
        mask: ``"checkerboard"`` or ``"channel"``.
        parity: 0 or 1, which half stays unchanged.
        checkerboard: ``"masked"`` or ``"squeezed"``.

    ``compute_dtype`` (default ``None``) runs the conditioner under ``torch.autocast`` in that
    dtype (e.g. ``torch.bfloat16`` on GPUs, set by :func:`flowvae.train.accelerate`); its
    output is cast back, so scale, shift, output and log-determinant keep the input's dtype.
    The layer stays an exact bijection with an exact log-determinant (``x_A`` passes through
    unchanged, so the inverse sees the same network input bit for bit), but in a composition a
    float32 rounding difference in a later layer's input can round to another bfloat16 value,
    so that a numerically inverted stack of couplings returns ``x`` only to about ``1e-3``.

    ``forward`` and ``inverse`` check their arguments through :mod:`flowvae.validation`: a
    non-empty ``(B, *shape)`` input and a ``(B, context_features)`` context, both in the dtype
    of the layer's parameters (a TypeError naming it otherwise; nothing is cast) and, while
    Pyro's validation is on, finite (a ValueError naming the argument).

    Example:
        >>> import torch
        >>> from flowvae.transforms.conditioners import MLPConditioner
        >>> layer = ConditionalAffineCoupling(
        ...     (4,), lambda i, o, size: MLPConditioner(i, o, context_features=2))
        >>> y, logabsdet = layer(torch.randn(3, 4), context=torch.randn(3, 2))
        >>> y.shape, logabsdet.shape
        (torch.Size([3, 4]), torch.Size([3]))
    """

    compute_dtype: Optional[torch.dtype] = None

    def __init__(
        self,
        shape: Sequence[int],
        conditioner_factory: ConditionerFactory,
        mask: str = "channel",
        parity: int = 0,
        checkerboard: str = "masked",
    ):
        super().__init__()
        owner = type(self).__name__
        self.shape = tuple(check_int(owner, f"shape[{i}]", s) for i, s in enumerate(shape))
        if not callable(conditioner_factory):
            raise TypeError(
                f"{owner}: conditioner_factory: expected a callable (in_channels, out_channels, "
                f"size) -> conditioner, got {conditioner_factory!r}"
            )
        if mask not in MASKS:
            raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
        if checkerboard not in CHECKERBOARDS:
            raise ValueError(f"checkerboard must be one of {CHECKERBOARDS}, got {checkerboard!r}")
        if parity not in (0, 1):
            raise ValueError(f"parity must be 0 or 1, got {parity!r}")
        if len(self.shape) not in (1, 3):
            raise ValueError(f"shape must be (C, H, W) or (D,), got {self.shape}")
        self.parity = parity
        self.kind = "channel" if mask == "channel" else checkerboard
        channels = self.shape[0]
        size = None if len(self.shape) == 1 else self.shape[1:]
        if self.kind == "channel":
            if channels < 2:
                raise ValueError(f"a channel coupling needs at least 2 channels, got {self.shape}")
            self.split_at = channels // 2
            kept = self.split_at if parity == 0 else channels - self.split_at
            changed = channels - kept
            param_shape = (changed,) + (1,) * (len(self.shape) - 1)
            self.conditioner = conditioner_factory(kept, 2 * changed, size)
        else:
            if len(self.shape) != 3:
                raise ValueError(f"a checkerboard mask needs an image (C, H, W), got {self.shape}")
            _, height, width = self.shape
            if self.kind == "squeezed":
                if height % 2 or width % 2:
                    raise ValueError(
                        f"the squeezed checkerboard needs even H and W, got shape {self.shape}"
                    )
                param_shape = (2 * channels, 1, 1)
                half = (height // 2, width // 2)
                self.conditioner = conditioner_factory(2 * channels, 4 * channels, half)
            else:
                rows = torch.arange(height).view(-1, 1)
                cols = torch.arange(width).view(1, -1)
                kept_mask = ((rows + cols) % 2 == parity).to(torch.get_default_dtype())
                self.register_buffer("kept_mask", kept_mask.expand(channels, -1, -1).clone())
                param_shape = (channels, 1, 1)
                self.conditioner = conditioner_factory(channels, 2 * channels, size)
        self.context_features = getattr(self.conditioner, "context_features", None)
        self.scale = nn.Parameter(torch.ones(param_shape))

    # Each partition is a pair split(x) -> (x_A, x_B), merge(x_A, y_B) -> y.
    def _split(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        if self.kind == "channel":
            first, second = x[:, : self.split_at], x[:, self.split_at :]
            return (first, second) if self.parity == 0 else (second, first)
        if self.kind == "masked":
            return x * self.kept_mask, x
        b, c, h, w = x.shape
        sub = x.reshape(b, c, h // 2, 2, w // 2, 2)
        # sub-pixels (0,0),(1,1) form one checkerboard class, (0,1),(1,0) the other
        diagonal = torch.stack([sub[:, :, :, 0, :, 0], sub[:, :, :, 1, :, 1]], dim=1)
        anti = torch.stack([sub[:, :, :, 0, :, 1], sub[:, :, :, 1, :, 0]], dim=1)
        kept, changed = (diagonal, anti) if self.parity == 0 else (anti, diagonal)
        return kept.reshape(b, 2 * c, h // 2, w // 2), changed.reshape(b, 2 * c, h // 2, w // 2)

    def _merge(self, kept: Tensor, changed: Tensor) -> Tensor:
        if self.kind == "channel":
            pair = (kept, changed) if self.parity == 0 else (changed, kept)
            return torch.cat(pair, dim=1)
        if self.kind == "masked":
            return changed
        b, c2, h, w = kept.shape
        c = c2 // 2
        diagonal, anti = (kept, changed) if self.parity == 0 else (changed, kept)
        diagonal, anti = diagonal.reshape(b, 2, c, h, w), anti.reshape(b, 2, c, h, w)
        top = torch.stack([diagonal[:, 0], anti[:, 0]], dim=-1)  # (b, c, h, w, 2): j = 0, 1
        bottom = torch.stack([anti[:, 1], diagonal[:, 1]], dim=-1)
        return torch.stack([top, bottom], dim=3).reshape(b, c, 2 * h, 2 * w)

    def compile_conditioner(self, **compile_kwargs) -> None:
        """Run the conditioner through ``torch.compile`` from now on. What is compiled is a
        plain-``nn.Module`` twin of the conditioner that shares its parameter tensors, so
        that a model converted to Pyro modules (whose attribute reads go through Pyro's
        param store and would break the graph) still compiles into one graph per coupling;
        the state dict, the optimizer and in-place loads see the same tensors. A second call
        keeps the first twin (and its compiled code)."""
        if "_compiled_conditioner" in self.__dict__:
            return
        shared = {id(t): t for t in (*self.conditioner.parameters(),
                                     *self.conditioner.buffers())}
        twin = copy.deepcopy(self.conditioner, memo=shared)
        for module in twin.modules():
            if isinstance(module, PyroModule):  # back to the class it was made from
                module.__class__ = next(base for base in type(module).__bases__
                                        if not issubclass(base, PyroModule))
        twin.compile(**compile_kwargs)
        self.__dict__["_compiled_conditioner"] = twin  # not a submodule: no new state

    def _conditioner_output(self, kept: Tensor, context: Optional[Tensor]) -> Tensor:
        net = self.__dict__.get("_compiled_conditioner", self.conditioner)
        if self.compute_dtype is None:
            return net(kept, context)
        with torch.autocast(kept.device.type, dtype=self.compute_dtype):
            return net(kept, context)  # e.g. bfloat16; cast back by the caller

    def _shift_and_log_scale(self, kept: Tensor, context: Optional[Tensor]):
        params = self._conditioner_output(kept, context)
        raw_log_scale, shift = params.to(kept.dtype).chunk(2, dim=1)
        log_scale = self.scale * torch.tanh(raw_log_scale)
        if self.kind == "masked":
            changed = 1 - self.kept_mask
            log_scale, shift = log_scale * changed, shift * changed
        return shift, log_scale

    def _check(self, inputs: Tensor, context: Optional[Tensor]) -> None:
        check_transform_inputs(type(self).__name__, inputs, context, self.shape,
                               self.context_features, module_dtype(self))

    def forward(self, inputs: Tensor, context: Optional[Tensor] = None):
        self._check(inputs, context)
        kept, changed = self._split(inputs)
        shift, log_scale = self._shift_and_log_scale(kept, context)
        outputs = self._merge(kept, changed * torch.exp(log_scale) + shift)
        logabsdet = log_scale.flatten(1).sum(1)
        check_finite(f"{type(self).__name__}.forward", dict(outputs=outputs, logabsdet=logabsdet),
                     inputs=inputs, context=context)
        return outputs, logabsdet

    def inverse(self, inputs: Tensor, context: Optional[Tensor] = None):
        self._check(inputs, context)
        kept, changed = self._split(inputs)
        shift, log_scale = self._shift_and_log_scale(kept, context)
        outputs = self._merge(kept, (changed - shift) * torch.exp(-log_scale))
        logabsdet = -log_scale.flatten(1).sum(1)
        check_finite(f"{type(self).__name__}.inverse", dict(outputs=outputs, logabsdet=logabsdet),
                     inputs=inputs, context=context)
        return outputs, logabsdet
