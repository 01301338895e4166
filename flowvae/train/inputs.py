"""What :func:`flowvae.train.fit` checks before its first step, in flowvae's words.

``fit`` takes the data's declarations, as ``flowvae train`` does: a dataset object
(:class:`flowvae.data.ImageDataset`) says how many grey ``levels`` its ``uint8`` images have
(2 for ``binarized-mnist`` and ``binarize=``, 256 for 8-bit); a model says which
levels its ``preprocess`` takes (:attr:`flowvae.models.PyroModel.data_levels`). A mismatch
would train on the wrong observations (8-bit binarization of {0, 1} images gives near-empty
images), or end in "training diverged", so it is one clear error here. The options that need
torch to judge (the device) and the callbacks are checked here too; the others in
:class:`~flowvae.train.FitConfig`.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from flowvae.train.config import FitConfig

__all__ = ["CALLBACK_HOOKS", "check_callbacks", "check_data", "check_device", "check_fit_inputs"]

#: the hooks :func:`~flowvae.train.fit` calls on every callback
CALLBACK_HOOKS = ("on_start", "on_epoch_start", "on_step", "on_epoch", "should_stop")

#: the methods of the model protocol that ``fit`` calls
_PROTOCOL = ("model", "guide", "preprocess")


def check_fit_inputs(module: Any, train_data: Any, test_data: Any, config: FitConfig,
                     callbacks: Sequence[Any] = ()) -> None:
    """Everything :func:`~flowvae.train.fit` can judge before it builds anything: the model
    follows the protocol, the data's declared levels are the model's, the device is a
    device, the callbacks have the hooks.

    Raises:
        TypeError: ``module`` lacks a method of the model protocol, or a callback is a class
            or lacks a hook.
        ValueError: the data's levels are not the model's, or the device is not a torch
            device (or not available).
    """
    missing = [name for name in _PROTOCOL if not callable(getattr(module, name, None))]
    if missing:
        raise TypeError(f"fit: module: expected a flowvae model (a PyroModel with model, guide "
                        f"and preprocess), got a {type(module).__name__} without "
                        f"{', '.join(missing)}")
    check_data(module, train_data, "train_data")
    if test_data is not None:
        check_data(module, test_data, "test_data")
    check_device(config.device)
    check_callbacks(callbacks)


def check_data(module: Any, data: Any, name: str) -> None:
    """The declared grey ``levels`` of ``data`` (a dataset object's) against the model's
    ``data_levels``. (The images' dtype and shape are checked when ``fit`` reads them, by
    the model's own ``preprocess`` on two of them, before step 1.)"""
    levels = getattr(data, "levels", None)
    wanted = getattr(module, "data_levels", 256)
    if levels is not None and int(levels) != int(wanted):
        model = type(module).__name__
        fix = (f"build the model for them: its likelihood's data_levels={int(levels)} (e.g. "
               f"likelihood_kwargs=dict(data_levels={int(levels)}); flowvae train does this)"
               if _takes_levels(module) else
               "this model's likelihood takes 8-bit images only: use one that declares "
               "takes_data_levels (bernoulli, pixelcnn) or 8-bit data")
        raise ValueError(f"fit: {name} has {int(levels)} grey levels ({data!r}), but the {model}'s "
                         f"preprocess takes {int(wanted)}: {fix}")


def _takes_levels(module: Any) -> bool:
    p_x = getattr(module, "p_x", None)
    return bool(getattr(p_x, "takes_data_levels", False))


def check_device(device: Any) -> None:
    """``device`` (``FitConfig.device``) names a torch device this machine has, or is None."""
    if device is None or isinstance(device, torch.device) and device.type != "cuda":
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"FitConfig: device: {device!r} is not a torch device; use 'cpu', "
                         "'cuda', 'cuda:1', 'mps', a torch.device, or None (CUDA when "
                         "available)") from err
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"FitConfig: device: {device!r} asked for, but CUDA is not available "
                         "here; use 'cpu' or None")
    if parsed.type == "cuda" and parsed.index is not None \
            and parsed.index >= torch.cuda.device_count():
        raise ValueError(f"FitConfig: device: {device!r}, but this machine has "
                         f"{torch.cuda.device_count()} CUDA devices")


def check_callbacks(callbacks: Sequence[Any]) -> None:
    """Every callback is an object with the hooks of :class:`flowvae.train.Callback`."""
    if isinstance(callbacks, (str, bytes)) or not hasattr(callbacks, "__iter__"):
        raise TypeError(f"fit: callbacks: expected a list of callbacks, got {callbacks!r}")
    for i, hook in enumerate(callbacks):
        if isinstance(hook, type):
            raise TypeError(f"fit: callbacks[{i}]: expected a callback object, got the class "
                            f"{hook.__name__}; pass {hook.__name__}(...)")
        missing = [name for name in CALLBACK_HOOKS if not callable(getattr(hook, name, None))]
        if missing:
            raise TypeError(f"fit: callbacks[{i}]: a {type(hook).__name__} lacks the hooks "
                            f"{', '.join(missing)}; derive it from flowvae.train.Callback")
