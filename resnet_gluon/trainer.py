"""A Gluon Trainer for data-parallel training with Horovod, AMP loss scaling and the reference's lr schedule.

``Trainer`` subclasses Horovod's ``DistributedTrainer``: gradients are averaged across workers with
allreduce (at size 1, without ``horovodrun``, it is a plain Gluon trainer), initial parameters are broadcast
from rank 0, and the defaults are the reference recipe — SGD momentum 0.9, lr 0.1 per 256 images scaled
with the global batch, linear warmup over 5 epochs, x0.1 after epochs 30, 60 and 80, weight decay 1e-4,
lr updated every iteration.
"""
from __future__ import annotations

from typing import Optional, Sequence

import mxnet as mx

from . import amp as _amp
from . import dist

__all__ = ["Trainer", "reference_lr", "lr_scheduler"]

SCHEDULES = ("step", "cosine")


def reference_lr(global_batch_size: int, *, lr_per_256: float = 0.1) -> float:
    """The linear scaling rule: ``lr_per_256 * global_batch_size / 256``."""
    return lr_per_256 * global_batch_size / 256


def lr_scheduler(*, base_lr: float, steps_per_epoch: int, epochs: int = 90, schedule: str = "step",
                 warmup_epochs: float = 5, lr_steps: Sequence[int] = (30, 60, 80), lr_factor: float = 0.1,
                 final_lr: float = 0.0) -> mx.lr_scheduler.LRScheduler:
    """MXNet's scheduler for the reference schedule, counted in iterations.

    With ``t`` the number of updates so far (1 at the first step), ``W = warmup_epochs * steps_per_epoch``:
    ``lr = base_lr * t / W`` while ``t < W``; then for 'step', ``base_lr * lr_factor ** k`` with ``k`` the
    number of ``lr_steps`` epochs ``e`` with ``t > e * steps_per_epoch``; for 'cosine',
    ``final_lr + (base_lr - final_lr) * (1 + cos(pi * (t - W) / (T - W))) / 2`` with ``T`` all iterations.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    warmup = int(round(warmup_epochs * steps_per_epoch))
    if schedule == "cosine":
        return mx.lr_scheduler.CosineScheduler(max_update=max(epochs * steps_per_epoch, warmup + 1), base_lr=base_lr,
                                               final_lr=final_lr, warmup_steps=warmup, warmup_begin_lr=0.0,
                                               warmup_mode="linear")
    steps = [e * steps_per_epoch for e in lr_steps if 0 < e * steps_per_epoch]
    if not steps:  # MultiFactorScheduler needs at least one step: put it past the end
        steps = [max(epochs, 1) * steps_per_epoch + 1]
    steps = [s for s in steps if s > warmup] or [warmup + 1]
    return mx.lr_scheduler.MultiFactorScheduler(step=steps, factor=lr_factor, base_lr=base_lr, warmup_steps=warmup,
                                                warmup_begin_lr=0.0, warmup_mode="linear")


_hvd = dist.import_horovod()


class Trainer(_hvd.DistributedTrainer):
    """Horovod's ``DistributedTrainer`` with AMP loss scaling and the reference recipe as defaults.

    Parameters
    ----------
    params : ParameterDict
        ``net.collect_params()``, initialised; broadcast from rank 0 on construction.
    batch_size : int
        Images per worker per step.
    steps_per_epoch : int
        Iterations per epoch (for the schedule).
    epochs : int
        Training length (for the schedule's end).
    lr : float, optional
        Peak learning rate; default ``lr_per_256 * batch_size * workers / 256``.
    lr_per_256 : float
        The reference's 0.1 (its later releases: 0.256).
    momentum, wd : float
        SGD momentum and weight decay.
    schedule : {'step', 'cosine'}
        Step decay at ``lr_steps`` (the reference) or cosine decay (its later releases).
    warmup_epochs : float
        Linear warmup length.
    lr_steps : sequence of int
        Epochs after which the step schedule multiplies the lr by ``lr_factor``.
    lr_factor : float
        Step schedule factor.
    no_wd_bn_bias : bool
        No weight decay on BatchNorm parameters and biases.
    dtype : {'float32', 'float16', 'bfloat16'}
        Training precision; 'float16' turns on dynamic loss scaling.
    loss_scaling : bool, optional
        Force dynamic loss scaling on/off; default on for float16 only.
    fp16_compression : bool
        Compress gradients to float16 for allreduce (Horovod's ``Compression.fp16``).
    gradient_predivide_factor : float
        Horovod's split of the averaging before/after the sum.
    optimizer : str
        MXNet optimizer name ('sgd', 'nag', ...).
    """

    def __init__(self, params, *, batch_size: int, steps_per_epoch: int, epochs: int = 90,
                 lr: Optional[float] = None, lr_per_256: float = 0.1, momentum: float = 0.9, wd: float = 1e-4,
                 schedule: str = "step", warmup_epochs: float = 5, lr_steps: Sequence[int] = (30, 60, 80),
                 lr_factor: float = 0.1, no_wd_bn_bias: bool = False, dtype: str = "float32",
                 loss_scaling: Optional[bool] = None, fp16_compression: bool = False,
                 gradient_predivide_factor: float = 1.0, optimizer: str = "sgd"):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        hvd = dist.horovod()
        self.batch_size = batch_size
        self.workers = hvd.size()
        self.base_lr = reference_lr(batch_size * self.workers, lr_per_256=lr_per_256) if lr is None else lr
        scheduler = lr_scheduler(base_lr=self.base_lr, steps_per_epoch=steps_per_epoch, epochs=epochs,
                                 schedule=schedule, warmup_epochs=warmup_epochs, lr_steps=lr_steps,
                                 lr_factor=lr_factor)
        if no_wd_bn_bias:
            for name, param in params.items():
                if name.endswith(("gamma", "beta", "bias")):
                    param.wd_mult = 0.0
        optimizer_params = dict(learning_rate=self.base_lr, wd=wd, lr_scheduler=scheduler)
        if optimizer in ("sgd", "nag"):
            optimizer_params["momentum"] = momentum
        if dtype == "float16":
            optimizer_params["multi_precision"] = True
        if self.workers > 1:
            hvd.broadcast_parameters(params, root_rank=0)
        super().__init__(params, optimizer, optimizer_params,
                         compression=hvd.Compression.fp16 if fp16_compression else hvd.Compression.none,
                         gradient_predivide_factor=gradient_predivide_factor)
        if loss_scaling if loss_scaling is not None else dtype == "float16":
            _amp.enable_loss_scaling(self)

    def step(self, batch_size: int, ignore_stale_grad: bool = False, *, global_batch_size: Optional[int] = None):
        """Allreduce the gradients and update.

        Parameters
        ----------
        batch_size : int
            Images this worker processed in the step (0 for an empty last batch, whose gradients must have
            been zeroed).
        ignore_stale_grad : bool
            As for ``gluon.Trainer.step``.
        global_batch_size : int, optional
            Images all workers processed together; default ``batch_size * workers``. Give it when workers'
            batches differ (the last batch of an epoch), so that the update is the exact mean over all images.
        """
        total = batch_size * self.workers if global_batch_size is None else global_batch_size
        # Horovod averages over workers; Gluon's Trainer then divides by the batch_size it is given.
        super().step(max(total, 1) / self.workers, ignore_stale_grad=ignore_stale_grad)

    @property
    def loss_scale(self) -> float:
        """Current dynamic loss scale (1.0 without loss scaling)."""
        return _amp.loss_scale(self)

    @property
    def num_update(self) -> int:
        """Updates applied so far (the schedule's position)."""
        return self._optimizer.num_update
