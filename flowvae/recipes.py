"""Model recipes: what ``flowvae train --model NAME`` builds, which of the command's model flags
it takes, its objective's defaults, and how it is built. The command reads these and names no
model; a new model for the command is one new entry of :data:`RECIPES`.

Declared without importing torch (the builders import the models when called), so that
``flowvae --help`` answers at once; the module sits beside :mod:`flowvae.choices` rather than
inside :mod:`flowvae.models` because importing that package loads torch. The constructor
defaults are :data:`flowvae.choices.MODEL_DEFAULTS`, the flow options'
:data:`flowvae.choices.FLOW_DEFAULTS` (one table each, checked against the constructors by
``tests/test_cli.py``).

Example:
    >>> recipe = RECIPES["vapnev"]
    >>> recipe.free_bits, recipe.likelihood, "network" in recipe.flags
    (1.0, 'flow', False)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from flowvae.choices import FLOW_DEFAULTS, MODEL_DEFAULTS

__all__ = ["MODEL_FLAGS", "RECIPES", "ModelRecipe"]

#: the command's model flags (``--latent-dim`` ...), as keyword names; the flow flags are the
#: keys of :data:`flowvae.choices.FLOW_DEFAULTS`
MODEL_FLAGS = ("latent_dim", "hidden", "likelihood", "network", "guide", "prior",
               *FLOW_DEFAULTS, "dequantization")

Shape = Tuple[int, int, int]


@dataclass(frozen=True)
class ModelRecipe:
    """How the command builds one model.

    Args:
        name: the ``--model`` value.
        summary: one line for ``--help``.
        build: ``build(options, shape, levels)``: the model for images of ``shape``
            ``(C, H, W)`` with ``levels`` grey levels (the dataset's: 2 for binarized MNIST),
            ``options`` the model flags given (keyword names of :data:`MODEL_FLAGS`, unset
            ones left out).
        flags: the model flags it takes; any other one given is refused.
        refusal: why the others do not apply (one phrase, for the error).
        likelihood: its likelihood part when fixed (``None``: the ``likelihood`` option).
        free_bits: the objective's default free bits, in nats per latent group (0: the ELBO).
        sizes_note: printed when every size flag is left at the library's default (e.g. to
            name the sizes the paper runs use).
    """

    name: str
    summary: str
    build: Callable[[Dict[str, Any], Shape, int], Any]
    flags: Tuple[str, ...] = MODEL_FLAGS
    refusal: str = ""
    likelihood: Optional[str] = None
    free_bits: float = 0.0
    sizes_note: Optional[str] = None

    @property
    def defaults(self) -> Mapping[str, Any]:
        """The constructor's defaults of its flags (:data:`flowvae.choices.MODEL_DEFAULTS`;
        none listed: the flags' help names no default)."""
        return MODEL_DEFAULTS.get(self.name, {})

    def likelihood_name(self, options: Mapping[str, Any]) -> str:
        """The registered likelihood part the model gets with ``options``."""
        return (self.likelihood or options.get("likelihood")
                or self.defaults.get("likelihood", "bernoulli"))


def _given(options: Mapping[str, Any], names: Sequence[str]) -> Dict[str, Any]:
    return {name: options[name] for name in names if options.get(name) is not None}


def _build_vae(options: Dict[str, Any], shape: Shape, levels: int):
    from flowvae.models import VAE
    from flowvae.parts import LIKELIHOODS

    likelihood = LIKELIHOODS[RECIPES["vae"].likelihood_name(options)]
    kwargs = _given(options, FLOW_DEFAULTS) if likelihood.flow_options else {}
    kwargs.update(_given(options, ("dequantization",)))
    if likelihood.takes_data_levels and levels != 256:  # 8-bit: the likelihood's default
        kwargs["data_levels"] = levels
    common = _given(options, ("latent_dim", "hidden", "guide", "prior", "likelihood",
                              "network"))
    return VAE(shape, likelihood_kwargs=kwargs or None, **common)


def _build_vapnev(options: Dict[str, Any], shape: Shape, levels: int):
    from flowvae.models import VAPNEV

    flow = _given(options, FLOW_DEFAULTS)
    return VAPNEV(shape, flow_kwargs=flow or None,
                  **_given(options, ("latent_dim", "hidden", "guide", "prior",
                                     "dequantization")))


#: the models ``flowvae train`` builds, by ``--model`` name
RECIPES: Dict[str, ModelRecipe] = {
    "vae": ModelRecipe("vae", "the generic VAE", _build_vae),
    "vapnev": ModelRecipe(
        "vapnev", "a VAE whose p(x|z) is a conditional RealNVP", _build_vapnev,
        flags=tuple(f for f in MODEL_FLAGS if f not in ("likelihood", "network")),
        refusal="vapnev has a flow likelihood and conv networks", likelihood="flow",
        free_bits=1.0,  # its latent collapses on the plain ELBO (docs/papers/vapnev.md)
        sizes_note="these are VAPNEV's library defaults (latent 64, hidden 32, flow width 64, "
                   "2 blocks); the main job examples/vapnev.py trains --latent-dim 16 "
                   "--hidden 16 --flow-channels 32 --num-blocks 1 (1.3M parameters)"),
}
