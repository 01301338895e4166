"""The base of flowvae's models: what makes a ``PyroModule`` model a complete Pyro program."""

from __future__ import annotations

import functools
import inspect
import itertools
import re
import warnings
from collections import defaultdict
from copy import deepcopy
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple

import numpy as np
import pyro
import torch
from pyro.nn import PyroModule
from pyro.nn.module import pyro_method
from torch import Tensor

from flowvae.validation import check_int, check_nonempty, check_temperature, module_dtype

__all__ = ["PARAMS_FORMAT", "PyroModel", "pyro_method", "pyro_program", "recorded_arguments",
           "safe_load"]

_COUNTERS: Dict[str, Iterator[int]] = defaultdict(itertools.count)


#: the decorator of a model's ``model`` / ``guide``: Pyro's own ``pyro_method``, which runs the
#: method inside the model's ``PyroModule`` context. Why: ``PyroModule`` announces a parameter
#: to Pyro (a ``pyro.param`` site) only while one of its modules is being *called*; a flow
#: sampled in the guide runs through plain method calls (an nflows ``inverse``), so parameters
#: read there (e.g. a coupling's ``scale``) would never reach the trace, ``SVI`` would not train
#: them and ``JitTrace_ELBO`` would find them as constants. Inside the context every parameter
#: read is a ``param`` site. ``pyro_program`` is its former name, kept as an alias.
pyro_program = pyro_method

#: the ``format`` entry of the files :meth:`PyroModel.save_param_store` writes
PARAMS_FORMAT = "flowvae-params-1"


def safe_load(source: Any, path: str, what: str, map_location=None,
              allowed: Sequence[Any] = ()) -> Any:
    """``torch.load(source, weights_only=True)`` with ``allowed`` as extra safe globals: tensors,
    numbers, strings and containers only, so a planted object cannot run code.

    Raises:
        ValueError: one line naming ``path``: the file is truncated, corrupted, or holds an
            object that is not plain data (``what`` names the kind of file expected).
    """
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(source, map_location=map_location, weights_only=True)
    except Exception as err:  # a truncated, corrupted or foreign file
        message = " ".join(str(err).split())
        foreign = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)",
                            message)
        if foreign:  # torch's advice to load with weights_only=False is not repeated
            message = (f"it holds a {foreign.group(1)}, which is not plain data (tensors, "
                       "numbers, strings, constraints) and could run code when loaded")
        raise ValueError(f"{path!r} is not a readable {what}: {message[:300]}") from err


def _fresh_name(cls: type) -> str:
    """The class name and a counter unique in this process: ``"VAE_0"``, ``"VAE_1"``, ..."""
    return f"{cls.__name__}_{next(_COUNTERS[cls.__name__])}"


def _check_observation(owner: str, x: Any, shape: Tuple[int, ...]) -> None:
    """Refuse, in flowvae's words and from metadata alone, what ``model`` / ``guide`` /
    ``reconstruct`` cannot take for the observation ``x``: a non-tensor, raw ``uint8`` images
    (not yet through ``preprocess``), an image without its batch dimension."""
    if x is None:
        return
    if not isinstance(x, Tensor):
        raise TypeError(f"{owner}: x: expected a torch.Tensor (B, {_dims(shape)}), got "
                        f"{type(x).__module__}.{type(x).__qualname__}; convert it with "
                        "torch.as_tensor and pass it through preprocess")
    if x.dtype == torch.uint8:
        raise TypeError(f"{owner}: x: expected the observation that preprocess returns, got raw "
                        "uint8 images; call model.preprocess(images) first")
    if x.dim() <= len(shape):
        raise ValueError(f"{owner}: x: expected a batch (B, {_dims(shape)}), got shape "
                         f"{tuple(x.shape)}, an image without its batch dimension; give "
                         "x[None] for a batch of one")


def _dims(shape: Tuple[int, ...]) -> str:
    return ", ".join(str(s) for s in shape)


