"""Affine coupling layers with an optional context, as nflows Transforms (data -> noise)."""

from __future__ import annotations

import copy
import warnings
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
from pyro.nn import PyroModule
from torch import Tensor, nn

from flowvae.transforms.base import CheckedTransform
from flowvae.transforms.multiscale import squeeze, unsqueeze
from flowvae.transforms.partitions import (  # CHECKERBOARDS: imported from here before 0.4
    CHECKERBOARDS,
    PARTITIONS,
    Partition,
    make_partition,
)
from flowvae.validation import (  # check_shape, check_context: re-exported for old imports
    check_context,
    check_int,
    check_shape,
)

__all__ = ["AffineCoupling", "ConditionalAffineCoupling", "check_context", "check_shape",
           "squeeze", "unsqueeze"]

# conditioner_factory(in_channels, out_channels, spatial_size_or_None) -> conditioner
ConditionerFactory = Callable[[int, int, Optional[Tuple[int, int]]], nn.Module]

MASKS = ("checkerboard", "channel")  # the deprecated ``mask=`` values


class AffineCoupling(CheckedTransform):
    r"""Affine coupling ``y_B = x_B * exp(s(x_A, c)) + t(x_A, c)``, ``y_A = x_A``, for any
    :class:`~flowvae.transforms.Partition` of the input into ``(x_A, x_B)``.

    Direction (nflows): ``forward(x, context)`` maps data to noise and returns
    ``(y, logabsdet)`` with ``logabsdet = sum s`` of shape ``(B,)``; ``inverse`` is exact.
    The log-scale is bounded, ``s = scale * tanh(raw)`` with a learned ``scale`` of the
    partition's ``scale_shape``; ``(raw, t)`` are the two halves of the conditioner's output
    channels, which the partition may ``restrict`` to ``x_B``. A conditioner with a zero last
    layer makes the layer start as the identity.

    Args:
        partition: the split of ``(B, *shape)`` inputs into ``(x_A, x_B)`` and back.
        conditioner: ``net(x_A, context)`` with ``partition.out_channels`` output channels at
            ``x_A``'s size; its ``context_features`` attribute (``None``: no context)
            declares the context it takes.

    ``compute_dtype`` (default ``None``) runs the conditioner under ``torch.autocast`` in that
    dtype (e.g. ``torch.bfloat16`` on GPUs, set by :func:`flowvae.train.accelerate`); its
    output is cast back, so scale, shift, output and log-determinant keep the input's dtype.
    The layer stays an exact bijection with an exact log-determinant (``x_A`` passes through
    unchanged, so the inverse sees the same network input bit for bit), but in a composition a
    float32 rounding difference in a later layer's input can round to another bfloat16 value,
    so that a numerically inverted stack of couplings returns ``x`` only to about ``1e-3``.

    ``forward`` and ``inverse`` are entry points
    (:class:`~flowvae.transforms.CheckedTransform`): a non-empty ``(B, *shape)`` input
    and a ``(B, context_features)`` context, both in the dtype of the layer's parameters (a
    TypeError naming it otherwise; nothing is cast) and, while Pyro's validation is on,
    finite (a ValueError naming the argument). Inside a flow the layer runs unchecked
    (``_forward`` / ``_inverse``).

    Example:
        >>> import torch
        >>> from flowvae.transforms.conditioners import MLPConditioner
        >>> from flowvae.transforms.partitions import ChannelSplit
        >>> layer = AffineCoupling(ChannelSplit((4,)), MLPConditioner(2, 4, context_features=3))
        >>> y, logabsdet = layer(torch.randn(5, 4), context=torch.randn(5, 3))
        >>> y.shape, logabsdet.shape
        (torch.Size([5, 4]), torch.Size([5]))
    """

    compute_dtype: Optional[torch.dtype] = None

    def __init__(self, partition: Partition, conditioner: nn.Module):
        super().__init__()
        if not isinstance(partition, Partition):
            raise TypeError(f"{self.entry_name}: partition: expected a Partition, got "
                            f"{partition!r}")
        self.partition = partition
        self.shape = partition.shape
        self.conditioner = conditioner
        self.scale = nn.Parameter(torch.ones(partition.scale_shape))

    @property
    def context_features(self) -> Optional[int]:  # type: ignore[override]
        """The context width the conditioner declares (``None``: no context)."""
        return getattr(self.conditioner, "context_features", None)

    # flowvae 0.3's attributes of a coupling, now the partition's
    @property
    def parity(self) -> int:
        """Which part stays unchanged (the partition's ``parity``)."""
        return self.partition.parity

    @property
    def split_at(self) -> int:
        """Where a channel split cuts (:class:`~flowvae.transforms.ChannelSplit`)."""
        return self.partition.split_at

    @property
    def kept_mask(self) -> Tensor:
        """The checkerboard ``b`` of a masked coupling
        (:class:`~flowvae.transforms.CheckerboardMask`)."""
        return self.partition.kept_mask

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # flowvae <= 0.3 kept the checkerboard mask in the state dict; it is derived data now
        state_dict.pop(prefix + "kept_mask", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

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
        return self.partition.restrict(shift, log_scale)

    def _forward(self, inputs: Tensor, context: Optional[Tensor]):
        kept, changed = self.partition.split(inputs)
        shift, log_scale = self._shift_and_log_scale(kept, context)
        outputs = self.partition.merge(kept, changed * torch.exp(log_scale) + shift)
        return outputs, log_scale.flatten(1).sum(1)

    def _inverse(self, inputs: Tensor, context: Optional[Tensor]):
        kept, changed = self.partition.split(inputs)
        shift, log_scale = self._shift_and_log_scale(kept, context)
        outputs = self.partition.merge(kept, (changed - shift) * torch.exp(-log_scale))
        return outputs, -log_scale.flatten(1).sum(1)


class ConditionalAffineCoupling(AffineCoupling):
    r"""The builder of an :class:`AffineCoupling` from an event shape, a partition's name in
    :data:`~flowvae.transforms.partitions.PARTITIONS` and a conditioner factory: the same
    layer (its subclass, with this constructor only), names resolved once, here.

    Partitions (``partition``):

    * ``"channel"``: ``x_A`` is the first half of the channels (``parity=0``) or the second;
      for vectors ``(D,)`` this is the alternating-halves mask.
    * ``"masked"`` (RealNVP paper): the checkerboard at full resolution; ``x_A`` is the image
      times the checkerboard ``b``, and ``s, t`` are multiplied by ``1 - b``.
    * ``"squeezed"`` (as in nflows): the same checkerboard, but the conditioner sees the ``A``
      pixels as ``2C`` sub-pixel channels at half resolution (a cheaper, different function
      class). Needs even ``H`` and ``W``.

    Args:
        shape: event shape, ``(C, H, W)`` or ``(D,)``.
        conditioner_factory: ``(in_channels, out_channels, size) -> conditioner`` where
            ``size`` is the conditioner's ``(H, W)`` (``None`` for vectors); the conditioner is
            called as ``net(x_A, context)`` and has a ``context_features`` attribute.
        partition: a name in :data:`~flowvae.transforms.partitions.PARTITIONS`.
        parity: 0 or 1, which half stays unchanged.
        mask, checkerboard: deprecated (flowvae 0.3) spellings of ``partition``:
            ``mask="channel"`` is ``"channel"``, ``mask="checkerboard"`` with
            ``checkerboard="masked"`` or ``"squeezed"`` is that name.

    Example:
        >>> import torch
        >>> from flowvae.transforms.conditioners import MLPConditioner
        >>> layer = ConditionalAffineCoupling(
        ...     (4,), lambda i, o, size: MLPConditioner(i, o, context_features=2))
        >>> y, logabsdet = layer(torch.randn(3, 4), context=torch.randn(3, 2))
        >>> y.shape, logabsdet.shape
        (torch.Size([3, 4]), torch.Size([3]))
    """

    def __init__(
        self,
        shape: Sequence[int],
        conditioner_factory: ConditionerFactory,
        partition: str = "channel",
        parity: int = 0,
        mask: Optional[str] = None,
        checkerboard: Optional[str] = None,
    ):
        owner = type(self).__name__
        shape = tuple(check_int(owner, f"shape[{i}]", s) for i, s in enumerate(shape))
        if not callable(conditioner_factory):
            raise TypeError(
                f"{owner}: conditioner_factory: expected a callable (in_channels, out_channels, "
                f"size) -> conditioner, got {conditioner_factory!r}"
            )
        if mask is not None or checkerboard is not None:
            partition = _deprecated_partition(mask, checkerboard)
        if len(shape) not in (1, 3):
            raise ValueError(f"shape must be (C, H, W) or (D,), got {shape}")
        split = make_partition(partition, shape, parity)
        super().__init__(split, conditioner_factory(split.in_channels, split.out_channels,
                                                    split.size))


def _deprecated_partition(mask: Union[str, None], checkerboard: Union[str, None]) -> str:
    """The partition name of flowvae 0.3's ``mask=`` / ``checkerboard=`` pair."""
    mask = "channel" if mask is None else mask
    checkerboard = "masked" if checkerboard is None else checkerboard
    if mask not in MASKS:
        raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
    if checkerboard not in CHECKERBOARDS:
        raise ValueError(f"checkerboard must be one of {CHECKERBOARDS}, got {checkerboard!r}")
    name = "channel" if mask == "channel" else checkerboard
    warnings.warn(f"ConditionalAffineCoupling(mask=..., checkerboard=...) is deprecated: use "
                  f"partition={name!r} (one of {tuple(PARTITIONS)})", DeprecationWarning,
                  stacklevel=3)
    return name
