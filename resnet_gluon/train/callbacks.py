"""Keras-style callbacks for :func:`~resnet_gluon.train.fit.fit`: checkpoints with resume, progress, the JSON report.

Hooks receive a flat ``logs`` dict (see :class:`Callback`). Every side effect (files, progress output) happens
on rank 0 only, through :func:`~resnet_gluon._core.dist.rank_zero_only`; resuming is decided on rank 0 and reaches
every rank by broadcast.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

from ..models import checkpoint
from .._core import dist, runtime
from .._core.dist import rank_zero_only
from .._core.files import atomic_path, atomic_write_json
from ..models.weights import load_parameters
from ..data.preprocessing import Preprocessing
from ..evaluation import ACCURACY_METRICS, SPEED_METRICS
from .recipe import Recipe

__all__ = ["Callback", "Checkpoint", "ProgressBar", "Report", "TensorBoard",
           "REPORT_METRICS", "EMA_METRICS"]

#: The metrics of the reference's JSON report, each prefixed by 'train.' and 'val.'.
REPORT_METRICS = ACCURACY_METRICS + SPEED_METRICS

#: The metrics of the averaged weights (``Recipe.ema_decay``) in the report, as ``val.<metric>_ema``.
EMA_METRICS = ACCURACY_METRICS

latest_checkpoint = checkpoint.latest_checkpoint


class Callback:
    """Base class of ``fit``'s callbacks. ``self.state`` is the running fit's
    :class:`~resnet_gluon.train.fit.FitState` (net, trainer, recipe, epoch, ...), set before ``on_train_begin``.

    Epochs and batches are 0-based. What ``logs`` holds at each hook:

    - ``on_train_begin(logs)``, ``on_epoch_begin(epoch, logs)``, ``on_train_end(logs)``: ``{}``.
    - ``on_batch_end(batch, logs)``: called once the batch's result exists (fit runs at most
      :data:`~resnet_gluon.train.fit.RUN_AHEAD` batches ahead of the device, so a little after the batch was
      taken); ``loss`` and ``top1`` of this worker as last read from the device (every
      ``fit(read_every=...)`` batches; absent before the first read); not called for an empty batch.
    - ``on_epoch_end(epoch, logs)``: the epoch over all workers: ``loss``, ``top1``, ``top5``, ``total_ips``,
      ``num_images``, ``latency_avg``, ``latency_50/90/95/99/100`` (seconds from one batch's result to the
      next's), ``lr``, ``loss_scale``, and with validation data the same with a ``val_`` prefix (there: seconds
      from taking a batch to its result), with ``Recipe.ema_decay`` also ``val_loss_ema``, ``val_top1_ema``,
      ``val_top5_ema`` (the moving average of the weights).
    """

    state = None

    def on_train_begin(self, logs: Dict) -> None:
        """Before the first epoch (also of a resumed run)."""

    def on_epoch_begin(self, epoch: int, logs: Dict) -> None:
        """Before epoch ``epoch`` (0-based)."""

    def on_batch_end(self, batch: int, logs: Dict) -> None:
        """After ``trainer.step`` of batch ``batch`` (0-based, within the epoch); with ``accumulate=k`` the weights
        change on every k-th batch and an epoch's last."""

    def on_train_stopped(self, epoch: int, step: int, logs: Dict) -> None:
        """``fit`` stopped on request (a signal, ``max_run_time``) after ``step`` batches of epoch ``epoch``
        (0-based), on every worker; ``logs['meter']`` is the epoch's metric state so far and ``logs['reason']``
        says why. Flush what you hold. ``on_train_end`` follows."""

    def on_epoch_end(self, epoch: int, logs: Dict) -> None:
        """After epoch ``epoch`` (0-based) and its validation."""

    def on_train_end(self, logs: Dict) -> None:
        """After the last epoch, or when training stopped early."""


