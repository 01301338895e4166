"""RealNVP as nflows Transforms: the vector flow, the multi-scale image flow, and
:class:`ConditionalRealNVP`, the entry point that builds the one its shape asks for."""

from __future__ import annotations

import inspect
from functools import partial
from typing import ClassVar, List, Optional, Sequence, Tuple

from nflows.transforms.base import Transform
from torch import Tensor

from flowvae.choices import FLOW_OPTIONS
from flowvae.transforms.base import Chain, CheckedTransform
from flowvae.transforms.conditioners import (
    ConcatConditioner,
    MLPConditioner,
    MultiplicativeConditioner,
)
from flowvae.transforms.coupling import ConditionalAffineCoupling
from flowvae.transforms.multiscale import Scale
from flowvae.transforms.normalization import ActNorm
from flowvae.transforms.partitions import CHECKERBOARDS, PARTITIONS
from flowvae.validation import check_int

__all__ = ["CONDITIONERS", "ConditionalRealNVP", "MultiscaleRealNVP", "VectorRealNVP"]

#: conditioners of the image flow by name (``conditioner=``)
CONDITIONERS = {"multiplicative": MultiplicativeConditioner, "concat": ConcatConditioner}
_VECTOR, _IMAGE = FLOW_OPTIONS["vector"], FLOW_OPTIONS["image"]


class ConditionalRealNVP(CheckedTransform):
    r"""RealNVP whose couplings may all be conditioned on a context vector (VAPNEV): the entry
    point of the family, which builds the flow its ``shape`` asks for.

    ``ConditionalRealNVP((C, H, W), context_features, **options)`` returns a
    :class:`MultiscaleRealNVP` and ``ConditionalRealNVP((D,), ...)`` a :class:`VectorRealNVP`
    (both are ``ConditionalRealNVP`` s, as ``pathlib.Path`` returns a ``PosixPath``). Each takes
    only its own options, whose defaults are the one table
    :data:`flowvae.choices.FLOW_OPTIONS`: an option of the other kind, or an unknown one, is
    refused in one TypeError naming the kind each belongs to; an unknown option value in a
    ValueError. The options go by keyword.

    Direction (nflows): ``forward(x, context) -> (noise, logabsdet)`` maps data to noise;
    ``inverse(noise, context) -> (x, logabsdet)``. ``logabsdet`` has shape ``(B,)``.

    Every call checks its arguments once, at the entry
    (:class:`~flowvae.transforms.CheckedTransform`; the layers inside are not checked
    again): ``inputs`` a non-empty ``(B, *shape)`` tensor in the dtype of the flow's
    parameters (never cast: convert the input or the flow), ``context`` a
    ``(B, context_features)`` tensor of the same dtype, and, while Pyro's validation is on
    (``pyro.enable_validation``), both finite, with the results, in one host read. Errors start
    with ``ConditionalRealNVP``.

    Example:
        >>> import torch
        >>> flow = ConditionalRealNVP((1, 8, 8), context_features=4, hidden_channels=8)
        >>> type(flow).__name__, isinstance(flow, ConditionalRealNVP)
        ('MultiscaleRealNVP', True)
        >>> x, z = torch.randn(2, 1, 8, 8), torch.randn(2, 4)
        >>> noise, logabsdet = flow(x, context=z)
        >>> noise.shape, logabsdet.shape
        (torch.Size([2, 1, 8, 8]), torch.Size([2]))
        >>> torch.allclose(flow.inverse(noise, context=z)[0], x, atol=1e-5)
        True
    """

    #: the flow kind's entry in :data:`flowvae.choices.FLOW_OPTIONS`
    kind: ClassVar[str]
    #: the number of event dimensions of the shapes the kind takes
    event_dims: ClassVar[int]
    flow: Transform

    def __new__(cls, *args, **kwargs):
        if cls is not ConditionalRealNVP:  # a kind called directly, or a copy being made
            return super().__new__(cls)
        flow = super().__new__(_flow_class(cls.__name__, args, kwargs))
        flow.__dict__["_entry_name"] = cls.__name__  # errors name the class the user called
        return flow

    def _setup(self, shape: Sequence[int], context_features: Optional[int], actnorm: bool,
               **counts: Tuple[int, int]) -> str:
        """The checks and attributes every kind shares; ``counts`` as ``name=(value,
        minimum)``. Returns the name errors start with."""
        Transform.__init__(self)
        owner = self.entry_name
        self.shape = tuple(check_int(owner, f"shape[{i}]", s) for i, s in enumerate(shape))
        if len(self.shape) != self.event_dims:
            raise ValueError(f"{owner}: shape: the {self.kind} flow takes "
                             f"{'(D,)' if self.event_dims == 1 else '(C, H, W)'}, got "
                             f"{self.shape} (ConditionalRealNVP builds the kind a shape needs)")
        self.context_features = check_int(owner, "context_features", context_features,
                                          optional=True)
        for name, (value, minimum) in counts.items():
            check_int(owner, name, value, minimum)
        if not isinstance(actnorm, bool):
            raise TypeError(f"{owner}: actnorm: expected a bool, got {actnorm!r}")
        self.actnorm = actnorm
        return owner

    def _stage(self, shape, factory, partition: str, count: int) -> Chain:
        layers: List[Transform] = []
        for i in range(count):
            if self.actnorm:
                layers.append(ActNorm(shape[0]))
            layers.append(ConditionalAffineCoupling(shape, factory, partition, parity=i % 2))
        return Chain(layers)

    def _forward(self, inputs: Tensor, context: Optional[Tensor]):
        return self.flow(inputs, context)

    def _inverse(self, inputs: Tensor, context: Optional[Tensor]):
        return self.flow.inverse(inputs, context)


