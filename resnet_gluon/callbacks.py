"""Keras-style callbacks for :func:`resnet_gluon.fit`: checkpoints with resume, progress, the JSON report.

Hooks receive a flat ``logs`` dict (``loss``, ``top1``, ``top5``, ``total_ips``, ``latency_50``, ...,
``val_top1``, ...). Every side effect (files, progress output) happens on rank 0 only, through
:func:`~resnet_gluon.dist.rank_zero_only`; loading a checkpoint happens on every rank.
"""
from __future__ import annotations

import glob
import json
import os
import re
import sys
import time
from typing import Dict, List, Optional, Sequence

import mxnet as mx

from . import dist
from .data import Preprocessing
from .dist import rank_zero_only
from .models import checkpoint_files, export_checkpoint, load_parameters

__all__ = ["Callback", "Checkpoint", "ProgressBar", "Report", "rank_zero_only", "latest_checkpoint",
           "REPORT_METRICS"]

#: The metrics of the reference's JSON report, each prefixed by 'train.' and 'val.'.
REPORT_METRICS = ("top1", "top5", "loss", "total_ips", "latency_avg", "latency_50", "latency_90", "latency_95",
                  "latency_99", "latency_100")


class Callback:
    """Base class. ``self.state`` is the running fit's :class:`~resnet_gluon.training.FitState` (net, trainer,
    epoch, ...), set before ``on_train_begin``."""

    state = None

    def on_train_begin(self, logs: Dict) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs: Dict) -> None:
        pass

    def on_batch_end(self, batch: int, logs: Dict) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: Dict) -> None:
        pass

    def on_train_end(self, logs: Dict) -> None:
        pass


def _atomic_write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def latest_checkpoint(prefix: str) -> Optional[int]:
    """The newest epoch with a complete checkpoint under ``prefix`` (None if there is none).

    A checkpoint is complete when its record ``<prefix>-NNNN.json`` exists: it is written last, after the
    params and trainer states, each of which is written atomically.
    """
    epochs = []
    for path in glob.glob(glob.escape(prefix) + "-[0-9][0-9][0-9][0-9].json"):
        epoch = int(re.search(r"-(\d{4})\.json$", path).group(1))
        _, params = checkpoint_files(prefix, epoch)
        if os.path.isfile(params) and os.path.isfile(f"{prefix}-{epoch:04d}.states"):
            epochs.append(epoch)
    return max(epochs) if epochs else None


class Checkpoint(Callback):
    """Write the reference's checkpoint after every ``period`` epochs and resume from the newest one.

    Files (``NNNN`` = epochs completed): ``<prefix>-symbol.json`` and ``<prefix>-NNNN.params`` (load with
    ``gluon.SymbolBlock.imports`` or :func:`~resnet_gluon.load_parameters`), ``<prefix>-NNNN.states``
    (trainer/optimizer state) and ``<prefix>-NNNN.json`` (epoch, model, classes, schedule position, loss
    scale, metrics), written last; each file is written to a temporary name and renamed.

    Parameters
    ----------
    prefix : str
        Path prefix, e.g. ``'runs/model'``.
    period : int
        Save every ``period`` epochs (and after the last).
    resume : bool
        Continue from the newest complete checkpoint under ``prefix``, if any.
    class_names : sequence of str, optional
        Class names in label order, recorded for :class:`~resnet_gluon.inference.Predictor` (e.g.
        ``resnet_gluon.data.load_classes(data_root)``).
    preprocessing : Preprocessing, optional
        The pipelines' settings; the validation part (crop, resize, mean/std) is recorded for the predictor.
    """

    def __init__(self, prefix: str, *, period: int = 1, resume: bool = True,
                 class_names: Optional[Sequence[str]] = None, preprocessing: Optional[Preprocessing] = None):
        self.prefix = os.fspath(prefix)
        self.period = period
        self.resume = resume
        self.class_names = list(class_names) if class_names is not None else None
        self.preprocessing = preprocessing
        self.resumed_from: Optional[int] = None

    def on_train_begin(self, logs):
        folder = os.path.dirname(os.path.abspath(self.prefix))
        if dist.is_rank_zero():
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as err:
                raise PermissionError(f"cannot create the checkpoint folder {folder!r}: {err}") from None
            if not os.access(folder, os.W_OK):
                raise PermissionError(f"checkpoint folder {folder!r} is not writable; choose another model prefix")
        epoch = latest_checkpoint(self.prefix) if self.resume else None
        if epoch is not None and epoch > self.state.initial_epoch:
            self._load(epoch)

    def _load(self, epoch: int) -> None:
        with open(f"{self.prefix}-{epoch:04d}.json") as f:
            record = json.load(f)
        net, trainer = self.state.net, self.state.trainer
        mine = dict(model=getattr(net, "model_name", type(net).__name__), classes=getattr(net, "classes", None))
        for key, value in mine.items():
            if record.get(key) != value:
                raise ValueError(f"cannot resume from {self.prefix}-{epoch:04d}: it was trained as {key}="
                                 f"{record.get(key)!r} but this run has {key}={value!r}; use another --model-prefix "
                                 "or remove the old checkpoints")
        _, params = checkpoint_files(self.prefix, epoch)
        load_parameters(net, params, ctx=self.state.ctx)
        trainer.load_states(f"{self.prefix}-{epoch:04d}.states")
        if record.get("loss_scale") and getattr(trainer, "_amp_loss_scaler", None) is not None:
            scaler = trainer._amp_loss_scaler  # pylint: disable=protected-access
            scaler._loss_scale = scaler._next_loss_scale = record["loss_scale"]  # pylint: disable=protected-access
        self.state.initial_epoch = epoch
        self.resumed_from = epoch
        if dist.is_rank_zero():
            print(f"resumed from {params} (epoch {epoch}, update {record.get('num_update')})", file=sys.stderr)

    def on_epoch_end(self, epoch, logs):
        done = epoch + 1
        if done % self.period and done != self.state.epochs:
            return
        self._save(done, logs)

    @rank_zero_only
    def _save(self, done: int, logs: Dict) -> None:
        net, trainer = self.state.net, self.state.trainer
        export_checkpoint(net, self.prefix, done)
        states = f"{self.prefix}-{done:04d}.states"
        tmp = f"{states}.tmp{os.getpid()}"
        trainer.save_states(tmp)
        os.replace(tmp, states)
        record = dict(epoch=done, model=getattr(net, "model_name", type(net).__name__),
                      classes=getattr(net, "classes", None), num_update=trainer.num_update,
                      loss_scale=trainer.loss_scale, dtype=self.state.dtype, time=time.time(),
                      metrics={k: v for k, v in logs.items() if isinstance(v, (int, float))})
        if self.class_names is not None:
            record["class_names"] = self.class_names
        if self.preprocessing is not None:
            record["preprocessing"] = self.preprocessing.validation_settings()
        _atomic_write_text(f"{self.prefix}-{done:04d}.json", json.dumps(record, indent=1))