class Checkpoint(Callback):
    """Write a checkpoint after every ``period`` epochs and resume from the newest complete one.

    Files (``NNNN`` = epochs completed, see :mod:`resnet_gluon.models.checkpoint`): ``<prefix>-symbol.json`` and
    ``<prefix>-NNNN.params`` (the reference's format), ``<prefix>-NNNN.states`` (momentum, schedule position,
    loss scale), with ``Recipe.ema_decay`` the averaged weights ``<prefix>-NNNN-ema.params`` (the record's ``ema``:
    decay, warm-up, update count; resumed exactly, or started from the resumed weights if the checkpoint has
    none) and the record ``<prefix>-NNNN.json`` (model, classes, class names, layout, dtype,
    preprocessing, recipe, batch size, workers, accumulate, schedule position, loss scale, metrics), written last.

    Resuming is decided on rank 0, which reads the files and broadcasts the epoch, the parameters and the
    trainer state, so workers that cannot see the prefix resume identically; what stops rank 0 there (a folder it
    cannot write, an unreadable record) stops every rank with that reason. A run whose recipe differs
    (epochs, lr, schedule, batch size, workers, accumulate) continues from the saved epoch under the new
    settings, its schedule rebuilt for them, saying so in one line (crop sizes included); another model, class
    count, layout or optimizer (its state would not fit) is refused.

    Parameters
    ----------
    prefix : str
        Path prefix, e.g. ``'runs/model'``.
    period : int
        Save every ``period`` epochs (and after the last).
    resume : bool
        Continue from the newest complete checkpoint under ``prefix``, if any.
    class_names : sequence of str, optional
        Class names in label order, recorded for :class:`~resnet_gluon.deploy.predictor.Predictor` (e.g.
        ``resnet_gluon.data.recordio.load_classes(data_root)``).
    preprocessing : Preprocessing, optional
        The pipelines' settings; the validation part (crop, resize, mean/std) is recorded for the predictor.
        Default: that of ``fit``'s pipelines when they carry one (those of :mod:`resnet_gluon.data.pipelines` do):
        the validation pipeline's, with the training pipeline's training crop.
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
        found, error = None, None
        if dist.is_rank_zero():
            try:
                self._check_folder()
                found = self._newest() if self.resume else None
            except (OSError, ValueError) as err:  # sent to every rank, so each stops with the reason
                error = err
        found, error = dist.broadcast_object((found, error), name="resnet_gluon_resume")
        if error is not None:
            dist.barrier("resnet_gluon_resume_error")  # every rank holds the error before rank 0 exits with it
            if dist.is_rank_zero():
                raise error
            kind = type(error) if type(error) in (PermissionError, FileNotFoundError, ValueError) else RuntimeError
            raise kind(f"rank 0 cannot use the checkpoint prefix {self.prefix!r}: {error}") from None
        if found is not None and (found[0], found[1]) > (self.state.initial_epoch, self.state.initial_step):
            self._load(*found)

    def _newest(self):
        """``(epoch, step, record)`` of the newest complete checkpoint, epoch-end (step 0) or mid-epoch, or None."""
        epoch = checkpoint.latest_checkpoint(self.prefix)
        newest = (epoch, 0) if epoch is not None else None
        mid = checkpoint.mid_epoch_checkpoints(self.prefix)
        if mid and (newest is None or mid[-1] > newest):
            newest = mid[-1]
        return None if newest is None else (*newest, checkpoint.read_checkpoint_record(self.prefix, *newest))

    def _check_folder(self) -> None:
        folder = os.path.dirname(os.path.abspath(self.prefix))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:
            raise PermissionError(f"cannot create the checkpoint folder {folder!r}: {err}") from None
        if not os.access(folder, os.W_OK):
            raise PermissionError(f"checkpoint folder {folder!r} is not writable; choose another model prefix")

    def _load(self, epoch: int, step: int, record: checkpoint.CheckpointRecord) -> None:
        net, trainer, state = self.state.net, self.state.trainer, self.state
        files = checkpoint.checkpoint_files(self.prefix, epoch, step)
        name = files.record[:-len(".json")]
        mine = checkpoint.CheckpointRecord.for_network(net)
        for key in ("model", "classes", "layout", "in_channels"):
            if getattr(record, key) != getattr(mine, key):
                raise ValueError(f"cannot resume from {name}: it was trained as {key}={getattr(record, key)!r} but "
                                 f"this run has {key}={getattr(mine, key)!r}; use another --model-prefix or remove "
                                 "the old checkpoints")
        self._check_optimizer_state(record, name)
        changes = self._changes(record, epoch)
        if step and record.steps_per_epoch not in (None, state.steps_per_epoch):
            changes = ", ".join(filter(None, [changes, f"steps_per_epoch {record.steps_per_epoch} -> "
                                                       f"{state.steps_per_epoch}"]))
        if step and changes:  # a mid-epoch position means nothing under another batch size, worker count or data
            raise ValueError(f"cannot resume mid-epoch from {name} with changed settings ({changes}): rerun with "
                             "the settings it was saved with, or delete its files to resume from the last epoch end")
        ema_line = self._load_weights(files, record)
        trainer.broadcast_states(root_rank=0)  # other ranks get rank 0's position with the states
        if state.ema is not None:
            state.ema.broadcast(root_rank=0)
        if step:
            trainer.set_batch_position(epoch, step)
        state.initial_epoch, state.initial_step = epoch, step
        state.resume_meter = record.meter if step else None
        self.resumed_from = epoch
        if dist.is_rank_zero():
            at = f"epoch {epoch + 1}, step {step}" if step else f"epoch {epoch}"
            print(f"resumed from {files.params} ({at}, update {trainer.num_update})", file=sys.stderr)
            if ema_line:
                print(ema_line, file=sys.stderr)
            if changes:
                print(f"resuming with changed settings: {changes}; the schedule continues from epoch {epoch} "
                      f"of {state.epochs} under the new settings", file=sys.stderr)
            if epoch >= state.epochs and not step:
                print(f"all {state.epochs} epochs of this run are done: nothing to train (more epochs: "
                      "epochs= / --num-epochs)", file=sys.stderr)

    @property
    def _recorded_preprocessing(self) -> Optional[Preprocessing]:
        """What the records hold: the ``preprocessing`` given, else that of ``fit``'s pipelines (``FitState``)."""
        return self.preprocessing or getattr(self.state, "preprocessing", None)

    def _check_optimizer_state(self, record: checkpoint.CheckpointRecord, name: str) -> None:
        """Refuse a resume whose optimizer state cannot carry over: another optimizer (the states of LAMB are not
        SGD's momentum), which is also what a rerun without the run's ``--recipe`` asks for."""
        saved = Recipe.from_dict(record.recipe) if record.recipe else None
        wanted = self.state.recipe
        if saved is not None and saved.optimizer != wanted.optimizer:
            same = (f"--optimizer {saved.optimizer} / optimizer={saved.optimizer!r}" if saved.name == wanted.name
                    else f"--recipe {saved.name} / recipe=Recipe.preset({saved.name!r})")
            raise ValueError(f"cannot resume from {name}: it was trained with optimizer {saved.optimizer!r} (recipe "
                             f"{saved.name!r}) and this run asks for {wanted.optimizer!r} (recipe {wanted.name!r}), "
                             f"whose state it cannot continue; resume with {same}, or start a new checkpoint "
                             "prefix")

    def _load_weights(self, files: checkpoint.CheckpointFiles, record: checkpoint.CheckpointRecord) -> Optional[str]:
        """On rank 0: the weights, the trainer state and the weight average (the averages are loaded into the
        network through the same checks, captured, then the raw weights loaded over them); a line to print about
        the average, if any."""
        state, ema = self.state, self.state.ema
        if not dist.is_rank_zero():
            return None
        saved = record.ema if checkpoint.weights_used(record) == "ema" else None
        if ema is not None and saved:
            load_parameters(state.net, files.ema, ctx=state.ctx)
            ema.reset(num_updates=saved["num_updates"])
        load_parameters(state.net, files.params, ctx=state.ctx)
        state.trainer.load_states(files.states, epoch=None if files.step else files.epoch)
        if ema is not None and not saved:
            ema.reset()
            return "the checkpoint has no weight average: it starts from the resumed weights"
        return None

    def _changes(self, record: checkpoint.CheckpointRecord, epoch: int) -> str:
        state = self.state
        old = dict(Recipe.from_dict(record.recipe).to_dict()) if record.recipe else {}
        old.update({k: getattr(record, k) for k in ("batch_size", "workers", "accumulate")
                    if getattr(record, k) is not None})
        new = dict(state.recipe.to_dict(), batch_size=state.batch_size, workers=state.trainer.workers,
                   accumulate=state.trainer.accumulate)
        preprocessing = self._recorded_preprocessing
        if record.preprocessing and preprocessing is not None:  # the crops: "train_crop 24 -> 32"
            for settings, values in ((record.preprocessing, old), (preprocessing.validation_settings(), new)):
                values.update(train_crop=settings.get("train_image_size") or settings["image_size"],
                              val_crop=settings["image_size"], val_resize=settings["resize"])
        # omitted describes the recipe (its list can grow with a release), it is not a setting of the run
        return ", ".join(f"{k} {old[k]} -> {new[k]}" for k in old
                         if k in new and k != "omitted" and old[k] != new[k])

    def on_epoch_end(self, epoch, logs):
        done = epoch + 1
        if done % self.period and done != self.state.epochs:
            return
        self._save(done, logs)

    def on_train_stopped(self, epoch, step, logs):
        self._save(epoch, logs, step=step)

    @rank_zero_only
    def _save(self, done: int, logs: Dict, step: int = 0) -> None:
        state, trainer = self.state, self.state.trainer
        preprocessing = self._recorded_preprocessing
        files = checkpoint.checkpoint_files(self.prefix, done, step)
        checkpoint.export_checkpoint(state.net, self.prefix, done, step=step)
        trainer.save_states(files.states)
        written = [files.symbol, files.params, files.states]
        if state.ema is not None:
            state.ema.save(files.ema, checkpoint.params_keys(state.net))
            written.append(files.ema)
        record = checkpoint.CheckpointRecord.for_network(
            state.net, dtype="float32", train_dtype=state.dtype, recipe=state.recipe.to_dict(),
            batch_size=state.batch_size, workers=trainer.workers, accumulate=trainer.accumulate,
            steps_per_epoch=state.steps_per_epoch, num_update=trainer.num_update, loss_scale=trainer.loss_scale,
            metrics={k: v for k, v in logs.items() if isinstance(v, (int, float)) and k != "meter"},
            ema=state.ema.record() if state.ema is not None else None,
            # the epoch's metric sums so far, so that the resumed epoch reports the whole epoch
            meter=logs["meter"] if step else None, reason=logs.get("reason") if step else None,
            class_names=tuple(self.class_names) if self.class_names is not None else None,
            preprocessing=preprocessing.validation_settings() if preprocessing is not None else None)
        checkpoint.write_checkpoint_record(self.prefix, done, record, files=written, step=step)
        # a mid-epoch checkpoint is kept until a newer complete one exists, then pruned
        checkpoint.prune_mid_epoch_checkpoints(self.prefix, before=(done, step))


