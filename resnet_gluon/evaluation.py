"""``evaluate()`` and the metric meter shared with ``fit``, ``evaluate_checkpoint()`` (``train --mode val``) and
``describe()`` (one line of figures); nothing here needs Horovod outside ``horovodrun``.

The meter accumulates loss, top-1 and top-5 counts on the device where the outputs are, and reads them back
to the host only every ``read_every`` batches and at the end, so the host never waits for the device after
every step (the reference reads the loss only). The checks that need the values (labels inside
``[0, classes)``, a finite loss) run at that cadence and name the first offending batch.
"""
from __future__ import annotations

import time
from typing import Dict, Iterable, List, Optional, Tuple

import mxnet as mx
import numpy as np
from mxnet import gluon

from ._core import dist
from ._core.runtime import default_context

__all__ = ["evaluate", "evaluate_checkpoint", "describe", "MetricMeter", "LATENCY_PERCENTILES", "ACCURACY_METRICS",
           "SPEED_METRICS", "METRICS"]

LATENCY_PERCENTILES = (50, 90, 95, 99, 100)
#: The names of the figures, the one list of them: accuracy (``top5`` is None below 5 classes) ...
ACCURACY_METRICS = ("top1", "top5", "loss")
#: ... speed (images/s with data loading; seconds from taking a batch to its result) ...
SPEED_METRICS = ("total_ips", "latency_avg") + tuple(f"latency_{p}" for p in LATENCY_PERCENTILES)
#: ... and all that :func:`evaluate` (with its prefix), ``MetricMeter.result`` and ``Predictor.evaluate`` return.
METRICS = ACCURACY_METRICS + SPEED_METRICS + ("num_images",)