class ProgressBar(Callback):
    """A tqdm progress bar per epoch on rank 0, with the running loss and top-1."""

    def __init__(self, *, file=None, mininterval: float = 1.0):
        self.file = file
        self.mininterval = mininterval
        self._bar = None

    @rank_zero_only
    def on_epoch_begin(self, epoch, logs):
        from tqdm.auto import tqdm

        self._bar = tqdm(total=self.state.steps_per_epoch, desc=f"epoch {epoch + 1}/{self.state.epochs}",
                         unit="batch", file=self.file or sys.stderr, mininterval=self.mininterval, leave=True)

    @rank_zero_only
    def on_batch_end(self, batch, logs):
        self._bar.update(1)
        self._bar.set_postfix(loss=f"{logs['loss']:.3f}", top1=f"{logs['top1']:.3f}", refresh=False)

    @rank_zero_only
    def on_epoch_end(self, epoch, logs):
        shown = {k: logs[k] for k in ("loss", "top1", "val_loss", "val_top1", "total_ips") if k in logs}
        self._bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()})
        self._bar.close()


class Report(Callback):
    """The reference's JSON report, rewritten atomically after every epoch (valid JSON even if killed).

    ``{"model", "ngpus", "total_duration", "cmd", "metrics": {"train.top1": [...], ..., "val.latency_100": [...]}}``
    with one value per epoch; a resumed run appends to the report it finds. ``plot=True`` also writes the
    curves as a PNG beside it (``<report>.png``).
    """

    def __init__(self, path: str, *, cmd: Optional[List[str]] = None, plot: bool = True):
        self.path = os.fspath(path)
        self.cmd = list(cmd) if cmd is not None else list(sys.argv)
        self.plot = plot
        self._start = 0.0
        self.report: Dict = {}

    @rank_zero_only
    def on_train_begin(self, logs):
        self._start = time.time()
        metrics = {f"{part}.{m}": [] for part in ("train", "val") for m in REPORT_METRICS}
        previous = self._previous()
        if previous:
            for key, values in previous.get("metrics", {}).items():
                metrics[key] = list(values)[: self.state.initial_epoch]
            self._start -= previous.get("total_duration", 0.0)
        self.report = dict(model=getattr(self.state.net, "model_name", type(self.state.net).__name__),
                           ngpus=dist.size() if self.state.ctx.device_type == "gpu" else 0, workers=dist.size(),
                           total_duration=0.0, cmd=self.cmd, metrics=metrics)

    def _previous(self) -> Optional[Dict]:
        if self.state.initial_epoch == 0 or not os.path.isfile(self.path):
            return None
        with open(self.path) as f:
            return json.load(f)

    @rank_zero_only
    def on_epoch_end(self, epoch, logs):
        for key, values in self.report["metrics"].items():
            part, metric = key.split(".", 1)
            values.append(logs.get(metric if part == "train" else f"val_{metric}"))
        self.report["total_duration"] = time.time() - self._start
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        _atomic_write_text(self.path, json.dumps(self.report, indent=1))
        if self.plot:
            self._plot()

    def _plot(self) -> None:
        from matplotlib.figure import Figure  # not pyplot: leaves the user's backend alone

        metrics = self.report["metrics"]
        fig = Figure(figsize=(10, 4))
        ax_loss, ax_acc = fig.subplots(1, 2)
        for part in ("train", "val"):
            for ax, name in ((ax_loss, "loss"), (ax_acc, "top1")):
                values = metrics[f"{part}.{name}"]
                xs = [i + 1 for i, v in enumerate(values) if v is not None]
                if xs:
                    ax.plot(xs, [v for v in values if v is not None], marker="o", label=f"{part} {name}")
        for ax, title in ((ax_loss, "loss"), (ax_acc, "top-1 accuracy")):
            ax.set_xlabel("epoch")
            ax.set_title(title)
            ax.grid(alpha=0.3)
            ax.legend()
        fig.suptitle(self.report["model"])
        fig.tight_layout()
        png = os.path.splitext(self.path)[0] + ".png"
        tmp = f"{png}.tmp{os.getpid()}.png"
        fig.savefig(tmp, dpi=80)
        os.replace(tmp, png)
