"""The checkpoint format of :func:`flowvae.train.fit`: one ``torch.save`` dict written
atomically, read back with a clear error, and the model rebuilt from its recorded
hyper-parameters (:attr:`flowvae.models.PyroModel.config`).

The file is a ``torch.save`` envelope ``{"format", "sha256", "payload"}`` whose ``payload`` is
the ``torch.save`` bytes of the state (as a ``uint8`` tensor) and ``sha256`` their digest, so
that a corrupted file is detected before it is read. Both are plain data (tensors, numbers,
strings and the constraint classes of the Pyro param store), loaded with
``torch.load(weights_only=True)`` and :func:`allowed_globals` as the allow-list: a checkpoint
cannot run code. Files of flowvae 0.3 (the state without an envelope) still load.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import os
import random
from typing import Any, Dict, List

import numpy as np
import pyro
import torch
from pyro.distributions import constraints as pyro_constraints
from torch.distributions import constraints as torch_constraints

import flowvae
from flowvae.models.base import safe_load
from flowvae.train.config import CHECKPOINT
from flowvae.train.rundir import write_atomically

#: the envelope's ``format`` entry
FORMAT = "flowvae-checkpoint-1"

__all__ = ["CHECKPOINT", "allowed_globals", "check_compatible", "load_model",
           "read_checkpoint", "restore_foreign_params", "save_checkpoint", "write_checkpoint"]


def rng_state() -> Dict[str, Any]:
    """The torch, NumPy and Python random number streams' states, as plain data (NumPy's
    key array as a tensor)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
            "python": random.getstate()}


def set_rng_state(state: Dict[str, Any]) -> None:
    """Put back the streams saved by :func:`rng_state` (or by flowvae 0.3, NumPy's keys as
    an array)."""
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else keys
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])


def allowed_globals() -> List[Any]:
    """What a checkpoint may hold beyond ``torch.load(weights_only=True)``'s defaults: the
    constraint classes of torch and Pyro (the param store records one per parameter) and,
    for files of flowvae 0.3, NumPy's arrays (its random state)."""
    classes = set()
    for module in (torch_constraints, pyro_constraints):
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, torch_constraints.Constraint):
                classes.add(value)
            elif isinstance(value, torch_constraints.Constraint):
                classes.add(type(value))
    _reconstruct = np.zeros(0).__reduce__()[0]  # NumPy's array rebuilder, 1.x and 2.x
    numpy = [(_reconstruct, "numpy.core.multiarray._reconstruct"),
             (_reconstruct, "numpy._core.multiarray._reconstruct"), np.ndarray, np.dtype,
             type(np.dtype(np.uint32))]
    return sorted(classes, key=lambda c: c.__qualname__) + numpy


def save_checkpoint(path: str, module, optim, schedule, epoch: int, step: int,
                    history: List[Dict]) -> None:
    """Write the checkpoint to ``path`` atomically (a temporary file, then a rename), so a
    crash mid-write leaves the previous checkpoint intact."""
    state = {
        "flowvae_version": flowvae.__version__,
        "model": type(module).__name__,
        "config": getattr(module, "config", None),
        "state_dict": module.state_dict(),
        "optim": {"optimizer": optim.state_dict(), "schedule": schedule.state_dict()},
        "param_store": pyro.get_param_store().get_state(),
        "epoch": epoch,
        "step": step,
        "rng": rng_state(),
        "history": history,
    }
    write_checkpoint(path, state)


def write_checkpoint(path: str, state: Dict[str, Any]) -> None:
    """Write the checkpoint dict ``state`` to ``path`` atomically, in its checksummed
    envelope (see the module's docstring).

    Raises:
        flowvae.train.rundir.RunDirectoryError: an OS error (a full disk, a read-only
            folder), in one line naming ``path`` and the fix; no temporary file is left.
    """
    payload = io.BytesIO()
    torch.save(state, payload)  # in memory: the disk sees one plain write, or nothing
    data = payload.getbuffer()
    envelope = io.BytesIO()
    torch.save({"format": FORMAT, "sha256": hashlib.sha256(data).hexdigest(),
                # a uint8 tensor, stored as raw bytes (pickle protocol 2 would re-encode bytes)
                "payload": torch.frombuffer(data, dtype=torch.uint8)}, envelope)
    write_atomically(path, envelope.getvalue())


