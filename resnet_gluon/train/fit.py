"""``fit()``: the training loop, Keras-like, over any data with the pipelines' interface.

Data is any iterable of ``(data, label)`` MXNet NDArrays with ``len()`` (batches per epoch, equal on every
worker) — the pipelines of :mod:`resnet_gluon.data.pipelines`, or your own. ``data`` is ``(N, 3, H, W)`` float32
('NCHW'), ``label`` ``(N,)`` class indices; the last batch of an epoch may be smaller, or empty on some
workers. Metrics are summed over all workers before they are reported, so they describe the whole data.
The step itself (loss scaling, empty batches, exact averages) belongs to the :class:`~resnet_gluon.train.trainer.Trainer`.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Deque, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import mxnet as mx
from mxnet import autograd, gluon

from .._core import amp as _amp
from .._core import dist
from . import stopping
from ..data.augmentation import mix_batch, mixing_rng
from ..data.preprocessing import Preprocessing
from ..models.blocks import set_drop_path_rate
from .callbacks import Callback, ProgressBar
from .ema import EMA
from ..evaluation import MetricMeter, evaluate
from .recipe import Recipe
from .._core.runtime import default_context, place_parameters
from .trainer import Trainer

__all__ = ["fit", "FitState", "History", "RUN_AHEAD", "EMA_LOGS"]

#: Batches whose results may be outstanding when fit takes the next batch. MXNet runs asynchronously, so
#: without a bound the Python loop races ahead of the device, each queued step holding its input batch (7.7 GB
#: at 224 px, batch 256, float32, 50 steps ahead). fit waits for the loss of batch i - RUN_AHEAD before it takes
#: batch i + 1, so at most RUN_AHEAD + 1 batches are queued; callbacks see a batch once its result exists.
RUN_AHEAD = 2

#: The validation figures of the averaged weights (``Recipe.ema_decay``), logged as ``<name>_ema``.
EMA_LOGS = ("val_loss", "val_top1", "val_top5")

#: Trainer options that are not part of the recipe.
_TRAINER_OPTIONS = ("loss_scaling", "fp16_compression", "gradient_predivide_factor")


@dataclasses.dataclass
class FitState:
    """What callbacks can see and change while ``fit`` runs (``callback.state``); epochs are 0-based."""

    net: gluon.HybridBlock
    trainer: Trainer
    ctx: mx.Context
    dtype: str
    epochs: int
    steps_per_epoch: int
    initial_epoch: int = 0
    epoch: int = 0
    stop_training: bool = False
    recipe: Recipe = dataclasses.field(default_factory=Recipe)
    batch_size: int = 0
    #: Batches of ``initial_epoch`` already done (a run resumed from a mid-epoch checkpoint) and the epoch's
    #: metric state so far (:meth:`~resnet_gluon.evaluation.MetricMeter.state_dict`).
    initial_step: int = 0
    resume_meter: Optional[Dict] = None
    #: Seed of the batch mixing draws (:func:`~resnet_gluon.data.augmentation.mixing_rng`) and the data's layout.
    seed: int = 0
    layout: str = "NCHW"
    #: The moving average of the weights when ``recipe.ema_decay > 0`` (:mod:`resnet_gluon.train.ema`).
    ema: Optional[EMA] = None
    #: The pipelines' preprocessing, what :class:`~resnet_gluon.train.callbacks.Checkpoint` records when given
    #: none: the validation pipeline's (what prediction repeats) with the training crop of the training one's.
    preprocessing: Optional[Preprocessing] = None


@dataclasses.dataclass
class History:
    """Per-epoch logs of a ``fit`` run: ``history['val_top1'][i]`` is the value after ``epochs[i] + 1`` epochs."""

    epochs: List[int] = dataclasses.field(default_factory=list)
    history: Dict[str, List[float]] = dataclasses.field(default_factory=dict)

    def append(self, epoch: int, logs: Dict) -> None:
        """Record epoch ``epoch`` (0-based): each value of ``logs`` is appended to its key's list."""
        self.epochs.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def summary(self, keys: Sequence[str] = ("loss", "top1", "val_loss", "val_top1", "val_top5", "val_top1_ema",
                                             "total_ips")) -> Dict:
        """``epochs`` (epochs done, counting those before a resume) and the last epoch's ``keys`` that it logged;
        empty when no epoch ran."""
        if not self.epochs:
            return {}
        return {"epochs": self.epochs[-1] + 1, **{k: self.history[k][-1] for k in keys if k in self.history}}


