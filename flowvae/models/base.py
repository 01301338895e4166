"""The base of flowvae's models: what makes a ``PyroModule`` model a complete Pyro program."""

from __future__ import annotations

import functools
import inspect
import itertools
from collections import defaultdict
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple, TypeVar

import pyro
import torch
from pyro.nn import PyroModule
from torch import Tensor

from flowvae.validation import check_int, check_nonempty, check_temperature, module_dtype

__all__ = ["PyroModel", "pyro_program", "recorded_arguments"]

_COUNTERS: Dict[str, Iterator[int]] = defaultdict(itertools.count)

F = TypeVar("F", bound=Callable)


def pyro_program(method: F) -> F:
    """Run a model's ``model`` / ``guide`` method inside its ``PyroModule`` context.

    Why: ``PyroModule`` announces a parameter to Pyro (a ``pyro.param`` site) only while one
    of its modules is being *called*. A flow sampled in the guide runs through plain method
    calls (an nflows ``inverse``), so parameters read there (e.g. a coupling's ``scale``) would
    never reach the trace: ``SVI`` would not train them and ``JitTrace_ELBO`` would find them
    as constants. Inside the context every parameter read is a ``param`` site.
    """

    @functools.wraps(method)
    def wrapper(self: PyroModule, *args, **kwargs):
        # the context PyroModule.__call__ enters; shared by every submodule of the model
        with self._pyro_context:
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


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
        if isinstance(x, Tensor):
            check_nonempty(f"{type(self).__name__}.preprocess", "x", x)
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
    ``guide`` (decorated with :func:`pyro_program`) read every parameter through Pyro, under
    names that start with the model's own ``name``.

    A subclass provides ``shape`` (the image shape ``(C, H, W)``), ``preprocess(images)``
    (``uint8`` images to the observation ``model`` and ``guide`` take), ``model(x=None,
    batch_size=None)``, ``guide(x)``, ``generate(n, temperature)`` and ``reconstruct(x)``
    (images in ``[0, 1]``), and :attr:`discrete`. Its hyper-parameters are recorded from its
    constructor's arguments (:attr:`config`), never written by hand; modules that initialise
    from data implement :class:`flowvae.nn.init.DataDependentInit`.

    Args:
        name: prefix of the model's names in Pyro's param store; ``None``: the class name and a
            counter unique in this process (``"VAE_0"``, ``"VAE_1"``, ...), so that two models
            of one class train side by side under SVI. Pass a fixed name to save and load
            through the param store (:meth:`load_param_store`).
    """

    #: the image shape ``(C, H, W)`` the model takes
    shape: Tuple[int, ...]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:  # record the bound arguments of this constructor
            cls.__init__ = _recording(cls.__dict__["__init__"])
        for method, check in (("generate", _checked_generate),
                              ("preprocess", _checked_preprocess)):
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
        if name is None:
            cls = type(self).__name__
            name = f"{cls}_{next(_COUNTERS[cls])}"
        super().__init__(name=name)

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
    def name(self) -> str:
        """The prefix of this model's parameter names in Pyro's param store."""
        return self._pyro_name

    def param_name(self, parameter_name: str) -> str:
        """The param-store name of the parameter called ``parameter_name`` in the state dict."""
        return f"{self.name}.{parameter_name}" if self.name else parameter_name

    @torch.no_grad()
    def load_param_store(self) -> int:
        """Copy this model's entries of Pyro's param store into its parameters and hand the
        store the module's own tensors again; returns the number of tensors copied.

        Call it after ``pyro.get_param_store().load(path)`` on a model built with the same
        arguments and ``name`` as the saved one. Why: a ``PyroModule`` computes with its own
        parameters; the param store only mirrors them, so a loaded store alone changes
        nothing, and SVI would then update the loaded copies instead of the module.
        """
        store = pyro.get_param_store()
        copied = 0
        for name, parameter in self.named_parameters():
            full = self.param_name(name)
            if full in store:
                parameter.copy_(store.get_param(full).unconstrained())
                del store[full]  # the next step registers the module's own tensor
                copied += 1
        return copied
