"""Initialisation idioms shared by the networks and flows.

**Data-dependent initialisation** (Salimans and Kingma 2016, weight normalisation; Kingma and
Dhariwal 2018, Glow's ActNorm): a module sets some parameters from the statistics of the first
batch it sees in training mode. Every such module implements one protocol,
:class:`DataDependentInit`: an ``initialized`` boolean (a buffer, so that a loaded checkpoint
is not initialised again). Callers find these modules by type (:func:`data_init_modules`),
never by a buffer's name; :func:`flowvae.train.initialize_on_data` runs them on one batch.
"""

from __future__ import annotations

from typing import Callable, List, Sequence, Tuple, Type

import torch
from nflows.transforms.normalization import ActNorm as _NflowsActNorm
from torch import nn

__all__ = ["DataDependentInit", "data_init_modules", "needs_data_init", "normalize_convolutions",
           "register_data_init"]


class DataDependentInit:
    """Mixin of a module initialised from the first batch it sees in training mode.

    An implementation holds ``initialized``, a 0-d boolean tensor buffer (``True`` once done,
    saved in the state dict), and initialises itself in its own forward pass (or, for a
    model, in its guide) when it is ``False`` in training mode.
    """


_FOREIGN: List[Type] = []


def register_data_init(cls: Type) -> Type:
    """Declare that instances of ``cls`` (a class that cannot inherit from
    :class:`DataDependentInit`, e.g. one defined in another package) implement the protocol;
    returns ``cls``, so that it can decorate a class."""
    if cls not in _FOREIGN:
        _FOREIGN.append(cls)
    return cls


# nflows' ActNorm (and flowvae.transforms.ActNorm, which extends it) initialise on their first
# training batch and keep the flag ``initialized``; they cannot inherit from flowvae's mixin
register_data_init(_NflowsActNorm)


def _protocol_types() -> Tuple[Type, ...]:
    return (DataDependentInit, *_FOREIGN)


def data_init_modules(module: nn.Module) -> List[nn.Module]:
    """The modules in ``module`` (itself included) that implement :class:`DataDependentInit`."""
    types = _protocol_types()
    return [m for m in module.modules() if isinstance(m, types)]


def needs_data_init(module: nn.Module) -> bool:
    """Whether some module in ``module`` is still waiting for its first batch (reads each
    flag on the host once)."""
    return not all(bool(m.initialized) for m in data_init_modules(module))


@torch.no_grad()
def normalize_convolutions(forward: Callable[[], object], networks: Sequence[nn.Module],
                           skip: Sequence[Type[nn.Module]] = (), eps: float = 1e-6) -> int:
    r"""Data-dependent initialisation (Salimans & Kingma, 2016, "Weight normalization") of the
    plain convolutions of ``networks``: ``forward()`` (a pass through the model on one batch)
    runs twice without gradients; in the second run every ``Conv2d`` / ``ConvTranspose2d``, in
    the order they run, gets ``w <- w / s`` and ``b <- (b - m) / s`` per output channel, ``m``
    and ``s`` the mean and standard deviation of its output on the batch (over batch and
    positions), so that its output has mean 0 and standard deviation 1. Left alone: the last
    convolution each network runs (its output: a distribution's parameters, or features that
    another network reads) and every convolution inside a module of a type in ``skip``.

    Args:
        forward: runs the networks on a batch.
        networks: the modules whose convolutions are initialised.
        skip: module types whose convolutions stay as they are (e.g. attention gates).
        eps: added to ``s``.

    Returns:
        the number of convolutions initialised.

    Example:
        >>> import torch
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3),
        ...                     nn.ReLU(), nn.Conv2d(4, 2, 1))
        >>> x = torch.randn(32, 1, 8, 8)
        >>> normalize_convolutions(lambda: net(x), [net])
        2
        >>> round(net[:3](x).std((0, 2, 3)).mean().item(), 3)
        1.0
    """
    skipped = {id(m) for net in networks for a in net.modules() if isinstance(a, tuple(skip))
               for m in a.modules()}
    convs = {id(m): m for net in networks for m in net.modules()
             if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and id(m) not in skipped}
    order: List[int] = []

    def record(module, inputs, output):
        if id(module) not in order:
            order.append(id(module))

    handles = [m.register_forward_hook(record) for m in convs.values()]
    try:
        forward()
    finally:
        for h in handles:
            h.remove()
    last = set()
    for net in networks:
        own = {id(m) for m in net.modules()}
        ran = [i for i in order if i in own]
        if ran:
            last.add(ran[-1])
    todo = {i for i in order if i not in last}

    def normalise(module, inputs, output):
        if id(module) not in todo:
            return None
        todo.discard(id(module))
        mean = output.mean((0, 2, 3))
        scale = 1 / (output.std((0, 2, 3), correction=0) + eps)
        # Conv2d weights are (out, in, k, k), ConvTranspose2d weights (in, out, k, k)
        dim = 1 if isinstance(module, nn.ConvTranspose2d) else 0
        shape = [1] * module.weight.dim()
        shape[dim] = -1
        module.weight.mul_(scale.view(shape))
        if module.bias is None:  # the mean stays
            return output * scale.view(1, -1, 1, 1)
        module.bias.sub_(mean).mul_(scale)
        return (output - mean.view(1, -1, 1, 1)) * scale.view(1, -1, 1, 1)

    count = len(todo)
    handles = [convs[i].register_forward_hook(normalise) for i in todo]
    try:
        forward()
    finally:
        for h in handles:
            h.remove()
    return count