def _one_hot_targets(recipe: Recipe) -> bool:
    """Whether the recipe's loss takes one-hot ``(N, classes)`` targets rather than ``(N,)`` labels."""
    return bool(recipe.label_smoothing or recipe.mixup or recipe.cutmix or recipe.loss == "bce")


def _loss(recipe: Recipe, classes: Optional[int]) -> gluon.loss.Loss:
    """The recipe's loss. 'bce' is the binary cross-entropy of every class's logit (Gluon's numerically stable
    form) averaged over the classes: the per-sample value whose batch mean is timm's ``BinaryCrossEntropy``
    ("ResNet strikes back")."""
    if _one_hot_targets(recipe) and not classes:
        raise ValueError("label smoothing, mixup, CutMix and the BCE loss need the class count: give the network a "
                         "'classes' attribute (resnet_gluon's models have one)")
    if recipe.loss == "bce":
        return gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False)
    return gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=not _one_hot_targets(recipe))


def _targets(label: mx.nd.NDArray, classes: int, smoothing: float) -> mx.nd.NDArray:
    """One-hot targets, smoothed: ``1 - smoothing + smoothing / classes`` for the label, ``smoothing / classes``
    elsewhere."""
    return mx.nd.one_hot(label, classes, on_value=1 - smoothing + smoothing / classes,
                         off_value=smoothing / classes)


def _recorded(train: Optional[Preprocessing], val: Optional[Preprocessing]) -> Optional[Preprocessing]:
    """What a Checkpoint records from the pipelines' ``preprocessing`` attributes (objects that are no
    :class:`Preprocessing` are ignored): the validation one's with the training one's training crop."""
    train, val = (p if isinstance(p, Preprocessing) else None for p in (train, val))
    if val is None or train is None:
        return val or train
    return dataclasses.replace(val, train_image_size=train.crop_size(train=True))


