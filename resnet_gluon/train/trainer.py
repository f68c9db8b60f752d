"""A Gluon Trainer for data-parallel training with Horovod, AMP loss scaling and the reference's lr schedule.

``Trainer`` subclasses Horovod's ``DistributedTrainer``: gradients are averaged across workers with
allreduce (at size 1, without ``horovodrun``, it is a plain Gluon trainer), initial parameters are broadcast
from rank 0, and the defaults are the reference recipe (:class:`~resnet_gluon.train.recipe.Recipe`) — SGD momentum
0.9, lr 0.1 per 256 images scaled with the global batch, linear warmup over 5 epochs, x0.1 after epochs 30,
60 and 80, weight decay 1e-4, lr updated every iteration.

The Trainer owns the whole step, so a hand-written loop is as correct as ``fit``'s::

    for x, y in train:
        if x.shape[0]:                      # a worker's last batch can be empty; step() still joins in
            with autograd.record():
                loss = loss_fn(net(x), y)
            trainer.backward(loss)          # scaled by the dynamic loss scale when float16 needs it
        trainer.step(x.shape[0])            # exact mean over all workers' images, also for uneven batches

With ``Trainer(..., accumulate=k)`` the same loop accumulates: ``step()`` updates the weights on every k-th call
(and on the last batch of an epoch) and only collects the gradients of the calls in between.
"""
from __future__ import annotations

import math
import pickle
import warnings
from typing import Optional, Sequence

import mxnet as mx
from mxnet import autograd

from .._core import amp as _amp
from .._core import dist
from . import optimizers
from .recipe import PRESETS, SCHEDULES, Recipe, reference_lr

__all__ = ["Trainer", "lr_scheduler"]

_DEFAULT = Recipe()


def lr_scheduler(*, base_lr: float, steps_per_epoch: int, epochs: int = _DEFAULT.epochs,
                 schedule: str = _DEFAULT.schedule, warmup_epochs: float = _DEFAULT.warmup_epochs,
                 lr_steps: Sequence[int] = _DEFAULT.lr_steps, lr_factor: float = _DEFAULT.lr_factor,
                 final_lr: float = _DEFAULT.final_lr, poly_power: float = _DEFAULT.poly_power
                 ) -> mx.lr_scheduler.LRScheduler:
    """MXNet's scheduler for a recipe's schedule, counted in iterations.

    With ``t`` the number of updates so far (1 at the first step), ``W = warmup_epochs * steps_per_epoch`` and
    ``T`` all iterations: ``lr = base_lr * t / W`` while ``t < W``; then for 'step', ``base_lr * lr_factor ** k``
    with ``k`` the number of ``lr_steps`` epochs ``e`` with ``t > e * steps_per_epoch``; for 'cosine',
    ``final_lr + (base_lr - final_lr) * (1 + cos(pi * (t - W) / (T - W))) / 2``; for 'poly' (MLPerf's, power 2),
    ``final_lr + (base_lr - final_lr) * (1 - (t - W) / (T - W)) ** poly_power``.

    Raises
    ------
    ValueError
        For an unknown schedule.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    warmup = int(round(warmup_epochs * steps_per_epoch))
    total = max(epochs * steps_per_epoch, warmup + 1)
    warm = dict(base_lr=base_lr, warmup_steps=warmup, warmup_begin_lr=0.0, warmup_mode="linear")
    if schedule == "cosine":
        return mx.lr_scheduler.CosineScheduler(max_update=total, final_lr=final_lr, **warm)
    if schedule == "poly":
        return mx.lr_scheduler.PolyScheduler(max_update=total, final_lr=final_lr, pwr=poly_power, **warm)
    steps = [e * steps_per_epoch for e in lr_steps if 0 < e * steps_per_epoch]
    if not steps:  # MultiFactorScheduler needs at least one step: put it past the end
        steps = [max(epochs, 1) * steps_per_epoch + 1]
    steps = [s for s in steps if s > warmup] or [warmup + 1]
    return mx.lr_scheduler.MultiFactorScheduler(step=steps, factor=lr_factor, **warm)


_hvd = dist.import_horovod()


def _lr_chosen(recipe: Recipe) -> bool:
    """Whether ``recipe.lr`` replaced its preset's lr while ``batch_size`` stayed the preset's (``--recipe mlperf
    --lr 0.5``): the batch then describes the preset's lr, not this one, and a warning about it would mislead."""
    if recipe.name not in PRESETS:
        return False
    with warnings.catch_warnings():  # the preset's omitted ingredients were named when the recipe was built
        warnings.simplefilter("ignore")
        preset = Recipe.preset(recipe.name)
    return preset.batch_size == recipe.batch_size and preset.lr != recipe.lr