def _checked_observation(method: Callable) -> Callable:
    """``method(x, ...)`` (``model``, ``guide``, ``reconstruct``) checking ``x`` first."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        x = args[0] if args else kwargs.get("x")
        _check_observation(f"{type(self).__name__}.{method.__name__}", x,
                           tuple(getattr(self, "shape", ())))
        return method(self, *args, **kwargs)

    return wrapper


#: constructor arguments that are not hyper-parameters (a param-store prefix)
_NOT_RECORDED = ("self", "name")


def _plain(value: Any) -> Any:
    """``value`` with every list, tuple and ``torch.Size`` a tuple and every mapping a dict
    (copied), so that recorded arguments compare equal however they were spelled."""
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def recorded_arguments(init: Callable, args: tuple, kwargs: dict) -> Dict[str, Any]:
    """The arguments of a call ``init(self, *args, **kwargs)`` by name, defaults filled in,
    ``**kwargs`` flattened, ``name`` left out; containers copied (:func:`_plain`)."""
    signature = inspect.signature(init)
    bound = signature.bind(None, *args, **kwargs)
    bound.apply_defaults()
    recorded: Dict[str, Any] = {}
    for key, value in bound.arguments.items():
        kind = signature.parameters[key].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            raise TypeError(f"{init.__qualname__} takes *{key}: hyper-parameters are recorded "
                            "by name, so a model's constructor takes no *args")
        if kind is inspect.Parameter.VAR_KEYWORD:
            recorded.update({k: v for k, v in _plain(value).items() if k not in _NOT_RECORDED})
        elif key not in _NOT_RECORDED:
            recorded[key] = _plain(value)
    return recorded


def _checked_generate(generate: Callable) -> Callable:
    """``generate`` refusing ``n < 1`` and a ``temperature`` that is not a finite number > 0,
    in flowvae's words, before any work (no tensor is read)."""
    signature = inspect.signature(generate)

    @functools.wraps(generate)
    def wrapper(self, *args, **kwargs):
        given = signature.bind(self, *args, **kwargs).arguments
        owner = f"{type(self).__name__}.generate"
        if "n" in given:
            check_int(owner, "n", given["n"], minimum=1)
        if "temperature" in given:
            check_temperature(owner, given["temperature"])
        return generate(self, *args, **kwargs)

    return wrapper


def _checked_preprocess(preprocess: Callable) -> Callable:
    """``preprocess`` refusing an empty batch (a metadata check: no host read) and returning
    floating-point observations in the dtype of the model's parameters, so that a model
    converted with ``.double()`` trains and evaluates in float64 end to end."""

    @functools.wraps(preprocess)
    def wrapper(self, x, *args, **kwargs):
        owner = f"{type(self).__name__}.preprocess"
        if isinstance(x, np.ndarray):  # a NumPy batch of uint8 images: the same data
            x = torch.as_tensor(x)
        if not isinstance(x, Tensor):
            raise TypeError(f"{owner}: x: expected uint8 images (B, C, H, W) as a torch.Tensor "
                            f"or a NumPy array, got {type(x).__module__}.{type(x).__qualname__}")
        check_nonempty(owner, "x", x)
        out = preprocess(self, x, *args, **kwargs)
        if isinstance(out, Tensor) and out.is_floating_point():
            dtype = module_dtype(self)
            if dtype is not None and out.dtype != dtype:
                out = out.to(dtype)
        return out

    return wrapper


def _recording(init: Callable) -> Callable:
    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        arguments = recorded_arguments(init, args, kwargs)
        init(self, *args, **kwargs)
        if type(self).__init__ is wrapper:  # the outermost constructor: the class built
            self.__dict__["_hyper_parameters"] = arguments

    return wrapper