def fit(net: gluon.HybridBlock, train_data: Iterable, val_data: Optional[Iterable] = None, *,
        epochs: Optional[int] = None, recipe: Optional[Recipe] = None, dtype: str = "auto",
        ctx: Optional[mx.Context] = None, trainer: Optional[Trainer] = None, callbacks: Sequence[Callback] = (),
        progress: bool = True, initial_epoch: int = 0, target_accuracy: Optional[float] = None,
        batch_size: Optional[int] = None, read_every: int = 50, accumulate: int = 1,
        stop_signals: Sequence[int] = stopping.DEFAULT_SIGNALS, max_run_time: Union[str, float, None] = None,
        stop_check_every: int = 1, seed: Optional[int] = None, **options) -> History:
    """Train ``net`` on ``train_data``, validating on ``val_data`` after every epoch.

    Parameters
    ----------
    net : HybridBlock
        E.g. ``resnet50_v1_5(classes=...)``; initialised here (reference initializer) if it is not yet.
        Hybridized here.
    train_data, val_data : iterable of (NDArray, NDArray)
        Batches of images ``(N, 3, H, W)`` float32 and labels ``(N,)``; ``len()`` gives batches per epoch.
    epochs : int, optional
        Total epochs; default ``recipe.epochs`` (the reference: 90).
    recipe : Recipe, optional
        Optimiser, schedule, loss and regularisation settings; default :class:`~resnet_gluon.train.recipe.Recipe` (the
        reference's); others: ``Recipe.preset(name)``. Its ``drop_path_rate``, when set, is set on ``net``. With
        ``ema_decay > 0`` a moving average of the weights is kept (:mod:`resnet_gluon.train.ema`, one averaging per
        optimizer update) and validated after every epoch beside the raw weights: ``val_top1_ema``,
        ``val_top5_ema``, ``val_loss_ema`` in the logs and the history (validation takes twice as long).
    dtype : {'auto', 'float32', 'bfloat16', 'float16'}
        Training precision, switched on here before the first forward pass: 'auto' is float16 on GPUs (with
        dynamic loss scaling), bfloat16 on CPUs with AMX (see :func:`resnet_gluon._core.amp.resolve_dtype`), else
        float32. MXNet's AMP is process-wide: once
        on, it stays on in this process.
    ctx : Context, optional
        Default: this worker's GPU if there is one, else the CPU.
    trainer : Trainer, optional
        Default: a :class:`~resnet_gluon.train.trainer.Trainer` built from the recipe.
    callbacks : sequence of Callback
        E.g. ``[Checkpoint('runs/model'), Report('runs/report.json')]``. A progress bar is added when
        ``progress``.
    initial_epoch : int
        Epoch to start from (a :class:`~resnet_gluon.train.callbacks.Checkpoint` that resumes sets it).
    target_accuracy : float, optional
        Stop once validation top-1 reaches it.
    batch_size : int, optional
        Images per worker per step; default ``train_data.batch_size``.
    read_every : int
        Batches between reads of the metrics from the device (the progress bar shows the last read values,
        none before the first read). Independent of it, the loop runs at most :data:`RUN_AHEAD` batches ahead
        of the device.
    accumulate : int
        Batches per optimizer update (gradient accumulation, see :class:`~resnet_gluon.train.trainer.Trainer`): the lr
        is scaled for ``batch_size * workers * accumulate`` images and the schedule counts updates. Callbacks
        still see every batch. With a ready-made ``trainer``, its own ``accumulate`` applies.
    stop_signals : sequence of int
        Signals on which training stops cleanly (default SIGTERM and SIGUSR1, what Slurm sends; add
        ``signal.SIGINT`` for Ctrl-C; ``()`` for none): every worker stops after the same update, callbacks flush
        (a :class:`~resnet_gluon.train.callbacks.Checkpoint` writes a mid-epoch checkpoint that a rerun resumes at the
        next step), and :class:`~resnet_gluon.train.stopping.TrainingStopped` is raised (a ``SystemExit`` with status
        75, see :mod:`resnet_gluon.train.stopping`). With ``accumulate`` > 1 the stop comes at an update boundary.
    max_run_time : str or float, optional
        Stop the same way at the first step boundary after this much time (seconds, or e.g. ``'3h50m'``,
        ``'01:30:00'``), for cluster time limits and job chains.
    stop_check_every : int
        Optimizer updates between the workers' decisions whether to stop (one tiny allreduce each with several
        workers).
    seed : int, optional
        Seed of the mixup/CutMix draws: those of a batch are a function of ``(seed, epoch, step, rank)``, so a
        resumed run replays them. Default: ``train_data.seed`` (the pipelines'), else 0.
    **options
        Fields of :class:`~resnet_gluon.train.recipe.Recipe` (``lr``, ``lr_per_256``, ``schedule``, ``warmup_epochs``,
        ``wd``, ``optimizer``, ``loss``, ``label_smoothing``, ``mixup``, ``cutmix``, ``drop_path_rate``, ...) and the
        Trainer's ``loss_scaling``, ``fp16_compression``, ``gradient_predivide_factor``.

    Returns
    -------
    History
        ``history.history['val_top1']`` etc., one value per epoch run (none when a resumed run was complete).

    Raises
    ------
    ValueError
        Bad epochs, batch size, accumulate, dtype or recipe value; options given with a ready-made ``trainer``;
        labels outside ``[0, classes)``; an epoch smaller than one update's global batch; a ``drop_path_rate``
        above 0 for a network without residual blocks; label smoothing, mixup, CutMix or the BCE loss for a
        network without a ``classes`` attribute; a recipe's ``auto_augment`` or ``random_erasing`` that the
        training pipeline does not apply (:meth:`~resnet_gluon.train.recipe.Recipe.check_data`).
    TypeError
        An unknown option.
    FloatingPointError
        A non-finite loss.
    TrainingStopped
        After a clean stop on a signal or ``max_run_time`` (exit status 75 unless caught).

    Examples
    --------
    Two batches of 4 random 32 px images, one epoch (real data: :mod:`resnet_gluon.data.pipelines`):

    >>> import mxnet as mx
    >>> from resnet_gluon import fit, resnet18_v1_5
    >>> net = resnet18_v1_5(classes=4)
    >>> batches = [(mx.nd.random.uniform(-1, 1, shape=(4, 3, 32, 32)), mx.nd.array([0, 1, 2, 3]))] * 2
    >>> history = fit(net, batches, batches, epochs=1, lr=0.01, warmup_epochs=0, batch_size=4, dtype="float32",
    ...               progress=False, stop_signals=())
    >>> history.epochs, {"loss", "top1", "val_loss", "val_top1", "val_top5"} <= set(history.history)
    ([0], True)
    >>> 0 <= history.summary()["val_top1"] <= 1
    True
    """
    budget = stopping.parse_duration(max_run_time)
    ctx = ctx or default_context()
    dtype = _amp.init(dtype, net=net, ctx=ctx)
    if batch_size is None:
        batch_size = getattr(train_data, "batch_size", None)
    if batch_size is None or batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size!r} (pass batch_size= for data without a "
                         ".batch_size attribute)")
    trainer_options = {k: options.pop(k) for k in _TRAINER_OPTIONS if k in options}
    if accumulate != 1:
        trainer_options["accumulate"] = accumulate
    if trainer is not None and (options or trainer_options or recipe is not None):
        raise ValueError(f"pass the recipe and trainer options ({', '.join([*options, *trainer_options])}) to "
                         "your Trainer, not to fit()")
    recipe = trainer.recipe if trainer is not None else (recipe or Recipe()).replace(epochs=epochs, **options)
    if epochs is not None and epochs != recipe.epochs:
        raise ValueError(f"fit(epochs={epochs}) differs from the trainer's recipe (epochs={recipe.epochs})")
    recipe.check_train_size(getattr(train_data, "preprocessing", None))
    place_parameters(net, ctx, initialize=True)
    recipe.check_data(train_data)
    if recipe.drop_path_rate is not None:
        set_drop_path_rate(net, recipe.drop_path_rate)
    net.hybridize(static_alloc=True)
    steps = len(train_data)
    if trainer is None:
        trainer = Trainer(net.collect_params(), batch_size=batch_size, steps_per_epoch=steps, recipe=recipe,
                          dtype=dtype, **trainer_options)
    train_prep, val_prep = (getattr(data, "preprocessing", None) for data in (train_data, val_data))
    state = FitState(net, trainer, ctx, dtype, recipe.epochs, steps, initial_epoch, recipe=recipe,
                     batch_size=batch_size, seed=int(seed if seed is not None else getattr(train_data, "seed", 0)),
                     layout=getattr(train_prep, "layout", "NCHW"), preprocessing=_recorded(train_prep, val_prep))
    if recipe.ema_decay:
        state.ema = EMA(net.collect_params(), decay=recipe.ema_decay, warmup=recipe.ema_warmup, trainer=trainer)
    callbacks = list(callbacks) + ([ProgressBar()] if progress else [])
    for cb in callbacks:
        cb.state = state
    stopper = stopping.StopRequest(stop_signals, budget, every=stop_check_every,
                                   budget_text=str(max_run_time) if max_run_time is not None else None)
    try:
        for cb in callbacks:
            cb.on_train_begin({})
        history = _run_epochs(state, train_data, val_data, callbacks, read_every, target_accuracy, stopper)
    except _Stopped as stop:
        _stop_callbacks(callbacks, stop)
        raise stopping.TrainingStopped(stop.epoch, stop.step, stop.logs["reason"]) from None
    finally:
        stopper.close()
    for cb in callbacks:
        cb.on_train_end({})
    return history


