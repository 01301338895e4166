"""Pyro's ``Trace_ELBO`` estimator with its loss kept on the device."""

from __future__ import annotations

from pyro.distributions import is_validation_enabled
from pyro.distributions.util import is_identically_zero
from pyro.infer import Trace_ELBO
from pyro.infer.trace_elbo import _compute_log_r
from pyro.util import warn_if_nan
from torch import Tensor


class DeviceTrace_ELBO(Trace_ELBO):
    """``Trace_ELBO`` whose :meth:`differentiable_loss` never reads a value on the host.

    Pyro's ``Trace_ELBO.differentiable_loss`` adds up the ELBO as Python floats
    (``.item()`` per sample site and per particle), one device synchronisation each: on a GPU
    the host waits for every site's kernel before it can queue the next step, and on the
    ``meta`` device the call fails. Here the ELBO and its surrogate (the same Rao-Blackwellised
    score-function terms for non-reparameterised guide sites) stay tensors, and the NaN warning
    runs only with Pyro's validation on. Value and gradient equal ``Trace_ELBO``'s (to
    float rounding: the sum is accumulated in the tensors' dtype).

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

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        log_p = model_trace.log_prob_sum()
        log_q = guide_trace.log_prob_sum()
        surrogate = log_p
        log_r = None
        for site in guide_trace.nodes.values():
            if site["type"] != "sample":
                continue
            _, score_function, entropy = site["score_parts"]
            if not is_identically_zero(entropy):
                surrogate = surrogate - entropy.sum()
            if not is_identically_zero(score_function):
                if log_r is None:
                    log_r = _compute_log_r(model_trace, guide_trace)
                weight = log_r.sum_to(site["cond_indep_stack"])
                surrogate = surrogate + (weight * score_function).sum()
        return -(log_p - log_q), -surrogate

    def differentiable_loss(self, model, guide, *args, **kwargs) -> Tensor:
        loss, surrogate = 0.0, 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            particle_loss, particle_surrogate = self._differentiable_loss_particle(
                model_trace, guide_trace)
            loss = loss + particle_loss / self.num_particles
            surrogate = surrogate + particle_surrogate / self.num_particles
        if is_validation_enabled():
            warn_if_nan(surrogate, "loss")
        # the ELBO's value with the surrogate's gradient
        return loss.detach() + (surrogate - surrogate.detach())