class PyroModel(PyroModule):
    """The base of flowvae's models, and the protocol that :func:`flowvae.train.fit`,
    :func:`flowvae.infer.evaluate` and the CLI rely on: a ``PyroModule`` whose ``model`` and
    ``guide`` (decorated with Pyro's ``pyro_method``) read every parameter through Pyro, under
    names that start with the model's own ``name``. ``model``, ``guide`` and ``reconstruct``
    refuse raw ``uint8`` images (call ``preprocess``) and an image without its batch dimension.

    A subclass provides ``shape`` (the image shape ``(C, H, W)``), ``preprocess(images)``
    (``uint8`` images to the observation ``model`` and ``guide`` take), ``model(x=None,
    batch_size=None)``, ``guide(x)``, ``generate(n, temperature)`` and ``reconstruct(x)``
    (images in ``[0, 1]``), and :attr:`discrete`. Its hyper-parameters are recorded from its
    constructor's arguments (:attr:`config`), never written by hand; modules that initialise
    from data implement :class:`flowvae.nn.init.DataDependentInit`.

    Args:
        name: prefix of the model's names in Pyro's param store; ``None``: the class name and a
            counter unique in this process (``"VAE_0"``, ``"VAE_1"``, ...), so that two models
            of one class train side by side under SVI. ``copy.deepcopy(model)`` and
            :meth:`copy` give the copy a fresh name, so that it trains on its own.

    Saving and loading: :meth:`save_param_store` and :meth:`load_param_store` (every
    parameter and buffer, and a Pyro optimizer's state; loaded with ``weights_only=True``),
    or :func:`flowvae.train.fit`'s checkpoints.
    """

    #: the image shape ``(C, H, W)`` the model takes
    shape: Tuple[int, ...]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:  # record the bound arguments of this constructor
            cls.__init__ = _recording(cls.__dict__["__init__"])
        for method, check in (("generate", _checked_generate),
                              ("preprocess", _checked_preprocess),
                              ("model", _checked_observation), ("guide", _checked_observation),
                              ("reconstruct", _checked_observation)):
            if method in cls.__dict__:  # every model's entry points check their arguments
                setattr(cls, method, check(cls.__dict__[method]))

    @property
    def config(self) -> Dict[str, Any]:
        """The hyper-parameters this model was built with: the arguments of its class's
        constructor by name, defaults filled in (``name`` left out), recorded when it was
        called, so that ``type(model)(**model.config)`` builds the same architecture
        (:func:`flowvae.train.load_model` does). A copy: edits do not change the model."""
        return _plain(self.__dict__.get("_hyper_parameters", {}))

    @classmethod
    def complete_config(cls, config: Mapping[str, Any]) -> Dict[str, Any]:
        """``config`` (e.g. the hand-written one of a flowvae 0.3 checkpoint, which left out
        arguments at their defaults) with the constructor's defaults filled in, in the form
        :attr:`config` has."""
        init = cls.__init__
        init = getattr(init, "__wrapped__", init)
        return recorded_arguments(init, (), dict(config))

    def __init__(self, name: Optional[str] = None):
        super().__init__(name=_fresh_name(type(self)) if name is None else name)

    @property
    def discrete(self) -> bool:
        """Whether ``log p(x)`` is a probability mass of 8-bit images (``True``: Bernoulli,
        discretized logistic, categorical) or a density of dequantized pixels in ``[0, 1)``
        (``False``); bits/dim (:func:`~flowvae.infer.bits_per_dim`) reads it. By default the
        likelihood part ``p_x`` declares it."""
        return bool(self.p_x.discrete)

    # ------------------------------------------------------------------ the protocol
    def preprocess(self, x: Tensor) -> Tensor:
        """``uint8`` images ``(B, *shape)`` to the observation ``model`` and ``guide`` take
        (e.g. dequantized or binarized pixels)."""
        raise NotImplementedError(f"{type(self).__name__} does not define preprocess")

    def model(self, x: Optional[Tensor] = None, batch_size: Optional[int] = None):
        """The Pyro model: scores the observation ``x``, or draws ``batch_size`` of them."""
        raise NotImplementedError(f"{type(self).__name__} does not define model")

    def guide(self, x: Tensor, batch_size: Optional[int] = None) -> None:
        """The Pyro guide: draws the latents given the observation ``x``."""
        raise NotImplementedError(f"{type(self).__name__} does not define guide")

    def generate(self, n: int, temperature: float = 1.0):
        """``n`` images from the model, in ``[0, 1]``, ``(n, *shape)``."""
        raise NotImplementedError(f"{type(self).__name__} does not define generate")

    def reconstruct(self, x: Tensor, temperature: float = 1.0):
        """Images decoded from ``q(z|x)`` for the observation ``x``, in ``[0, 1]``."""
        raise NotImplementedError(f"{type(self).__name__} has no latent to reconstruct from")

    @property
    def data_levels(self) -> int:
        """The grey levels of the ``uint8`` images :meth:`preprocess` takes: 2 (binary images in
        {0, 1}, e.g. ``binarized-mnist``) or 256 (8-bit), as the likelihood part declares it
        (``takes_data_levels``); 256 for a model without such a part.
        :func:`flowvae.train.fit` compares it with the dataset's ``levels``."""
        p_x = self._modules.get("p_x")
        if p_x is not None and getattr(p_x, "takes_data_levels", False):
            return int(p_x.data_levels)
        return 256

    @property
    def name(self) -> str:
        """The prefix of this model's parameter names in Pyro's param store."""
        return self._pyro_name

    def param_name(self, parameter_name: str) -> str:
        """The param-store name of the parameter called ``parameter_name`` in the state dict."""
        return f"{self.name}.{parameter_name}" if self.name else parameter_name

    # ------------------------------------------------------------------ copies
    def copy(self, name: Optional[str] = None) -> PyroModel:
        """A deep copy that trains on its own: its own parameters and buffers, and param-store
        names under ``name`` (``None``: a fresh name, as a model built without ``name``
        gets). ``copy.deepcopy(model)`` is ``model.copy()``."""
        clone = deepcopy(self)
        if name is not None:
            clone._rename(name)
        return clone

    def __deepcopy__(self, memo: Dict[int, Any]) -> PyroModel:
        # the default deep copy, then a fresh name: the copy's parameters would otherwise share
        # the original's param-store names, and SVI on the copy would update the original's
        clone = type(self).__new__(type(self))
        memo[id(self)] = clone
        clone.__setstate__(deepcopy(self.__getstate__(), memo))
        clone._rename(_fresh_name(type(self)))
        return clone

    def _rename(self, name: str) -> None:
        """Put this model and every ``PyroModule`` in it under the param-store prefix ``name``."""
        old = self._pyro_name
        for module in self.modules():
            if isinstance(module, PyroModule):
                rest = module._pyro_name[len(old):].lstrip(".")
                module._pyro_name = f"{name}.{rest}" if name and rest else (name or rest)

    # ------------------------------------------------------------------ the param store
    def save_param_store(self, path: Any, optim: Any = None) -> None:
        """Save this model to ``path``: every parameter *and buffer* (its ``state_dict``,
        which Pyro's param store cannot hold: ActNorm's and srVAE's ``initialized`` flags,
        normalisation statistics), its ``name``, and the state of a Pyro optimizer ``optim``
        (``pyro.optim.Adam(...)``, the one given to ``SVI``), so that training goes on
        bit-exactly after :meth:`load_param_store`.

        Use it instead of ``pyro.get_param_store().save(path)``: the store keeps one of the
        module paths a shared flow has, no buffer, and Pyro loads it with an unrestricted
        unpickler.
        """
        state = {"format": PARAMS_FORMAT, "model": type(self).__name__, "name": self.name,
                 "state_dict": self.state_dict(),
                 "optim": None if optim is None else optim.get_state()}
        torch.save(state, path)

    @torch.no_grad()
    def load_param_store(self, path: Any = None, optim: Any = None, map_location=None) -> int:
        """Load what :meth:`save_param_store` wrote to ``path`` into this model (built with the
        same arguments): every parameter and buffer, and into ``optim`` (a Pyro optimizer,
        before its first step) the saved optimizer state. Returns the number of tensors
        restored. The file is read with ``torch.load(weights_only=True)``: it cannot run code.

        The param store then holds no stale copy of the model's parameters: the next ``SVI``
        step registers the module's own tensors, under this model's ``name`` (the optimizer
        state is renamed to it if the saved model had another).

        ``path=None``: the former route, after ``pyro.get_param_store().load(path)`` (which
        unpickles without restriction: load only files you wrote): copies every parameter
        found in the store, under any module path, and returns their number. The store holds
        no buffers, so a model with buffers warns.

        Raises:
            ValueError: one line: the file is not readable, holds a non-tensor object, or a
                model of another class or architecture.
        """
        if path is None:
            return self._copy_from_store()
        state = safe_load(path, str(path), "flowvae model file", map_location)
        if not isinstance(state, dict) or state.get("format") != PARAMS_FORMAT:
            raise ValueError(f"{str(path)!r} is not a file of PyroModel.save_param_store (no "
                             f"{PARAMS_FORMAT!r} format entry)")
        if state["model"] != type(self).__name__:
            raise ValueError(f"{str(path)!r} holds a {state['model']}, not a "
                             f"{type(self).__name__}")
        try:
            self.load_state_dict(state["state_dict"])
        except RuntimeError as err:
            raise ValueError(f"{str(path)!r} does not fit this {type(self).__name__} (built "
                             f"with other arguments?): {' '.join(str(err).split())[:300]}") \
                from err
        self._release_store_entries()
        if optim is not None and state.get("optim"):
            optim.set_state({self.name + key[len(state["name"]):]
                             if key.startswith(state["name"]) else key: value
                             for key, value in state["optim"].items()})
        return len(state["state_dict"])

    def _release_store_entries(self) -> None:
        """Drop the store's entries of this model's parameters, under every module path."""
        store = pyro.get_param_store()
        for name, _ in self.named_parameters(remove_duplicate=False):
            if self.param_name(name) in store:
                del store[self.param_name(name)]

    def _copy_from_store(self) -> int:
        store, copied = pyro.get_param_store(), set()
        for name, parameter in self.named_parameters(remove_duplicate=False):
            full = self.param_name(name)
            if full in store:  # a shared module is found under whichever path it was saved
                parameter.copy_(store.get_param(full).unconstrained())
                copied.add(id(parameter))
        self._release_store_entries()  # the next step registers the module's own tensors
        buffers = [name for name, _ in self.named_buffers()]
        if buffers:
            warnings.warn(f"Pyro's param store holds no buffers: {len(buffers)} of "
                          f"{type(self).__name__} (e.g. {buffers[0]}) keep their values; use "
                          "save_param_store(path) and load_param_store(path)", stacklevel=3)
        return len(copied)