class Trainer(_hvd.DistributedTrainer):
    """Horovod's ``DistributedTrainer`` with AMP loss scaling, the reference recipe and the whole step protocol.

    Parameters
    ----------
    params : ParameterDict
        ``net.collect_params()``, initialised; broadcast from rank 0 on construction.
    batch_size : int
        Images per worker per batch (per :meth:`step` call).
    steps_per_epoch : int
        Batches (:meth:`step` calls) per epoch, e.g. ``len(train_data)``: where an epoch ends, for the schedule
        and the last step's exact average.
    accumulate : int
        Batches per optimizer update (gradient accumulation): the gradients of ``accumulate`` batches are summed
        on each worker, allreduced once, averaged over all their images and applied in one update. The learning
        rate is scaled for the global batch ``batch_size * workers * accumulate`` and the schedule counts updates,
        ``ceil(steps_per_epoch / accumulate)`` an epoch: an epoch whose batch count is not a multiple of
        ``accumulate`` ends with a shorter accumulation (its remaining batches, their exact mean), and the next
        epoch starts a fresh one. Default 1 (an update every batch). The Trainer sets the ``grad_req`` of every
        parameter that has gradients: 'add' with ``accumulate > 1``, else 'write'.
    recipe : Recipe, optional
        Optimiser and schedule settings; default :class:`~resnet_gluon.train.recipe.Recipe` (the reference's).
    dtype : {'float32', 'float16', 'bfloat16'}, optional
        Training precision; default the AMP dtype switched on in this process (:func:`resnet_gluon._core.amp.init`),
        else 'float32'. 'float16' turns on dynamic loss scaling and float32 master weights.
    loss_scaling : bool, optional
        Force dynamic loss scaling on/off; default on for float16 only.
    fp16_compression : bool
        Compress gradients to float16 for allreduce (Horovod's ``Compression.fp16``).
    gradient_predivide_factor : float
        Horovod's split of the averaging before/after the sum.
    **overrides
        Fields of :class:`~resnet_gluon.train.recipe.Recipe` to change (``epochs``, ``lr``, ``lr_per_256``, ``schedule``,
        ``warmup_epochs``, ``lr_steps``, ``lr_factor``, ``final_lr``, ``poly_power``, ``momentum``, ``wd``,
        ``optimizer``, ``lars_eta``, ``trust_ratio_bn_bias``, ``no_wd_bn_bias``). The optimizer is MXNet's, set up
        by :func:`resnet_gluon.train.optimizers.create` ('lars', 'lamb': BatchNorm and biases left out of the trust
        ratio). A warning says when the recipe's absolute ``lr`` was set for another global batch.

    Raises
    ------
    ValueError
        For a batch size, steps per epoch or accumulate below 1, or a bad recipe value.
    TypeError
        For an unknown recipe option.

    Examples
    --------
    Your own loop (what ``fit`` does, without validation, metrics and callbacks), two steps of one epoch:

    >>> import mxnet as mx
    >>> from mxnet import autograd, gluon
    >>> from resnet_gluon import Trainer, resnet18_v1_5
    >>> net = resnet18_v1_5(classes=4)
    >>> net.initialize()
    >>> net.hybridize()
    >>> trainer = Trainer(net.collect_params(), batch_size=4, steps_per_epoch=2, epochs=1, lr=0.01, warmup_epochs=0)
    >>> loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    >>> x, y = mx.nd.random.uniform(-1, 1, shape=(4, 3, 32, 32)), mx.nd.array([0, 1, 2, 3])
    >>> for _ in range(2):
    ...     with autograd.record():
    ...         loss = loss_fn(net(x), y)
    ...     trainer.backward(loss)  # scaled by the loss scale when float16 needs one
    ...     trainer.step(x.shape[0])  # the images of this batch (0 for an empty last batch)
    >>> trainer.global_batch_size, trainer.learning_rate, trainer.optimizer.num_update
    (4, 0.01, 2)
    """

    def __init__(self, params, *, batch_size: int, steps_per_epoch: int, recipe: Optional[Recipe] = None,
                 dtype: Optional[str] = None, loss_scaling: Optional[bool] = None, fp16_compression: bool = False,
                 gradient_predivide_factor: float = 1.0, accumulate: int = 1, **overrides):
        for name, value in (("batch_size", batch_size), ("steps_per_epoch", steps_per_epoch),
                            ("accumulate", accumulate)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        hvd = dist.horovod()
        self.recipe = (recipe or Recipe()).replace(**overrides)
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch
        self.accumulate = accumulate
        self.updates_per_epoch = math.ceil(steps_per_epoch / accumulate)
        self.workers = hvd.size()
        #: Images of one full optimizer update over all workers, what the learning rate is scaled for.
        self.global_batch_size = batch_size * self.workers * accumulate
        self.dtype = dtype or _amp.initialized_dtype() or "float32"
        self.base_lr = self.recipe.peak_lr(self.global_batch_size)
        self._steps_taken = 0  # step() calls: the position within the epoch, whatever the loss scaler skipped
        self._images = 0  # this worker's images in the current accumulation
        self._batch_warned = False
        r = self.recipe
        if r.lr is not None and r.batch_size not in (None, self.global_batch_size) and not _lr_chosen(r):
            warnings.warn(f"recipe {r.name!r} sets lr {r.lr} for a global batch of {r.batch_size} images; this run's "
                          f"is {self.global_batch_size} (set lr= / --lr to choose one for it)", stacklevel=2)
        if r.warmup_epochs > r.epochs:
            warnings.warn(f"the lr warm-up ({r.warmup_epochs:g} epochs) is longer than the run ({r.epochs} epochs): "
                          f"the lr never reaches its peak of {self.base_lr:g}; shorten it (warmup_epochs= / "
                          "--warmup-epochs)", stacklevel=2)
        optimizers.exclude_from_weight_decay(params.values(), exclude=r.no_wd_bn_bias)
        optimizer = optimizers.create(r, learning_rate=self.base_lr, lr_scheduler=self._scheduler(),
                                      multi_precision=self.dtype == "float16")
        for param in params.values():  # 'add': backward() adds to the gradients; step() zeroes them after updates
            if param.grad_req != "null":  # 'write' again for a network an earlier Trainer accumulated on
                param.grad_req = "add" if accumulate > 1 else "write"
                param.zero_grad()
        if self.workers > 1:
            hvd.broadcast_parameters(params, root_rank=0)
        super().__init__(params, optimizer, compression=hvd.Compression.fp16 if fp16_compression else
                         hvd.Compression.none, gradient_predivide_factor=gradient_predivide_factor)
        optimizers.name_parameters(self._optimizer, self._params, r)  # in the order Gluon sorted them
        self._amp_loss_scaler = None
        if loss_scaling if loss_scaling is not None else _amp.DTYPE_TABLE[self.dtype].loss_scaling:
            _amp.enable_loss_scaling(self)

    def _scheduler(self) -> mx.lr_scheduler.LRScheduler:
        r = self.recipe
        return lr_scheduler(base_lr=self.base_lr, steps_per_epoch=self.updates_per_epoch, epochs=r.epochs,
                            schedule=r.schedule, warmup_epochs=r.warmup_epochs, lr_steps=r.lr_steps,
                            lr_factor=r.lr_factor, final_lr=r.final_lr, poly_power=r.poly_power)

    # ------------------------------------------------------------------------------------------ the step
    def backward(self, loss: mx.nd.NDArray) -> None:
        """Back-propagate ``loss`` (per-sample losses, summed), multiplied by the loss scale when loss scaling is
        on; :meth:`step` divides the scale out again. Call it after the ``autograd.record()`` block."""
        if self._amp_loss_scaler is None:
            autograd.backward(loss)
            return
        with autograd.record():
            with _amp.scale_loss(loss, self) as scaled:
                pass
        autograd.backward(scaled)

    def _zero_gradients(self, *, fresh: bool) -> None:
        """Zero every gradient. ``fresh``: mark them as this step's (a worker that saw no image contributes zero
        gradients to the allreduce); otherwise an accumulation starts afresh."""
        for param in self._params:
            if param.grad_req != "null":
                param.zero_grad()
                if fresh:
                    for data in param.list_data():  # MXNet keeps the "fresh gradient" mark on the weight array
                        data._fresh_grad = True  # pylint: disable=protected-access

    def step(self, batch_size: int, ignore_stale_grad: bool = False, *, global_batch_size: Optional[int] = None):
        """End a batch; on every ``accumulate``-th call and on an epoch's last batch, allreduce the gradients once
        and update: the exact mean over every worker's images of the accumulation.

        Parameters
        ----------
        batch_size : int
            Images this worker processed in the batch; 0 for an empty batch (a shard that ran out first), for
            which zero gradients join the allreduce so that every worker stays in step.
        ignore_stale_grad : bool
            As for ``gluon.Trainer.step``.
        global_batch_size : int, optional
            Images all workers processed in the update (with ``accumulate > 1``: in all its batches; read on the
            call that updates). Default: this worker's images times the workers, except on the last update of an
            epoch (by ``steps_per_epoch``), where batches may differ and the count is summed over workers.

        Raises
        ------
        ValueError
            When an epoch is a single update holding fewer images than :attr:`global_batch_size`, the batch the
            learning rate is scaled for (a batch larger than a worker's share of the training set).

        Warns
        -----
        UserWarning
            Once per Trainer, when an update other than an epoch's last (partial) one averages another number of
            images than :attr:`global_batch_size`.
        """
        position = self._steps_taken % self.steps_per_epoch
        self._steps_taken += 1
        self._images += batch_size
        last_of_epoch = position == self.steps_per_epoch - 1
        if not last_of_epoch and (position + 1) % self.accumulate:
            return  # inside an accumulation: backward() keeps adding to the gradients
        images, self._images = self._images, 0
        if images == 0:
            self._zero_gradients(fresh=True)
        if global_batch_size is None:
            if self.workers > 1 and last_of_epoch:
                global_batch_size = int(dist.allreduce_sum([images])[0])
            else:
                global_batch_size = images * self.workers
        self._check_batch(global_batch_size, last_of_epoch)
        # Horovod averages over workers; Gluon's Trainer then divides by the batch_size it is given.
        super().step(max(global_batch_size, 1) / self.workers, ignore_stale_grad=ignore_stale_grad)
        if self.accumulate > 1:
            self._zero_gradients(fresh=False)

    def _check_batch(self, images: int, last_of_epoch: bool) -> None:
        """Refuse an epoch smaller than one update's global batch; say once when an update's global batch
        differs from the one the learning rate is scaled for, other than an epoch's last, partial one
        (issue #22 item 10: a batch larger than the data set trained with an lr for 100,000 images per step)."""
        expected = self.global_batch_size
        if images == expected or (last_of_epoch and self.updates_per_epoch > 1 and images < expected):
            return
        sizes = f"batch_size {self.batch_size} x {self.workers} worker(s) x accumulate {self.accumulate}"
        if last_of_epoch and self.updates_per_epoch == 1 and images < expected:
            raise ValueError(
                f"an epoch holds {images} training images, fewer than the global batch of {expected} ({sizes}) "
                f"that the learning rate is scaled for; use a batch size of at most "
                f"{max(1, images // (self.workers * self.accumulate))} images per worker (-b), or fewer workers or "
                "a smaller accumulate")
        if not self._batch_warned:
            self._batch_warned = True
            epoch, batch = divmod(self._steps_taken - 1, self.steps_per_epoch)
            warnings.warn(f"the update after batch {batch + 1} of epoch {epoch + 1} averaged {images} images over "
                          f"all workers, but the learning rate is scaled for {expected} ({sizes}); only an "
                          "epoch's last batch may be smaller (said once per Trainer)", stacklevel=3)

    # ------------------------------------------------------------------------------------------ state
    @property
    def loss_scale(self) -> float:
        """Current dynamic loss scale (1.0 without loss scaling)."""
        return _amp.loss_scale(self)

    @property
    def num_update(self) -> int:
        """Updates applied so far (the schedule's position)."""
        return self._optimizer.num_update

    def _ensure_updaters(self) -> None:
        if not self._kv_initialized:
            self._init_kvstore()
        if self._params_to_init:
            self._init_params()

    def _state(self) -> dict:
        """Momentum and other per-parameter optimizer states, the update count and the loss scale."""
        self._ensure_updaters()
        return dict(format="resnet_gluon.train.trainer/1", updater=self._updaters[0].get_states(dump_optimizer=False),
                    num_update=self.num_update,
                    loss_scale=self.loss_scale if self._amp_loss_scaler is not None else None)

    def _restore(self, state: dict, position: Optional[int]) -> None:
        # Per-parameter states only: the optimizer object (settings, lr schedule) stays this trainer's own.
        optimizer = self._optimizer
        for updater in self._updaters:
            updater.set_states(state["updater"])
            updater.optimizer = optimizer
        position = state.get("num_update") if position is None else position
        if position is not None:
            self.set_position(position)
        if state.get("loss_scale") is not None and self._amp_loss_scaler is not None:
            scaler = self._amp_loss_scaler
            scaler._loss_scale = scaler._next_loss_scale = state["loss_scale"]  # pylint: disable=protected-access

    def save_states(self, fname: str) -> None:
        """Write the optimizer state (momentum), the update count and the loss scale to ``fname``, atomically."""
        from .._core.files import atomic_path

        with atomic_path(fname) as tmp:
            with open(tmp, "wb") as f:
                pickle.dump(self._state(), f)

    def load_states(self, fname: str, *, epoch: Optional[int] = None) -> None:
        """Restore what :meth:`save_states` wrote (or a plain Gluon ``Trainer.save_states`` file).

        The optimizer's settings and lr schedule stay this trainer's own (its recipe), so a resumed run with
        other epochs, lr, batch size or accumulate follows the new schedule. With ``epoch`` (epochs completed),
        the schedule position is set to ``epoch * updates_per_epoch``, the start of the next epoch under this
        trainer's settings; otherwise the saved update count is kept.
        """
        self._ensure_updaters()
        with open(fname, "rb") as f:
            raw = f.read()
        state = pickle.loads(raw)
        if not (isinstance(state, dict) and state.get("format") == "resnet_gluon.train.trainer/1"):
            legacy = state[1] if isinstance(state, tuple) and len(state) == 2 else None  # Gluon's (states, optimizer)
            state = dict(updater=raw, num_update=getattr(legacy, "num_update", None), loss_scale=None)
        self._restore(state, epoch * self.updates_per_epoch if epoch is not None else None)

    def set_batch_position(self, epoch: int, step: int) -> None:
        """Count the batches as at batch ``step`` of epoch ``epoch`` (0-based), at an update boundary, keeping the
        schedule position: a run resumed mid-epoch then ends the epoch, and groups accumulations, where the
        uninterrupted run did (the update count alone can lag behind when float16 loss scaling skipped updates)."""
        self._steps_taken = int(epoch) * self.steps_per_epoch + int(step)
        self._images = 0

    @property
    def at_update(self) -> bool:
        """Whether the last :meth:`step` ended an update: no gradients are being accumulated (always with
        ``accumulate=1``). ``fit`` stops on request only there."""
        position = self._steps_taken % self.steps_per_epoch
        return position == 0 or position % self.accumulate == 0

    def set_position(self, num_update: int) -> None:
        """Put the schedule at ``num_update`` updates done (the next step uses the lr of update ``num_update + 1``)
        and the batch count at the start of the next update; an accumulation under way is dropped."""
        opt = self._optimizer
        opt.num_update = opt.begin_num_update = int(num_update)
        opt._index_update_count = {i: int(num_update) for i in opt._index_update_count}  # pylint: disable=protected-access
        epochs, updates = divmod(int(num_update), self.updates_per_epoch)
        self._steps_taken = epochs * self.steps_per_epoch + updates * self.accumulate
        self._images = 0
        if self.accumulate > 1:
            self._zero_gradients(fresh=False)

    def broadcast_states(self, root_rank: int = 0) -> None:
        """Copy the parameters and the trainer state (momentum, position, loss scale) from ``root_rank`` to every
        worker, so that workers that cannot read the checkpoint files resume identically."""
        if self.workers == 1:
            return
        dist.horovod().broadcast_parameters({p.name: p for p in self._params}, root_rank=root_rank)
        self._restore(dist.broadcast_object(self._state(), root_rank=root_rank), None)