class MetricMeter:
    """Loss, top-1/top-5 accuracy, images and batch latencies over an epoch.

    Parameters
    ----------
    classes : int, optional
        Label bound for the check; default the outputs' second dimension.
    read_every : int
        Batches between reads of the device-side sums (1: every batch, as MXNet's metrics do).

    Notes
    -----
    ``result()`` sums the counts over all workers (:func:`resnet_gluon._core.dist.allreduce_sum`), so every worker
    gets the figures of the whole data. Latencies are host time between :meth:`tick` calls, in seconds.

    Raises
    ------
    ValueError
        For ``read_every < 1``.
    """

    def __init__(self, classes: Optional[int] = None, *, read_every: int = 50):
        if read_every < 1:
            raise ValueError(f"read_every must be >= 1, got {read_every}")
        self.classes = classes
        self.read_every = read_every
        self.latencies: List[float] = []
        self.images = 0
        self._sums: Optional[mx.nd.NDArray] = None  # loss, correct1, correct5, bad labels (device)
        self._initial: Optional[np.ndarray] = None
        self._read = np.zeros(4)
        self._read_n = 0.0
        self._counts = np.zeros(2)  # losses, top-5 instances (host: shapes are known without the device)
        self._window: List[Tuple[str, mx.nd.NDArray, mx.nd.NDArray, mx.nd.NDArray]] = []
        self._pending = 0
        self.start = self.last = time.perf_counter()

    def update(self, out: mx.nd.NDArray, label: mx.nd.NDArray, loss: mx.nd.NDArray, where: str) -> None:
        """Add a batch: ``out`` ``(N, classes)`` logits, ``label`` ``(N,)`` class indices, ``loss`` ``(N,)``;
        ``where`` names the batch in error messages (e.g. 'epoch 1, step 3')."""
        classes = self.classes or out.shape[1]
        out = out.astype("float32", copy=False)
        label = label.astype("float32", copy=False)
        loss_sum = loss.astype("float32", copy=False).sum()
        bad = ((label < 0) + (label >= classes) + (label != label.floor())).sum()
        correct1 = (out.argmax(axis=1) == label).sum()
        if out.shape[1] >= 5:
            top5 = mx.nd.topk(out, k=5, axis=1, ret_typ="indices")
            correct5 = (top5 == label.reshape((-1, 1))).sum()
            self._counts[1] += label.shape[0]
        else:
            correct5 = mx.nd.zeros((1,), ctx=out.context)
        step = mx.nd.concat(loss_sum.reshape((1,)), correct1.reshape((1,)), correct5.reshape((1,)),
                            bad.reshape((1,)), dim=0)
        if self._sums is None and self._initial is not None:
            self._sums = mx.nd.array(self._initial, ctx=step.context, dtype="float32")
        self._sums = step if self._sums is None else self._sums + step
        self._counts[0] += loss.size
        self._window.append((where, label, loss_sum, bad))
        self._pending += 1
        if self._pending >= self.read_every:
            self._read_device()

    def _read_device(self) -> None:
        if self._sums is None or not self._pending:
            return
        values = self._sums.asnumpy().astype(np.float64)
        if values[3] > self._read[3] or not np.isfinite(values[0]):
            self._raise_first_problem()
        self._read = values
        self._read_n = self._counts[0]
        self._window.clear()
        self._pending = 0

    def _raise_first_problem(self) -> None:
        classes = self.classes
        for where, label, loss_sum, bad in self._window:
            if bad.asscalar() > 0:
                labels = label.asnumpy()
                bound = classes or "the model's outputs"
                mask = (labels < 0) | (labels != np.floor(labels)) | (labels >= (classes or np.inf))
                value = labels[mask][0] if mask.any() else labels.max()
                raise ValueError(f"label {value} at {where} is outside [0, {bound}): the data set does not match "
                                 "the model's class count (check the data, or the classes argument)")
            if not np.isfinite(loss_sum.asscalar()):
                raise FloatingPointError(f"non-finite loss at {where}; stopping (the last complete checkpoint is "
                                         "kept). Lower the learning rate, or use loss scaling with float16")
        raise FloatingPointError("non-finite loss; stopping (the last complete checkpoint is kept)")

    def tick(self, n: int) -> None:
        """End of a batch of ``n`` images (0 for an empty batch): call it once the batch's result exists
        (``wait_to_read``), so that the latency is the time until the result, not the dispatch."""
        now = time.perf_counter()
        self.latencies.append(now - self.last)
        self.last = now
        self.images += n

    def running(self) -> Dict[str, float]:
        """Loss and top-1 of this worker as of the last read (no device sync); ``{}`` before the first read."""
        if not self._read_n:
            return {}
        return dict(loss=self._read[0] / self._read_n, top1=self._read[1] / self._read_n)

    def state_dict(self, *, global_sums: bool = False) -> Dict:
        """What :meth:`load_state_dict` needs to continue this epoch's figures in another process (JSON-able):
        the sums read from the device (all of them: it reads first), counts, images, latencies, elapsed seconds.
        With ``global_sums``, sums, counts and images are summed over all workers (every worker must call it)."""
        self._read_device()
        sums, counts = self._read.tolist(), self._counts.tolist()
        read_n, images = float(self._read_n), self.images
        if global_sums:
            total = dist.allreduce_sum([*sums, read_n, *counts, images], name="resnet_gluon_meter_state")
            sums, read_n, counts, images = total[:4], total[4], total[5:7], int(total[7])
        return dict(sums=sums, read_n=read_n, counts=counts, images=images, latencies=list(self.latencies),
                    elapsed=time.perf_counter() - self.start)

    def load_state_dict(self, state: Dict, *, sums: bool = True) -> None:
        """Continue from :meth:`state_dict`: the figures of :meth:`result` then cover both parts of the epoch
        (``total_ips`` over both parts' time, without the time in between). ``sums=False`` takes the time and
        latencies only (the other workers, when rank 0 holds the global sums)."""
        if sums:
            self._read = np.asarray(state["sums"], dtype=np.float64)
            self._initial = self._read.copy()  # the device-side sums start from here (on the outputs' device)
            self._read_n = float(state["read_n"])
            self._counts = np.asarray(state["counts"], dtype=np.float64)
            self.images = int(state["images"])
        self.latencies = list(state["latencies"])
        self.start = self.last = time.perf_counter() - float(state["elapsed"])

    @property
    def num_inst(self) -> int:
        """Images added with :meth:`update` so far."""
        return int(self._counts[0])

    def result(self, prefix: str = "") -> Dict[str, float]:
        """The epoch's figures over all workers: ``loss``, ``top1``, ``top5`` (None below 5 classes),
        ``total_ips`` (images/s), ``num_images``, ``latency_avg`` and ``latency_50/90/95/99/100`` (s per batch)."""
        self._read_device()
        elapsed = time.perf_counter() - self.start
        loss, c1, c5, _ = self._read
        local = [loss, self._counts[0], c1, c5, self._counts[1], self.images]
        loss, n, c1, c5, n5, images = dist.allreduce_sum(local)
        logs = {"loss": loss / max(n, 1), "top1": c1 / max(n, 1), "top5": c5 / n5 if n5 else None,
                "total_ips": images / elapsed if elapsed > 0 else 0.0, "num_images": int(images)}
        lat = np.asarray(self.latencies) if self.latencies else np.zeros(1)
        logs["latency_avg"] = float(lat.mean())
        logs.update({f"latency_{p}": float(np.percentile(lat, p)) for p in LATENCY_PERCENTILES})
        return {prefix + k: v for k, v in logs.items()}


