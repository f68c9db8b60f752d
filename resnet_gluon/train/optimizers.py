"""The optimizer of a :class:`~resnet_gluon.train.recipe.Recipe`: MXNet's own, set up as the recipes state.

What MXNet 1.9.1's large-batch optimizers do under Gluon, and what is done about it here:

- ``mx.optimizer.LARS`` (You et al., 2017, arXiv:1708.03888) scales each parameter's lr by
  ``eta * |w| / (|g| + wd * |w| + eps)``, except for parameters whose *name* ends with ``gamma``, ``beta`` or
  ``bias`` (BatchNorm and biases, as MLPerf's LARS). It learns the names from ``param_idx2name``, which Gluon's
  ``Trainer`` (and Horovod's ``DistributedTrainer``, a subclass) never passes, so under Gluon it adapts every
  parameter. :func:`name_parameters` gives it the names. Its default momentum correction (momentum x
  ``lr_t / lr_(t-1)``, Goyal et al., 2017) is worked out again on every call, and the updater calls it for 4
  parameters at a time (``MXNET_OPTIMIZER_AGGREGATION_SIZE``), so only the first 4 parameters of a step would
  see the lr change: it is turned off, leaving You et al.'s Algorithm 1.
- ``mx.optimizer.LAMB`` (You et al., 2019, arXiv:1904.00962) applies the trust ratio ``|w| / |u|`` to every
  parameter and has no way to leave some out. :class:`LAMB` is MXNet's LAMB that leaves BatchNorm parameters and
  biases out (timm's ``Lamb`` does so for parameters without weight decay, which are those in "ResNet strikes
  back"), computing their update with MXNet's own LAMB kernels. MXNet's unaggregated float16 path
  (``mp_lamb_update_phase2``) never writes the float32 master copy back; :class:`LAMB` does not use it.
- Weight decay: with Gluon, a ``Parameter``'s ``wd_mult`` decides (the optimizer's own rules by name are
  overridden), which :func:`exclude_from_weight_decay` sets.
- Horovod: ``DistributedTrainer`` allreduces the gradients before the update and folds the averaging into
  ``rescale_grad``, which both optimizers apply before taking norms; every worker computes the trust ratios of
  the global gradient and makes the same update. Nothing else is needed.
"""
from __future__ import annotations

import weakref
from typing import Iterable, Optional

import mxnet as mx

from .recipe import Recipe

__all__ = ["LAMB", "create", "name_parameters", "exclude_from_weight_decay", "is_bn_or_bias"]

#: Name endings of BatchNorm parameters and biases: MXNet's LARS uses the same rule.
_BN_BIAS = ("gamma", "beta", "bias")
#: A parameter's own ``wd_mult`` while :func:`exclude_from_weight_decay` has set it to 0.
_WD_MULT_BEFORE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def is_bn_or_bias(name: str) -> bool:
    """Whether a parameter named ``name`` is a BatchNorm ``gamma``/``beta`` or a bias (by its name's ending)."""
    return name.endswith(_BN_BIAS)


class LAMB(mx.optimizer.LAMB):
    """MXNet's LAMB, except that BatchNorm parameters and biases (by name) get no trust ratio: for them
    ``w -= lr * u`` with ``u = m_hat / (sqrt(v_hat) + eps) + wd * w`` as LAMB's phase 1 computes it.

    The names come from ``idx2name`` (:func:`name_parameters`); without names every parameter is adapted, as in
    ``mx.optimizer.LAMB``. Takes the arguments of ``mx.optimizer.LAMB``.

    Parameters are updated one by one with MXNet's two LAMB phases, except the adapted ones when updates are
    aggregated (the default), which go to MXNet's ``multi_lamb_update``. With float16 weights and float32 master
    copies (``multi_precision``) the second phase runs in float32 on the master copy: MXNet 1.9.1's
    ``mp_lamb_update_phase2`` leaves the master copy as it was, so its own unaggregated path does not train.
    """

    def _update_impl(self, index, weight, grad, state, multi_precision=False):
        if not isinstance(index, (tuple, list)):
            index, weight, grad, state = [index], [weight], [grad], [state]
        adapt = [not is_bn_or_bias(self.idx2name.get(i, "")) for i in index]
        aggregated = [k for k, a in enumerate(adapt) if a and self.aggregate_num > 1]
        if aggregated:
            super()._update_impl(*([xs[k] for k in aggregated] for xs in (index, weight, grad, state)),
                                 multi_precision=multi_precision)
        for k, a in enumerate(adapt):
            if k not in aggregated:
                self._update_one(index[k], weight[k], grad[k], state[k], multi_precision, adapt=a)

    def _update_one(self, index, weight, grad, state, multi_precision, *, adapt):
        self._update_count(index)
        kwargs = dict(beta1=self.beta1, beta2=self.beta2, epsilon=self.epsilon, bias_correction=self.bias_correction,
                      rescale_grad=self.rescale_grad, t=self._index_update_count[index], wd=self._get_wd(index))
        if self.clip_gradient:
            kwargs["clip_gradient"] = self.clip_gradient
        if multi_precision:
            master, (mean, var) = state
            update = mx.nd.mp_lamb_update_phase1(weight, grad, mean, var, master, **kwargs)
        else:
            master, (mean, var) = weight, state
            update = mx.nd.lamb_update_phase1(weight, grad, mean, var, **kwargs)
        bounds = {k: v for k, v in (("lower_bound", self.lower_bound), ("upper_bound", self.upper_bound)) if v}
        if adapt:
            norms = (master.norm(), update.norm())
        else:  # phase 2 applies ratio 1 where a norm is 0: w -= lr * u
            norms, bounds = (mx.nd.zeros((1,), ctx=weight.context),) * 2, {}
        mx.nd.lamb_update_phase2(master, update, *norms, lr=self._get_lr(index), out=master, **bounds)
        if multi_precision:
            master.astype(weight.dtype).copyto(weight)