def _stop_callbacks(callbacks: Sequence[Callback], stop: "_Stopped") -> None:
    """``on_train_stopped`` and ``on_train_end`` of every callback, then every worker waits for the others (rank
    0's checkpoint is written before any worker exits); a failure on any worker (rank 0's disk is full) is raised on
    every worker, rather than leaving the others waiting."""
    error = None
    try:
        for cb in callbacks:
            cb.on_train_stopped(stop.epoch, stop.step, stop.logs)
        for cb in callbacks:
            cb.on_train_end({})
    except Exception as err:  # pylint: disable=broad-except  (re-raised below, after the workers agree)
        error = err
    failed = dist.allreduce_sum([1.0 if error is not None else 0.0], name="resnet_gluon_stopped")[0]
    if error is not None:
        raise error
    if failed:
        raise RuntimeError(f"training stopped ({stop.logs['reason']}), but another worker failed while saving or "
                           "flushing (its error says why); the last complete checkpoint stays usable")


class _Stopped(Exception):
    def __init__(self, epoch: int, step: int, logs: Dict):
        super().__init__(epoch, step)
        self.epoch, self.step, self.logs = epoch, step, logs


def _epoch_batches(data: Iterable, epoch: int, start: int):
    """``(index, batch)`` of epoch ``epoch`` from batch ``start`` on. The epoch is read from its first batch and
    the first ``start`` batches are dropped, unused: the pipelines' order and random augmentation are functions of
    ``(seed, epoch)`` and of the batches before, so a resumed epoch gets exactly the uninterrupted run's batches,
    for the price of reading (not training on) the skipped ones."""
    if start and start >= len(data):  # stopped after the epoch's last step: nothing left to train on
        return iter(())
    if hasattr(data, "set_epoch"):
        data.set_epoch(epoch)
    batches = iter(data)
    for _ in range(start):
        if next(batches, None) is None:
            raise ValueError(f"cannot resume epoch {epoch + 1} at batch {start}: the data gives fewer batches "
                             "now than when the run stopped; resume with the data it was saved with")
    return enumerate(batches, start)


def _build_graph(state: FitState, data: Iterable, epoch: int) -> None:
    """One forward pass (predict mode: nothing learns) on the epoch's first batch, so that the hybridized network
    has a graph to export; for a run resumed after the last step of an epoch, which trains on no batch of it."""
    if hasattr(data, "set_epoch"):
        data.set_epoch(epoch)
    for x, _ in data:
        if x.shape[0]:
            state.net(x.as_in_context(state.ctx)[:1]).wait_to_read()
            return


