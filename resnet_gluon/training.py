"""``fit()`` and ``evaluate()``: the training and validation loops.

Data is any iterable of ``(data, label)`` MXNet NDArrays with ``len()`` (batches per epoch, equal on every
worker) — the pipelines of :mod:`resnet_gluon.pipelines`, or your own. ``data`` is ``(N, 3, H, W)`` float32
('NCHW'), ``label`` ``(N,)`` class indices; the last batch of an epoch may be smaller, or empty on some
workers. Metrics are summed over all workers before they are reported, so they describe the whole data.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Dict, Iterable, List, Optional, Sequence

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from . import amp as _amp
from . import dist
from .callbacks import Callback, ProgressBar
from .runtime import num_gpus
from .trainer import Trainer

__all__ = ["fit", "evaluate", "FitState", "History", "default_context"]

_PERCENTILES = (50, 90, 95, 99, 100)


def default_context() -> mx.Context:
    """This worker's GPU (Horovod's local rank) when mxnet sees one, else the CPU."""
    return mx.gpu(dist.local_rank()) if num_gpus() > 0 else mx.cpu()


@dataclasses.dataclass
class FitState:
    """What callbacks can see and change while ``fit`` runs (``callback.state``)."""

    net: gluon.HybridBlock
    trainer: Trainer
    ctx: mx.Context
    dtype: str
    epochs: int
    steps_per_epoch: int
    initial_epoch: int = 0
    epoch: int = 0
    stop_training: bool = False


@dataclasses.dataclass
class History:
    """Per-epoch logs of a ``fit`` run: ``history['val_top1'][i]`` is the value after ``epochs[i] + 1`` epochs."""

    epochs: List[int] = dataclasses.field(default_factory=list)
    history: Dict[str, List[float]] = dataclasses.field(default_factory=dict)

    def append(self, epoch: int, logs: Dict) -> None:
        self.epochs.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)


class _Meter:
    """Loss, top-1/top-5 and timing over an epoch; ``result()`` sums the counts over all workers."""

    def __init__(self, classes: Optional[int]):
        self.classes = classes
        self.top1, self.top5, self.loss = mx.metric.Accuracy(), mx.metric.TopKAccuracy(5), mx.metric.Loss()
        self.latencies: List[float] = []
        self.images = 0
        self.start = self.last = time.perf_counter()

    def update(self, out: mx.nd.NDArray, label: mx.nd.NDArray, loss: mx.nd.NDArray, where: str) -> None:
        labels = label.asnumpy()
        classes = self.classes or out.shape[1]
        if labels.size and (labels.min() < 0 or labels.max() >= classes or np.any(labels != np.floor(labels))):
            bad = labels[(labels < 0) | (labels >= classes) | (labels != np.floor(labels))][0]
            raise ValueError(f"label {bad} at {where} is outside [0, {classes}): the data set does not match the "
                             "model's class count (check the data, or the classes argument)")
        self.loss.update(None, loss)
        if not np.isfinite(self.loss.sum_metric):
            raise FloatingPointError(f"non-finite loss at {where}; stopping (the last complete checkpoint is "
                                     "kept). Lower the learning rate, or use loss scaling with float16")
        out = out.astype("float32", copy=False)
        self.top1.update(label, out)
        if out.shape[1] >= 5:
            self.top5.update(label, out)

    def tick(self, n: int) -> None:
        now = time.perf_counter()
        self.latencies.append(now - self.last)
        self.last = now
        self.images += n

    def running(self) -> Dict[str, float]:
        return dict(loss=self.loss.get()[1], top1=self.top1.get()[1])

    def result(self, prefix: str = "") -> Dict[str, float]:
        elapsed = time.perf_counter() - self.start
        local = [self.loss.sum_metric, self.loss.num_inst, self.top1.sum_metric, self.top1.num_inst,
                 self.top5.sum_metric, self.top5.num_inst, self.images]
        totals = _allreduce_sum(local)
        loss, n_loss, c1, n1, c5, n5, images = totals
        logs = {"loss": loss / max(n_loss, 1), "top1": c1 / max(n1, 1), "top5": c5 / max(n5, 1) if n5 else None,
                "total_ips": images / elapsed if elapsed > 0 else 0.0, "num_images": int(images)}
        lat = np.asarray(self.latencies) if self.latencies else np.zeros(1)
        logs["latency_avg"] = float(lat.mean())
        logs.update({f"latency_{p}": float(np.percentile(lat, p)) for p in _PERCENTILES})
        return {prefix + k: v for k, v in logs.items()}


def _allreduce_sum(values: Sequence[float]) -> List[float]:
    if dist.size() == 1:
        return [float(v) for v in values]
    hvd = dist.horovod()
    summed = hvd.allreduce(mx.nd.array(values, dtype="float64"), average=False, name="resnet_gluon_sum")
    return summed.asnumpy().tolist()


def _ensure_initialized(net: gluon.Block, ctx: mx.Context) -> None:
    params = net.collect_params()
    try:
        contexts = {c for p in params.values() for c in p.list_ctx()}
    except RuntimeError:  # some parameter is not initialised: initialise all that are not
        net.initialize(ctx=ctx)
        return
    if contexts != {ctx}:
        params.reset_ctx(ctx)


def _targets(label: mx.nd.NDArray, classes: int, smoothing: float) -> mx.nd.NDArray:
    if not smoothing:
        return label
    return mx.nd.one_hot(label, classes, on_value=1 - smoothing + smoothing / classes,
                         off_value=smoothing / classes)


def evaluate(net: gluon.Block, data: Iterable, *, ctx: Optional[mx.Context] = None,
             loss: Optional[gluon.loss.Loss] = None, prefix: str = "val_") -> Dict[str, float]:
    """Loss, top-1/top-5 accuracy, throughput and latency of ``net`` over ``data`` (all workers together).

    Returns a flat dict: ``{prefix}loss``, ``top1``, ``top5``, ``total_ips`` (images/s with data loading
    included), ``latency_avg`` and ``latency_50/90/95/99/100`` (seconds per batch), ``num_images``.
    """
    ctx = ctx or default_context()
    loss_fn = loss or gluon.loss.SoftmaxCrossEntropyLoss()
    meter = _Meter(getattr(net, "classes", None))
    for i, (x, y) in enumerate(data):
        if x.shape[0]:
            x, y = x.as_in_context(ctx), y.as_in_context(ctx)
            out = net(x)
            meter.update(out, y, loss_fn(out, y), where=f"validation batch {i + 1}")
        meter.tick(x.shape[0])
    return meter.result(prefix)


def fit(net: gluon.HybridBlock, train_data: Iterable, val_data: Optional[Iterable] = None, *, epochs: int = 90,
        dtype: str = "float32", ctx: Optional[mx.Context] = None, trainer: Optional[Trainer] = None,
        label_smoothing: float = 0.0, mixup: float = 0.0, callbacks: Sequence[Callback] = (),
        progress: bool = True, initial_epoch: int = 0, target_accuracy: Optional[float] = None,
        batch_size: Optional[int] = None, **trainer_options) -> History:
    """Train ``net`` on ``train_data``, validating on ``val_data`` after every epoch.

    Parameters
    ----------
    net : HybridBlock
        E.g. ``resnet50_v1_5(classes=...)``; initialised here (reference initializer) if it is not yet.
        Hybridized here.
    train_data, val_data : iterable of (NDArray, NDArray)
        Batches of images ``(N, 3, H, W)`` float32 and labels ``(N,)``; ``len()`` gives batches per epoch.
    epochs : int
        Total epochs (the reference: 90).
    dtype : {'float32', 'bfloat16', 'float16', 'auto'}
        Training precision. Mixed precision is switched on here, before the first forward pass; 'auto' is
        float16 on GPUs (with dynamic loss scaling) and bfloat16 on CPUs.
    ctx : Context, optional
        Default: this worker's GPU if there is one, else the CPU.
    trainer : Trainer, optional
        Default: a :class:`~resnet_gluon.trainer.Trainer` built with ``trainer_options``.
    label_smoothing : float
        Label smoothing epsilon (the reference's later releases: 0.1).
    mixup : float
        Mixup alpha (0: off).
    callbacks : sequence of Callback
        E.g. ``[Checkpoint('runs/model'), Report('runs/report.json')]``. A progress bar is added when
        ``progress``.
    initial_epoch : int
        Epoch to start from (a :class:`~resnet_gluon.callbacks.Checkpoint` that resumes sets it).
    target_accuracy : float, optional
        Stop once validation top-1 reaches it.
    batch_size : int, optional
        Images per worker per step; default ``train_data.batch_size``.
    **trainer_options
        Passed to :class:`~resnet_gluon.trainer.Trainer` (``lr``, ``lr_per_256``, ``schedule``,
        ``warmup_epochs``, ``wd``, ``no_wd_bn_bias``, ``fp16_compression``, ...).

    Returns
    -------
    History
        ``history.history['val_top1']`` etc., one value per epoch run.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    ctx = ctx or default_context()
    dtype = _amp.init(dtype, net=net, ctx=ctx)
    if batch_size is None:
        batch_size = getattr(train_data, "batch_size", None)
    if batch_size is None or batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size!r} (pass batch_size= for data without a "
                         ".batch_size attribute)")
    _ensure_initialized(net, ctx)
    net.hybridize(static_alloc=True)
    steps = len(train_data)
    if trainer is None:
        trainer = Trainer(net.collect_params(), batch_size=batch_size, steps_per_epoch=steps, epochs=epochs,
                          dtype=dtype, **trainer_options)
    elif trainer_options:
        raise ValueError(f"pass trainer options ({', '.join(trainer_options)}) to your Trainer, not to fit()")
    state = FitState(net, trainer, ctx, dtype, epochs, steps, initial_epoch)
    callbacks = list(callbacks) + ([ProgressBar()] if progress else [])
    for cb in callbacks:
        cb.state = state
    for cb in callbacks:
        cb.on_train_begin({})
    history = History()
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=not (label_smoothing or mixup))
    for epoch in range(state.initial_epoch, epochs):
        state.epoch = epoch
        for cb in callbacks:
            cb.on_epoch_begin(epoch, {})
        if hasattr(train_data, "set_epoch"):
            train_data.set_epoch(epoch)
        logs = _train_epoch(state, train_data, loss_fn, label_smoothing, mixup, callbacks)
        if val_data is not None:
            logs.update(evaluate(net, val_data, ctx=ctx))
        history.append(epoch, logs)
        for cb in callbacks:
            cb.on_epoch_end(epoch, logs)
        if target_accuracy is not None and logs.get("val_top1", 0.0) >= target_accuracy:
            state.stop_training = True
        if state.stop_training:
            break
    for cb in callbacks:
        cb.on_train_end({})
    return history