def create(recipe: Recipe, *, learning_rate: float, lr_scheduler: Optional[mx.lr_scheduler.LRScheduler] = None,
           multi_precision: bool = False) -> mx.optimizer.Optimizer:
    """The MXNet optimizer of ``recipe`` (``optimizer``, ``wd``, ``momentum``, ``lars_eta``,
    ``trust_ratio_bn_bias``), for a Gluon ``Trainer``; call :func:`name_parameters` once the trainer exists.

    'sgd', 'nag' and 'lars' get ``recipe.momentum``; 'lars' gets ``eta=recipe.lars_eta``, ``eps=0`` and no momentum
    correction; 'lamb' is :class:`LAMB` (MXNet's defaults: betas 0.9/0.999, eps 1e-6, bias correction), or
    ``mx.optimizer.LAMB`` itself with ``trust_ratio_bn_bias``. Other names go to ``mx.optimizer.create`` as they are.

    Raises
    ------
    ValueError
        For a name MXNet does not know.
    """
    options = dict(learning_rate=learning_rate, wd=recipe.wd, lr_scheduler=lr_scheduler)
    if multi_precision:
        options["multi_precision"] = True
    name = recipe.optimizer.lower()
    if name in ("sgd", "nag", "lars"):
        options["momentum"] = recipe.momentum
    if name == "lars":
        options.update(eta=recipe.lars_eta, eps=0.0, momentum_correction=False)
    if name == "lamb" and not recipe.trust_ratio_bn_bias:
        return LAMB(**options)
    if name not in mx.optimizer.Optimizer.opt_registry:
        known = ", ".join(sorted(mx.optimizer.Optimizer.opt_registry))
        raise ValueError(f"unknown optimizer {recipe.optimizer!r}; MXNet knows: {known}")
    return mx.optimizer.create(name, **options)


def name_parameters(optimizer: mx.optimizer.Optimizer, params: Iterable, recipe: Recipe) -> None:
    """Tell ``optimizer`` the names of ``params`` (a Gluon trainer's ``_params``, in its order), so that LARS and
    :class:`LAMB` leave BatchNorm parameters and biases out of the trust ratio; nothing with
    ``recipe.trust_ratio_bn_bias`` or for other optimizers."""
    if recipe.trust_ratio_bn_bias or not isinstance(optimizer, (mx.optimizer.LARS, LAMB)):
        return
    optimizer.idx2name = {i: param.name for i, param in enumerate(params)}


def exclude_from_weight_decay(params: Iterable, *, exclude: bool = True) -> None:
    """Set ``wd_mult = 0`` on the BatchNorm parameters and biases among ``params`` (Gluon ``Parameter``\\ s), or,
    with ``exclude=False``, give them back the ``wd_mult`` they had before an earlier exclusion.

    A ``Parameter`` keeps its ``wd_mult``: without the undo, a network trained once with ``no_wd_bn_bias`` would
    still leave its biases without weight decay under a later Trainer whose recipe decays them (fine-tuning in the
    same process). The :class:`~resnet_gluon.train.trainer.Trainer` calls this with its recipe's ``no_wd_bn_bias``.
    """
    for param in params:
        if not is_bn_or_bias(param.name):
            continue
        if exclude:
            _WD_MULT_BEFORE.setdefault(param, param.wd_mult)
            param.wd_mult = 0.0
        elif param in _WD_MULT_BEFORE:
            param.wd_mult = _WD_MULT_BEFORE.pop(param)