def _run_epochs(state: FitState, train_data: Iterable, val_data: Optional[Iterable], callbacks: Sequence[Callback],
                read_every: int, target_accuracy: Optional[float], stopper: stopping.StopRequest) -> History:
    """The epochs of :func:`fit` from ``state.initial_epoch``, with their callbacks; stops early on request."""
    net, ctx, recipe = state.net, state.ctx, state.recipe
    history = History()
    loss_fn = _loss(recipe, getattr(net, "classes", None))
    for epoch in range(state.initial_epoch, state.epochs):
        state.epoch = epoch
        for cb in callbacks:
            cb.on_epoch_begin(epoch, {})
        start = state.initial_step if epoch == state.initial_epoch else 0
        if start and start >= len(train_data) and not getattr(net, "_cached_graph", None):
            _build_graph(state, train_data, epoch)  # the checkpoint at this epoch's end exports the graph
        logs = _train_epoch(state, _epoch_batches(train_data, epoch, start), loss_fn, callbacks, read_every,
                            stopper, start)
        if val_data is not None:
            logs.update(evaluate(net, val_data, ctx=ctx, read_every=read_every))
            if state.ema is not None:  # the averaged weights swapped in, then the raw ones back
                with state.ema.applied():
                    averaged = evaluate(net, val_data, ctx=ctx, read_every=read_every)
                logs.update({f"{k}_ema": averaged[k] for k in EMA_LOGS if k in averaged})
        history.append(epoch, logs)
        for cb in callbacks:
            cb.on_epoch_end(epoch, logs)
        if target_accuracy is not None and logs.get("val_top1", 0.0) >= target_accuracy:
            state.stop_training = True
        if state.stop_training:
            break
    return history


def _train_epoch(state: FitState, batches: Iterable, loss_fn: gluon.loss.Loss, callbacks: Sequence[Callback],
                 read_every: int, stopper: stopping.StopRequest, start: int = 0) -> Dict[str, float]:
    net, trainer, ctx, recipe = state.net, state.trainer, state.ctx, state.recipe
    classes = getattr(net, "classes", None)
    smoothing, mixup, cutmix = recipe.label_smoothing, recipe.mixup, recipe.cutmix
    meter = MetricMeter(classes, read_every=read_every)
    if start and state.resume_meter:  # the sums over all workers, saved by rank 0: rank 0 continues them
        meter.load_state_dict(state.resume_meter, sums=dist.is_rank_zero())
        state.resume_meter = None
    in_flight: Deque[Tuple[int, int, Optional[mx.nd.NDArray]]] = collections.deque()

    def computed(batch: int, n: int, loss: Optional[mx.nd.NDArray]) -> None:
        if loss is not None:
            loss.wait_to_read()  # the batch's result exists: the figures below are of computed work
        meter.tick(n)
        if n:
            logs = meter.running()
            for cb in callbacks:
                cb.on_batch_end(batch, logs)

    for i, (x, y) in batches:
        n, loss = x.shape[0], None
        if n:
            x, y = x.as_in_context(ctx), y.as_in_context(ctx)
            target = _targets(y, classes, smoothing) if _one_hot_targets(recipe) else y
            if mixup or cutmix:
                rng = mixing_rng(state.seed, state.epoch, i, dist.rank())
                x, target, _ = mix_batch(x, target, mixup=mixup, cutmix=cutmix, rng=rng, layout=state.layout)
            with autograd.record():
                out = net(x)
                loss = loss_fn(out, target)
            trainer.backward(loss)
            meter.update(out, y, loss, where=f"epoch {state.epoch + 1}, step {i + 1}")
        trainer.step(n)
        if state.ema is not None and getattr(trainer, "at_update", True):
            state.ema.update()  # once per optimizer update, on the device
        in_flight.append((i, n, loss))
        if len(in_flight) > RUN_AHEAD:
            computed(*in_flight.popleft())
        reason = stopper.should_stop() if getattr(trainer, "at_update", True) else None
        if reason:
            while in_flight:
                computed(*in_flight.popleft())
            raise _Stopped(state.epoch, i + 1, dict(meter=meter.state_dict(global_sums=True), reason=reason))
    while in_flight:
        computed(*in_flight.popleft())
    logs = meter.result()
    if not logs["num_images"]:
        raise ValueError("the training data gave no batches")
    logs["lr"] = trainer.learning_rate
    logs["loss_scale"] = trainer.loss_scale
    return logs