def _train_epoch(state: FitState, data: Iterable, loss_fn: gluon.loss.Loss, smoothing: float, mixup: float,
                 callbacks: Sequence[Callback]) -> Dict[str, float]:
    net, trainer, ctx = state.net, state.trainer, state.ctx
    classes = getattr(net, "classes", None)
    meter = _Meter(classes)
    scaling = getattr(trainer, "_amp_loss_scaler", None) is not None
    spare = None  # one image kept for the zero-gradient step of an empty last batch
    last = state.steps_per_epoch - 1
    for i, (x, y) in enumerate(data):
        n = x.shape[0]
        where = f"epoch {state.epoch + 1}, step {i + 1}"
        if n:
            x, y = x.as_in_context(ctx), y.as_in_context(ctx)
            spare = x[:1]
            target = _targets(y, classes or 0, smoothing) if smoothing or mixup else y
            if mixup:
                x, target = _mixup(x, target if smoothing else mx.nd.one_hot(y, classes), mixup)
            with autograd.record():
                out = net(x)
                loss = loss_fn(out, target)
                if scaling:
                    with _amp.scale_loss(loss, trainer) as scaled:
                        autograd.backward(scaled)
                else:
                    loss.backward()
            meter.update(out, y, loss, where)
        else:
            _zero_gradient_step(net, spare)
        global_n = int(_allreduce_sum([n])[0]) if i == last and trainer.workers > 1 else None
        trainer.step(n, global_batch_size=global_n)
        meter.tick(n)
        if n:
            logs = meter.running()
            for cb in callbacks:
                cb.on_batch_end(i, logs)
    if not meter.loss.num_inst and dist.size() == 1:
        raise ValueError("the training data gave no batches")
    logs = meter.result()
    logs["lr"] = trainer.learning_rate
    logs["loss_scale"] = trainer.loss_scale
    return logs


def _zero_gradient_step(net: gluon.Block, spare: Optional[mx.nd.NDArray]) -> None:
    """Zero gradients (marked fresh) for a worker whose last batch is empty, so it still joins the allreduce.

    A prediction-mode pass over one kept image times zero: BatchNorm statistics are untouched.
    """
    if spare is None:
        raise ValueError("a worker's first batch of an epoch was empty: the shard is smaller than one batch")
    with autograd.record(train_mode=False):
        zero = net(spare).sum() * 0
    zero.backward()


def _mixup(x: mx.nd.NDArray, target: mx.nd.NDArray, alpha: float):
    lam = float(np.random.beta(alpha, alpha))
    perm = mx.nd.array(np.random.permutation(x.shape[0]), ctx=x.context)
    return (lam * x + (1 - lam) * x.take(perm), lam * target + (1 - lam) * target.take(perm))
