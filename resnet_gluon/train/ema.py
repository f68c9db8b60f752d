"""An exponential moving average (EMA) of a network's weights, kept on the device, with timm's warm-up.

The rule is timm's ``ModelEmaV3`` (huggingface/pytorch-image-models, ``timm/utils/model_ema.py``, with its
defaults ``update_after_step=0``, ``min_decay=0``, ``warmup_gamma=1``, ``warmup_power=2/3``), called as timm's
``train.py`` calls it, once per optimizer update with ``step`` = the updates done so far. At the ``t``-th update
(``t`` = 1, 2, ...), with ``w_t`` the weights after it and ``s = t - 1``::

    d_t = 0                                          for s = 0 (the first update copies the weights)
    d_t = min(decay, 1 - (1 + s) ** (-2/3))          for s > 0, with warmup
    d_t = decay                                      for s > 0, without warmup
    e_t = d_t * e_(t-1) + (1 - d_t) * w_t

Every float parameter is averaged, BatchNorm's running mean and variance included (timm's default,
``exclude_buffers=False``); other dtypes are copied. The averages are float32 arrays beside the weights, on their
device, updated in place with one fused ``mx.nd`` operation per parameter and no copy to the host. With mixed precision
they follow the float32 master weights: MXNet's AMP keeps the parameters themselves in float32, and a network cast
to float16 and trained with ``multi_precision`` is averaged from the optimizer's float32 master copy.

Under Horovod every worker holds the same weights after each update (the gradients are allreduced before it), so
each worker averages its own copy, without communication; only a resumed run broadcasts rank 0's averages. (BatchNorm's
running statistics are per worker, as in the reference, and so are their averages; checkpoints hold rank 0's.)

``fit`` keeps one when ``Recipe.ema_decay > 0``; in a loop of your own::

    ema = EMA(net.collect_params(), decay=0.9998, trainer=trainer)
    ...
    trainer.step(n)
    if trainer.at_update:       # with gradient accumulation: once per update, not per batch
        ema.update()
    with ema.applied():         # the averages in the network's parameters; the raw weights back afterwards
        evaluate(net, val)
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator, Optional

import mxnet as mx
import numpy as np

from .._core import dist
from .._core.files import atomic_path

__all__ = ["EMA", "WARMUP_GAMMA", "WARMUP_POWER"]

#: timm ``ModelEmaV3`` warm-up constants (its defaults).
WARMUP_GAMMA = 1.0
WARMUP_POWER = 2.0 / 3.0


class EMA:
    """Exponential moving average of parameters, on their device, in float32 (see the module docstring).

    Parameters
    ----------
    params : ParameterDict or dict of Parameter
        ``net.collect_params()``; the averages start from their values when first needed (parameters whose shape
        is inferred at the first forward pass may still be uninitialised here). One device per parameter is
        averaged (Horovod's one per worker).
    decay : float
        Per-update decay, in (0, 1), e.g. 0.9998.
    warmup : bool
        timm's warm-up, ``d_t = min(decay, 1 - t ** (-2/3))`` at the ``t``-th update (see the module docstring): a
        short memory early in training (0.9 after 32 updates, 0.99 after 1,000), ``decay`` later.
    trainer : gluon.Trainer, optional
        Where float32 master copies of float16 parameters live (``multi_precision``); not needed for float32
        parameters (AMP included).

    Raises
    ------
    ValueError
        A decay outside (0, 1); an uninitialised parameter when the averages are first needed.

    Examples
    --------
    >>> import mxnet as mx
    >>> from resnet_gluon import EMA
    >>> dense = mx.gluon.nn.Dense(2, in_units=3)
    >>> dense.initialize(mx.init.Constant(1.0))
    >>> ema = EMA(dense.collect_params(), decay=0.5)
    >>> ema.update()  # the first update copies the weights (timm's rule): 1.0
    >>> dense.weight.set_data(mx.nd.full((2, 3), 3.0))  # an optimizer update
    >>> ema.update()  # 0.5 * 1.0 + 0.5 * 3.0
    >>> with ema.applied():  # e.g. for validation
    ...     print(dense.weight.data()[0, 0].asscalar())
    2.0
    >>> print(dense.weight.data()[0, 0].asscalar())  # the raw weights are back
    3.0
    """

    def __init__(self, params, *, decay: float, warmup: bool = False, trainer: Optional[mx.gluon.Trainer] = None):
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}; e.g. 0.9998 (0 in a Recipe: no EMA)")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        self._params = dict(params.items())
        self._trainer = trainer
        self._averages: Optional[Dict[str, mx.nd.NDArray]] = None

    @property
    def averages(self) -> Dict[str, mx.nd.NDArray]:
        """The float32 averages by parameter name, on the parameters' device; the weights themselves before any
        update.

        Raises
        ------
        ValueError
            When the parameters are not initialised yet (their shapes unknown).
        """
        if self._averages is None:
            try:
                self._averages = {name: self._source(p).astype("float32", copy=True)
                                  for name, p in self._params.items()}
            except RuntimeError as err:
                raise ValueError(f"EMA needs initialised parameters ({str(err).splitlines()[0]}); call "
                                 "net.initialize() and run one batch first") from None
        return self._averages

    def decay_at(self, step: int) -> float:
        """The decay ``d_t`` of update ``step`` (1-based), timm ``ModelEmaV3.get_decay(step)``."""
        s = max(0, int(step) - 1)
        if s == 0:
            return 0.0
        if self.warmup:
            return min(self.decay, 1.0 - (1.0 + s / WARMUP_GAMMA) ** -WARMUP_POWER)
        return self.decay

    def update(self) -> None:
        """Average in the current weights: one call per optimizer update."""
        self.num_updates += 1
        d = self.decay_at(self.num_updates)
        for name, avg in self.averages.items():
            w = self._source(self._params[name])
            if not np.issubdtype(w.dtype, np.floating):
                avg[:] = w
                continue
            # e = d * e + (1 - d) * w in one fused, in-place operation: SGD's ``e - lr * (rescale_grad * w + wd * e)``
            # with lr = 1 - d, wd = 1, rescale_grad = -1 (ResNet-50 on 2 CPU cores: 90-110 ms an update, against
            # 130-170 ms for three in-place element-wise operations)
            mx.nd.sgd_update(avg, w, lr=1.0 - d, wd=1.0, rescale_grad=-1.0, out=avg)

    def _source(self, param) -> mx.nd.NDArray:
        """The float32 weights of ``param``: the array itself, or the optimizer's master copy of a float16 one."""
        data = param.list_data()[0]
        if data.dtype == np.float32:
            return data
        master = _master_copy(self._trainer, param)
        return master if master is not None else data.astype("float32")

    def reset(self, num_updates: int = 0) -> None:
        """Set the averages to the current weights, counted as ``num_updates`` updates: 0 starts over; a resume
        loads the saved averages into the network, calls this, then loads the raw weights."""
        self.num_updates = int(num_updates)
        for name, avg in self.averages.items():
            avg[:] = self._source(self._params[name])

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Within the block the parameters hold the averages; afterwards their own values again (a copy on the
        device is kept meanwhile), also when the block raises."""
        raw = {name: p.list_data()[0].copy() for name, p in self._params.items()}
        try:
            for name, p in self._params.items():
                p.set_data(self.averages[name].astype(p.dtype, copy=False))
            yield
        finally:
            for name, p in self._params.items():
                p.set_data(raw[name])

    def record(self) -> Dict:
        """What a checkpoint record says: ``decay``, ``warmup`` (with timm's gamma and power), ``num_updates``."""
        return dict(decay=self.decay, warmup=self.warmup, warmup_gamma=WARMUP_GAMMA, warmup_power=WARMUP_POWER,
                    num_updates=self.num_updates)

    def save(self, path: str, names: Dict[str, str]) -> None:
        """Write the averages atomically as an MXNet ``.params`` file, each under ``names[parameter name]`` (the
        keys of the checkpoint's own ``.params``, so the file loads wherever that one does)."""
        with atomic_path(path) as tmp:
            mx.nd.save(tmp, {names[name]: avg for name, avg in self.averages.items()})

    def broadcast(self, root_rank: int = 0) -> None:
        """Give every worker ``root_rank``'s averages and update count (after a resume that rank read)."""
        if dist.size() == 1:
            return
        dist.horovod().broadcast_parameters(self.averages, root_rank=root_rank, prefix="resnet_gluon_ema")
        self.num_updates = dist.broadcast_object(self.num_updates, root_rank=root_rank, name="resnet_gluon_ema_n")


def _master_copy(trainer, param) -> Optional[mx.nd.NDArray]:
    """The float32 master copy that a ``multi_precision`` optimizer keeps of a float16 ``param``, if any. MXNet 1.9's
    ``Optimizer.create_state_multi_precision`` returns ``(master copy, state)``; the optimizers that override it
    (SGD, NAG, LARS) return ``(state, master copy)``."""
    if trainer is None or not getattr(trainer, "_updaters", None):
        return None
    optimizer = trainer._optimizer  # pylint: disable=protected-access
    if not getattr(optimizer, "multi_precision", False):
        return None
    state = trainer._updaters[0].states.get(trainer._param2idx.get(param.name))  # pylint: disable=protected-access
    own = type(optimizer).create_state_multi_precision is not mx.optimizer.Optimizer.create_state_multi_precision
    master = state[-1 if own else 0] if isinstance(state, (tuple, list)) and len(state) == 2 else None
    if isinstance(master, mx.nd.NDArray) and master.dtype == np.float32 and master.shape == param.shape:
        return master
    return None