class VectorRealNVP(ConditionalRealNVP):
    r"""RealNVP on vectors ``(D,)``: ``num_couplings`` affine couplings of alternating halves
    (:class:`~flowvae.transforms.ChannelSplit`, parity ``0, 1, 0, ...``), each with
    an :class:`~flowvae.transforms.MLPConditioner` on ``[x_A, context]``; data -> noise.

    Args:
        shape: ``(D,)`` with ``D >= 2``.
        context_features: width of the context, or ``None`` for an unconditional flow.
        num_couplings: couplings (at least 1).
        hidden_features, num_layers: width and hidden layers of every conditioner's MLP.
        actnorm: put an :class:`ActNorm` (data-dependent init) before every coupling.

    Defaults: :data:`flowvae.choices.FLOW_OPTIONS` ``["vector"]``.

    Example:
        >>> import torch
        >>> flow = VectorRealNVP((3,), context_features=2, hidden_features=8)
        >>> noise, logabsdet = flow(torch.randn(5, 3), context=torch.randn(5, 2))
        >>> noise.shape, logabsdet.shape
        (torch.Size([5, 3]), torch.Size([5]))
    """

    kind, event_dims = "vector", 1
    __signature__ = None  # its own __init__, not the entry point's table

    def __init__(self, shape: Sequence[int], context_features: Optional[int] = None, *,
                 num_couplings: int = _VECTOR["num_couplings"],
                 hidden_features: int = _VECTOR["hidden_features"],
                 num_layers: int = _VECTOR["num_layers"], actnorm: bool = _VECTOR["actnorm"]):
        owner = self._setup(shape, context_features, actnorm, num_couplings=(num_couplings, 1),
                            hidden_features=(hidden_features, 1), num_layers=(num_layers, 0))
        if self.shape[0] < 2:
            raise ValueError(f"{owner}: shape: a vector RealNVP needs D >= 2, got {self.shape}")
        factory = partial(_mlp_factory, self.context_features, hidden_features=hidden_features,
                          num_layers=num_layers)
        self.flow = self._stage(self.shape, factory, "channel", num_couplings)


