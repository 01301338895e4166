"""Pyro's ``Trace_ELBO`` estimator with its loss kept on the device."""

from __future__ import annotations

from flowvae.infer.objectives import GeneralizedELBO

__all__ = ["DeviceTrace_ELBO"]


class DeviceTrace_ELBO(GeneralizedELBO):
    """``Trace_ELBO`` whose :meth:`differentiable_loss` never reads a value on the host: the
    plain ELBO of :class:`~flowvae.infer.GeneralizedELBO` (``kind="elbo"`` over every latent
    site), whose one loop over particles keeps the ELBO and its surrogate as tensors.

    Pyro's ``Trace_ELBO.differentiable_loss`` adds up the ELBO as Python floats
    (``.item()`` per sample site and per particle), one device synchronisation each: on a GPU
    the host waits for every site's kernel before it can queue the next step, and on the
    ``meta`` device the call fails. Here the same Rao-Blackwellised score-function terms of
    non-reparameterised guide sites are kept, and the NaN warning runs only with Pyro's
    validation on. Value and gradient equal ``Trace_ELBO``'s (to float rounding: the sum is
    accumulated in the tensors' dtype). Takes the arguments of ``Trace_ELBO``.

    Example:
        >>> import pyro, torch, pyro.distributions as dist
        >>> def model(x):
        ...     z = pyro.sample("z", dist.Normal(0.0, 1.0))
        ...     pyro.sample("x", dist.Normal(z, 1.0), obs=x)
        >>> loc = torch.tensor(0.5, requires_grad=True)
        >>> def guide(x):
        ...     pyro.sample("z", dist.Normal(loc, 1.0))
        >>> loss = DeviceTrace_ELBO().differentiable_loss(model, guide, torch.tensor(1.0))
        >>> loss.shape, loss.requires_grad
        (torch.Size([]), True)
    """

    def __init__(self, num_particles: int = 1, max_plate_nesting: float = float("inf"),
                 vectorize_particles: bool = False, **elbo_kwargs):
        super().__init__("elbo", latent_site=None, num_particles=num_particles,
                         max_plate_nesting=max_plate_nesting,
                         vectorize_particles=vectorize_particles, **elbo_kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_particles={self.num_particles})"