def evaluate(net: gluon.Block, data: Iterable, *, ctx: Optional[mx.Context] = None,
             loss: Optional[gluon.loss.Loss] = None, prefix: str = "val_", read_every: int = 50) -> Dict[str, float]:
    """Loss, top-1/top-5 accuracy, throughput and latency of ``net`` over ``data`` (all workers together).

    Parameters
    ----------
    net : Block
        The network, with its parameters on ``ctx``.
    data : iterable of (NDArray, NDArray)
        Batches ``(N, 3, H, W)`` (in the network's layout) and labels ``(N,)``; a batch may be empty.
    ctx : Context, optional
        Where batches are moved; default this worker's device (:func:`~resnet_gluon._core.runtime.default_context`).
    loss : Loss, optional
        Default softmax cross-entropy.
    prefix : str
        Prefix of the returned keys.
    read_every : int
        Batches between reads of the device-side sums.

    Returns
    -------
    dict
        ``{prefix}loss``, ``top1``, ``top5``, ``total_ips`` (images/s with data loading included),
        ``latency_avg`` and ``latency_50/90/95/99/100`` (seconds from taking a batch to its result: each batch
        is synchronised, as the reference measures it), ``num_images``.

    Raises
    ------
    ValueError
        A label outside ``[0, classes)``.
    FloatingPointError
        A non-finite loss.

    Examples
    --------
    >>> import mxnet as mx
    >>> from resnet_gluon import resnet18_v1_5
    >>> net = resnet18_v1_5(classes=10)
    >>> net.initialize()
    >>> x, y = mx.nd.zeros((8, 3, 32, 32)), mx.nd.arange(8)
    >>> metrics = evaluate(net, [(x, y), (x[:3], y[:3])])  # a partial last batch counts once per image
    >>> metrics["val_num_images"], 0 <= metrics["val_top1"] <= metrics["val_top5"] <= 1
    (11, True)
    """
    ctx = ctx or default_context()
    loss_fn = loss or gluon.loss.SoftmaxCrossEntropyLoss()
    meter = MetricMeter(getattr(net, "classes", None), read_every=read_every)
    for i, (x, y) in enumerate(data):
        if x.shape[0]:
            x, y = x.as_in_context(ctx), y.as_in_context(ctx)
            out = net(x)
            meter.update(out, y, loss_fn(out, y), where=f"validation batch {i + 1}")
            out.wait_to_read()  # the latency is the time until this batch's result exists
        meter.tick(x.shape[0])
    return meter.result(prefix)


def describe(figures: Dict, *, dtype: Optional[str] = None) -> str:
    """One line of :func:`evaluate`'s figures (no key prefix): images (and ``dtype``), top-1, top-5, img/s and the
    latency per batch (p50, p99, in ms; of ``batch_size`` images where the figures say), the engine when it is not
    MXNet and the CPU's instruction set where the figures give them, e.g. ``'1000 images, float32: top-1 0.9012,
    top-5 0.9987, 812.3 img/s, latency per batch of 64 p50 78.1 ms, p99 80.2 ms, CPU ISA avx2'``."""
    top5 = "n/a" if figures.get("top5") is None else f"{figures['top5']:.4f}"
    batch = f" of {figures['batch_size']}" if figures.get("batch_size") else ""
    engine = f" ({figures['backend']})" if figures.get("backend") not in (None, "mxnet") else ""
    isa = f", CPU ISA {figures['cpu_isa']}" if figures.get("cpu_isa") else ""
    return (f"{figures['num_images']} images{', ' + dtype if dtype else ''}{engine}: top-1 {figures['top1']:.4f}, "
            f"top-5 {top5}, {figures['total_ips']:.1f} img/s, latency per batch{batch} p50 "
            f"{1e3 * figures['latency_50']:.1f} ms, p99 {1e3 * figures['latency_99']:.1f} ms{isa}")


def evaluate_checkpoint(model_prefix: str, data: Iterable, *, epoch: Optional[int] = None,
                        ctx: Optional[mx.Context] = None, prefix: str = "val_",
                        read_every: int = 50) -> Dict[str, float]:
    """:func:`evaluate` the network of a checkpoint (``train --mode val``): the figures plus ``epoch``.

    Parameters
    ----------
    model_prefix : str
        Checkpoint prefix, as given to :class:`~resnet_gluon.train.callbacks.Checkpoint`.
    data : iterable of (NDArray, NDArray)
        Validation batches in the checkpoint's layout and input size.
    epoch : int, optional
        Checkpoint epoch (1-based, as in the file name); default the newest complete one.
    ctx : Context, optional
        Where the network is loaded and run; default this worker's device.
    prefix : str
        Prefix of the returned figures' keys.

    Returns
    -------
    dict
        ``epoch`` and :func:`evaluate`'s figures (keys with ``prefix``).

    Raises
    ------
    FileNotFoundError, ValueError
        From :func:`~resnet_gluon.models.checkpoint.load_network` (no complete checkpoint, files that do not load)
        and :func:`evaluate` (labels outside the model's classes).
    """
    from ._core import runtime
    from .models.checkpoint import load_network

    ctx = ctx or runtime.default_context()
    net, epoch, _ = load_network(model_prefix, epoch, ctx=ctx)
    net.hybridize(static_alloc=True)
    return dict(epoch=epoch, **evaluate(net, data, ctx=ctx, prefix=prefix, read_every=read_every))