class MultiscaleRealNVP(ConditionalRealNVP):
    r"""The multi-scale RealNVP on images ``(C, H, W)`` (Dinh et al. 2017), data -> noise.

    Each of the first ``num_scales - 1`` scales applies ``num_checkerboard`` checkerboard
    couplings, a 2x2 squeeze, ``num_channelwise`` channel-wise couplings, and factors out half
    of the channels (:class:`~flowvae.transforms.multiscale.Scale`); the last scale applies
    ``num_final`` checkerboard couplings. The noise is returned **in the shape of** ``x``
    (factored parts are un-squeezed back into place), so a decoder can emit the base mean and
    scale as images. Every coupling's conditioner sees the context at its own resolution (its
    own ``G`` net). Widths start at ``hidden_channels`` and double at every scale.

    Args:
        shape: ``(C, H, W)``.
        context_features: width of the context, or ``None`` for an unconditional flow.
        num_scales: scales; ``H`` and ``W`` must be divisible by ``2 ** (num_scales - 1)``
            (``2 ** num_scales`` with ``checkerboard="squeezed"``).
        num_checkerboard, num_channelwise, num_final: couplings per stage (paper: 3, 3, 4;
            0 leaves a stage out).
        hidden_channels: conditioner width ``k`` at the first scale (paper: 64).
        num_blocks: residual blocks per conditioner (paper: 2).
        conditioner: a name in :data:`CONDITIONERS`: ``"multiplicative"`` (VAPNEV) or
            ``"concat"``.
        checkerboard: a checkerboard partition's name
            (:data:`~flowvae.transforms.partitions.CHECKERBOARDS`): ``"masked"`` (paper:
            conditioner at full resolution) or ``"squeezed"`` (conditioner on sub-pixel
            channels at half resolution; cheaper, a different model).
        actnorm: put an :class:`ActNorm` (data-dependent init) before every coupling.

    Defaults: :data:`flowvae.choices.FLOW_OPTIONS` ``["image"]``. Sizes and counts are checked
    when the flow is built (a TypeError for a non-integer, a ValueError below the minimum).

    Example:
        >>> import torch
        >>> flow = MultiscaleRealNVP((1, 4, 4), hidden_channels=4, num_blocks=1)
        >>> flow(torch.randn(2, 1, 4, 4))[0].shape
        torch.Size([2, 1, 4, 4])
    """

    kind, event_dims = "image", 3
    __signature__ = None  # its own __init__, not the entry point's table

    def __init__(self, shape: Sequence[int], context_features: Optional[int] = None, *,
                 num_scales: int = _IMAGE["num_scales"],
                 num_checkerboard: int = _IMAGE["num_checkerboard"],
                 num_channelwise: int = _IMAGE["num_channelwise"],
                 num_final: int = _IMAGE["num_final"],
                 hidden_channels: int = _IMAGE["hidden_channels"],
                 num_blocks: int = _IMAGE["num_blocks"],
                 conditioner: str = _IMAGE["conditioner"],
                 checkerboard: str = _IMAGE["checkerboard"], actnorm: bool = _IMAGE["actnorm"]):
        owner = self._setup(
            shape, context_features, actnorm, num_scales=(num_scales, 1),
            num_checkerboard=(num_checkerboard, 0), num_channelwise=(num_channelwise, 0),
            num_final=(num_final, 0), hidden_channels=(hidden_channels, 1),
            num_blocks=(num_blocks, 0))
        for name, value, table in (("conditioner", conditioner, CONDITIONERS),
                                   ("checkerboard", checkerboard, CHECKERBOARDS)):
            if value not in table:
                raise ValueError(f"{owner}: {name}: expected one of {tuple(table)}, got "
                                 f"{value!r}")
        _check_halvings(owner, self.shape, num_scales, checkerboard)
        factory = partial(_conv_factory, CONDITIONERS[conditioner], self.context_features,
                          num_blocks=num_blocks)
        self.counts = (num_checkerboard, num_channelwise, num_final)
        self.flow = self._levels(self.shape, num_scales, factory, checkerboard,
                                 hidden_channels)

    def _levels(self, shape, num_scales: int, factory, checkerboard: str,
                width: int) -> Transform:
        num_checkerboard, num_channelwise, num_final = self.counts
        here = partial(factory, hidden_channels=width)
        if num_scales == 1:
            return self._stage(shape, here, checkerboard, num_final)
        c, h, w = shape
        return Scale(
            self._stage(shape, here, checkerboard, num_checkerboard),
            self._stage((4 * c, h // 2, w // 2), here, "channel", num_channelwise),
            self._levels((2 * c, h // 2, w // 2), num_scales - 1, factory, checkerboard,
                         2 * width),
        )


def _conv_factory(cls, context_features, in_channels, out_channels, size, **kwargs):
    return cls(in_channels, out_channels, size, context_features=context_features, **kwargs)


def _mlp_factory(context_features, in_features, out_features, size, **kwargs):
    return MLPConditioner(in_features, out_features, context_features=context_features, **kwargs)


def _check_halvings(owner: str, shape, num_scales: int, checkerboard: str) -> None:
    """Refuse an image shape whose H and W the scales cannot halve often enough."""
    # a partition may halve H and W itself inside every scale (the squeezed checkerboard)
    exponent = num_scales - 1 + PARTITIONS[checkerboard].halvings
    factor = 2 ** exponent
    _, height, width = shape
    if height % factor or width % factor:
        raise ValueError(
            f"{owner}: shape {shape}: H and W must be divisible by 2**{exponent} = {factor} "
            f"for {num_scales} scales with the {checkerboard} checkerboard"
        )


_KINDS = (VectorRealNVP, MultiscaleRealNVP)


def _flow_class(owner: str, args: tuple, kwargs: dict):
    """The kind of flow ``ConditionalRealNVP(*args, **kwargs)`` builds, or one error naming
    every option that belongs to the other kind or to none."""
    if len(args) > 2:
        raise TypeError(f"{owner}: takes shape and context_features by position and the "
                        f"options by keyword, got {len(args)} positional arguments")
    if not args and "shape" not in kwargs:
        raise TypeError(f"{owner}: missing the argument shape, (C, H, W) or (D,)")
    shape = args[0] if args else kwargs["shape"]
    shape = tuple(check_int(owner, f"shape[{i}]", s) for i, s in enumerate(shape))
    kinds = {cls.event_dims: cls for cls in _KINDS}
    if len(shape) not in kinds:
        raise ValueError(f"{owner}: shape: expected (C, H, W) for an image flow or (D,) for a "
                         f"vector flow, got {shape}")
    cls = kinds[len(shape)]
    own = FLOW_OPTIONS[cls.kind]
    alien = [name for name in kwargs if name not in own and name not in
             ("shape", "context_features")]
    if alien:
        owners = {name: kind for kind, options in FLOW_OPTIONS.items() for name in options}
        said = ", ".join(f"{name} ({owners[name] + ' flow' if name in owners else 'unknown'})"
                         for name in alien)
        raise TypeError(f"{owner}: shape {shape} makes the {cls.kind} flow ({cls.__name__}), "
                        f"which does not take {said}; its options: {', '.join(own)}")
    return cls


def _entry_signature() -> inspect.Signature:
    """``ConditionalRealNVP``'s signature: shape, context_features and every kind's options
    with their defaults from :data:`flowvae.choices.FLOW_OPTIONS`."""
    options = {name: default for table in FLOW_OPTIONS.values()
               for name, default in table.items()}
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature(
        [inspect.Parameter("shape", kind), inspect.Parameter("context_features", kind,
                                                             default=None)]
        + [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
           for name, default in options.items()])


ConditionalRealNVP.__signature__ = _entry_signature()  # type: ignore[attr-defined]