class ProgressBar(Callback):
    """A tqdm progress bar per epoch on rank 0, with the running loss and top-1.

    It counts batches whose results exist (so its rate and ETA are the device's), and shows loss and top-1
    only once they have been read from the device (every ``fit(read_every=...)`` batches).
    """

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
        if "loss" in logs:
            self._bar.set_postfix(loss=f"{logs['loss']:.3f}", top1=f"{logs['top1']:.3f}", refresh=False)

    @rank_zero_only
    def on_epoch_end(self, epoch, logs):
        keys = ("loss", "top1", "val_loss", "val_top1", "val_top1_ema", "total_ips")
        shown = {k: logs[k] for k in keys if k in logs}
        self._bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()})
        self._bar.close()

    @rank_zero_only
    def on_train_stopped(self, epoch, step, logs):
        self._bar.set_postfix_str(f"stopped: {logs.get('reason')}")
        self._bar.close()


class Report(Callback):
    """The reference's JSON report, rewritten atomically after every epoch (valid JSON even if killed).

    ``{"model", "ngpus", "workers", "dtype", "cpu_isa", "total_duration", "cmd", "metrics": {"train.top1": [...],
    ..., "val.latency_100": [...]}}`` with one value per epoch (with ``Recipe.ema_decay`` also ``val.top1_ema``,
    ``val.top5_ema``, ``val.loss_ema``: the averaged weights) (``cpu_isa``: oneDNN's instruction set on a CPU,
    :func:`resnet_gluon._core.runtime.onednn_isa`); a resumed run appends to the report it finds. ``plot=True`` also writes the
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
        if self.state.ema is not None:  # the averaged weights' validation (fit's val_top1_ema, ...)
            metrics.update({f"val.{m}_ema": [] for m in EMA_METRICS})
        previous = self._previous()
        if previous:
            for key, values in previous.get("metrics", {}).items():
                metrics[key] = list(values)[: self.state.initial_epoch]
            self._start -= previous.get("total_duration", 0.0)
        on_cpu = self.state.ctx.device_type == "cpu"
        self.report = dict(model=getattr(self.state.net, "model_name", type(self.state.net).__name__),
                           ngpus=0 if on_cpu else dist.size(), workers=dist.size(), dtype=self.state.dtype,
                           cpu_isa=runtime.onednn_isa() if on_cpu else None, total_duration=0.0, cmd=self.cmd,
                           metrics=metrics)

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
        atomic_write_json(self.path, self.report)
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
        with atomic_path(os.path.splitext(self.path)[0] + ".png") as tmp:
            fig.savefig(tmp, dpi=80)


class TensorBoard(Callback):
    """TensorBoard event files on rank 0 (``tensorboardX``): per step and per epoch.

    Per step (x axis: batches so far; the updates times ``accumulate``): ``step/loss`` and ``step/top1`` (as last read from the device, see
    ``fit(read_every=...)``), ``step/lr`` and ``step/images_per_sec`` (this worker's images / host time since the
    previous step, times the workers). Per epoch (x axis: epochs completed): every numeric value of the epoch's
    logs as ``epoch/<key>`` (``loss``, ``top1``, ``val_top1``, ``total_ips``, ``lr``, ...).

    Parameters
    ----------
    logdir : str
        Folder of the event files (``tensorboard --logdir <logdir>``).
    every : int
        Steps between per-step records.
    """

    def __init__(self, logdir: str, *, every: int = 1):
        self.logdir = os.fspath(logdir)
        self.every = max(1, every)
        self._writer = None
        self._last = 0.0

    @rank_zero_only
    def on_train_begin(self, logs):
        """Open the event file writer in ``logdir``.

        Raises
        ------
        ImportError
            Without ``tensorboardX`` (the message names the install step).
        """
        try:
            from tensorboardX import SummaryWriter
        except ImportError as err:
            raise ImportError(f"the TensorBoard callback needs tensorboardX ({err}): pip install tensorboardX") from err
        self._writer = SummaryWriter(self.logdir)
        self._last = time.perf_counter()

    @rank_zero_only
    def on_epoch_begin(self, epoch, logs):
        self._last = time.perf_counter()

    @rank_zero_only
    def on_batch_end(self, batch, logs):
        now, state = time.perf_counter(), self.state
        step = state.epoch * state.steps_per_epoch + batch + 1
        if step % self.every == 0:
            ips = state.batch_size * state.trainer.workers / max(now - self._last, 1e-9)
            values = dict(loss=logs.get("loss"), top1=logs.get("top1"), lr=state.trainer.learning_rate,
                          images_per_sec=ips)
            for key, value in values.items():
                if value is not None:
                    self._writer.add_scalar(f"step/{key}", value, step)
        self._last = now

    @rank_zero_only
    def on_epoch_end(self, epoch, logs):
        for key, value in logs.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._writer.add_scalar(f"epoch/{key}", value, epoch + 1)
        self._writer.flush()

    @rank_zero_only
    def on_train_stopped(self, epoch, step, logs):
        self._writer.flush()

    @rank_zero_only
    def on_train_end(self, logs):
        self._writer.close()