def read_checkpoint(path: str, map_location=None) -> Dict[str, Any]:
    """The dict :func:`save_checkpoint` wrote to ``path``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a flowvae checkpoint (truncated, foreign, corrupted: its
            checksum does not match, or it holds objects outside :func:`allowed_globals`), in
            one line.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path!r}")
    state = _load(path, path, map_location)
    if isinstance(state, dict) and state.get("format") == FORMAT:
        payload = state.get("payload")
        payload = payload.numpy().tobytes() if isinstance(payload, torch.Tensor) else b""
        if hashlib.sha256(payload).hexdigest() != state.get("sha256"):
            raise ValueError(f"{path!r} is corrupted: its contents do not match the checksum "
                             "written with them; resume from another copy or train again")
        state = _load(io.BytesIO(payload), path, map_location)
    if not isinstance(state, dict) or "state_dict" not in state or "model" not in state:
        raise ValueError(f"{path!r} is not a readable flowvae checkpoint: it holds a "
                         f"{type(state).__name__} without model and state_dict entries")
    return state


def _load(source, path: str, map_location) -> Any:
    return safe_load(source, path, "flowvae checkpoint", map_location, allowed_globals())


def load_model(path: str, map_location=None):
    """Rebuild the model saved in a checkpoint (by :func:`~flowvae.train.fit`) from its
    recorded hyper-parameters and load its weights.

    Checkpoints of flowvae 0.3 (hand-written configs) load the same way: a hyper-parameter
    they lack takes its constructor default, which is the value they were trained with.

    Raises:
        ValueError: one line, when the file is not a checkpoint, its model is not one of
            :data:`flowvae.models.MODELS`, or its weights do not fit the rebuilt model.
    """
    from flowvae.models import MODELS

    state = read_checkpoint(path, map_location)
    name = state.get("model")
    cls = {cls.__name__: cls for cls in MODELS.values()}.get(name)
    if cls is None or state.get("config") is None:
        raise ValueError(f"{path!r} holds a model flowvae cannot rebuild ({name!r})")
    try:
        module = cls(**state["config"])
        module.load_state_dict(state["state_dict"])
    except (TypeError, RuntimeError) as err:  # arguments or tensors of another version
        message = " ".join(str(err).split())[:300]
        raise ValueError(f"{path!r} does not fit this flowvae's {name} (written by another "
                         f"version?): {message}") from err
    return module


def check_compatible(state: Dict[str, Any], module, path: str) -> None:
    """Raise ``ValueError`` unless the checkpoint ``state`` can resume ``module``: the same
    class, the same hyper-parameters (those the checkpoint lacks at their defaults), the same
    tensors."""
    config = getattr(module, "config", None)
    if "optimizer" not in (state.get("optim") or {}):
        raise ValueError(f"checkpoint {path!r} was written by a flowvae older than 0.2 (a Pyro "
                         "optimizer state); load its weights with load_model, it cannot resume")
    theirs_config = _with_defaults(type(module), state.get("config"))
    if state.get("model") != type(module).__name__ or theirs_config != config:
        raise ValueError(
            f"checkpoint {path!r} is of model {state.get('model')} with config "
            f"{state.get('config')}, not of this {type(module).__name__} with config {config}"
        )
    ours, theirs = module.state_dict().keys(), state["state_dict"].keys()
    if ours != theirs:  # the same config, another architecture: another flowvae version
        missing, unknown = sorted(ours - theirs), sorted(theirs - ours)
        raise ValueError(
            f"checkpoint {path!r} does not fit this {type(module).__name__} (written by another "
            f"flowvae version?): it lacks {len(missing)} of its tensors{_e_g(missing)} and has "
            f"{len(unknown)} it does not know{_e_g(unknown)}; train in a new folder"
        )


def _with_defaults(cls, config):
    """A 0.3 checkpoint's hand-written config completed with the constructor's defaults."""
    complete = getattr(cls, "complete_config", None)
    if not isinstance(config, dict) or complete is None:
        return config
    try:
        return complete(config)
    except TypeError:  # arguments this class does not take: it cannot match
        return config


def _e_g(names: List[str]) -> str:
    return f" (e.g. {names[0]})" if names else ""


def restore_foreign_params(store_state: Dict[str, Any], module) -> None:
    """Put back param-store entries that are not the module's own parameters (a PyroModule's
    parameters live in the module, and re-registering copies of them would detach the
    module from the optimizer)."""
    own = {name for name, _ in module.named_parameters(remove_duplicate=False)}

    def is_own(name: str) -> bool:  # under the model's name prefix, whichever it was
        return name in own or name.split(".", 1)[-1] in own

    pyro.get_param_store().set_state({
        key: {name: v for name, v in store_state[key].items() if not is_own(name)}
        for key in ("params", "constraints")
    })
