"""The checkpoint format: its files, one record, one completeness rule, saving and loading.

A checkpoint of epoch ``E`` under ``prefix`` is the reference's pair ``<prefix>-symbol.json`` +
``<prefix>-EEEE.params`` (loadable with ``gluon.SymbolBlock.imports`` or
:func:`~resnet_gluon.models.weights.load_parameters`), for training runs the trainer state ``<prefix>-EEEE.states``,
and the record ``<prefix>-EEEE.json``, written
last; with weight averaging (``Recipe.ema_decay``) also ``<prefix>-EEEE-ema.params``, the averaged weights
keyed as the ``.params`` file is, the record's ``ema`` field giving its decay and update count. The record says
what the files are: model, classes, class names, layout, dtype, the validation
preprocessing, the recipe, the global batch (``batch_size`` x ``workers`` x ``accumulate``, batches per optimizer
update), ``steps_per_epoch`` (batches) and the schedule position ``num_update`` (updates), the loss scale, the
metrics, and the list of files.
The weights are float32 whatever the training dtype (AMP keeps float32 master weights), but the symbol of a
float16-AMP run holds float16 casts that only a GPU runs: on a CPU load such a checkpoint with
:func:`load_network` (which rebuilds the model from the record) rather than ``SymbolBlock.imports``.

**Completeness.** A checkpoint is complete when its record exists and every file the record lists exists.
Each file is written atomically, the record last, so a run killed mid-save leaves at most an incomplete
checkpoint, which resuming, :class:`~resnet_gluon.deploy.predictor.Predictor` and ``train --mode val`` all skip.
Records written before the ``format`` field (resnet_gluon 0.1) are read too.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import time
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import mxnet as mx
from mxnet import gluon

from .._core.files import atomic_write_json

__all__ = ["FORMAT", "CheckpointFiles", "checkpoint_files", "mid_epoch_checkpoints", "prune_mid_epoch_checkpoints", "saved_epochs", "complete_epochs", "latest_checkpoint",
           "resolve_epoch", "read_record", "network_record", "export_checkpoint", "write_record", "load_network",
           "params_keys", "weights_used"]

PathLike = Union[str, os.PathLike]

#: Version of the record's layout; 1 adds ``format``, ``files``, ``layout``, ``recipe`` and the dtype fields.
FORMAT = 1


@dataclasses.dataclass(frozen=True)
class CheckpointFiles:
    """The file names of epoch ``epoch`` under ``prefix``."""

    prefix: str
    epoch: int
    #: Batches of epoch ``epoch + 1`` done, for a mid-epoch checkpoint (``<prefix>-NNNN-SSSSSS.*``); 0: epoch end.
    step: int = 0

    @property
    def _stem(self) -> str:
        return f"{self.prefix}-{self.epoch:04d}" + (f"-{self.step:06d}" if self.step else "")

    @property
    def symbol(self) -> str:
        """The network's graph, ``<prefix>-symbol.json``, one per prefix (as the reference's ``HybridBlock.export``)."""
        return f"{self.prefix}-symbol.json"

    @property
    def params(self) -> str:
        """The weights, ``<prefix>-EEEE.params`` (``-EEEE-SSSSSS`` mid-epoch), keyed as :func:`params_keys` says."""
        return f"{self._stem}.params"

    @property
    def ema(self) -> str:
        """The exponential moving average of the weights (:mod:`resnet_gluon.train.ema`), keyed as :attr:`params`."""
        return f"{self._stem}-ema.params"

    @property
    def states(self) -> str:
        """The trainer state of a training run (momentum, update count, loss scale), ``<prefix>-EEEE.states``."""
        return f"{self._stem}.states"

    @property
    def record(self) -> str:
        """The record, ``<prefix>-EEEE.json``: written last, it says what the files are and lists them."""
        return f"{self._stem}.json"

    @property
    def onnx(self) -> str:
        """The ONNX model of an OpenVINO predictor's checkpoint (``Predictor.save`` with ``backend='openvino'``)."""
        return f"{self._stem}.onnx"


def checkpoint_files(prefix: PathLike, epoch: int, step: int = 0) -> CheckpointFiles:
    """The files of epoch ``epoch`` (``NNNN`` = epochs completed) under ``prefix``; with ``step``, of the
    mid-epoch checkpoint after ``step`` batches of the next epoch (``NNNN-SSSSSS``)."""
    return CheckpointFiles(os.fspath(prefix), int(epoch), int(step))


def _mid_epoch_files(prefix: str) -> Dict[Tuple[int, int], List[str]]:
    """Every file of a mid-epoch checkpoint under ``prefix``, complete or not, by ``(epoch, step)``."""
    found: Dict[Tuple[int, int], List[str]] = {}
    for path in glob.glob(glob.escape(prefix) + "-[0-9][0-9][0-9][0-9]-[0-9]*.*"):
        match = re.fullmatch(re.escape(prefix) + r"-(\d{4})-(\d{6,})(-ema)?\.(json|params|states)", path)
        if match:
            found.setdefault((int(match.group(1)), int(match.group(2))), []).append(path)
    return found


def mid_epoch_checkpoints(prefix: PathLike) -> List[Tuple[int, int]]:
    """``(epoch, step)`` of the complete mid-epoch checkpoints under ``prefix`` (written when a run stopped
    part-way through epoch ``epoch + 1``, after ``step`` batches), oldest first. :func:`latest_checkpoint` and
    :func:`resolve_epoch` never return them: they are not an epoch's result."""
    prefix = os.fspath(prefix)
    return sorted(key for key in _mid_epoch_files(prefix) if _is_complete(prefix, *key))


def prune_mid_epoch_checkpoints(prefix: PathLike, *, before: Tuple[int, int]) -> List[Tuple[int, int]]:
    """Delete the mid-epoch checkpoints older than ``before`` (an ``(epoch, step)``; ``(epoch, 0)`` for an
    epoch-end checkpoint), complete or left incomplete by an interrupted save — each record first, so that a prune
    cut short leaves no complete-looking checkpoint. Returns what was deleted."""
    pruned = []
    for key, paths in sorted(_mid_epoch_files(os.fspath(prefix)).items()):
        if key < tuple(before):
            for path in sorted(paths, key=lambda p: not p.endswith(".json")):
                os.remove(path)
            pruned.append(key)
    return pruned


def _epochs_with(prefix: str, suffix: str) -> List[int]:
    pattern = glob.escape(prefix) + "-[0-9][0-9][0-9][0-9]" + suffix
    found = (re.search(r"-(\d{4})" + re.escape(suffix) + "$", p) for p in glob.glob(pattern))
    return sorted(int(m.group(1)) for m in found if m)


def saved_epochs(prefix: PathLike) -> List[int]:
    """Epochs with a ``.params`` file under ``prefix``, complete or not, sorted."""
    return _epochs_with(os.fspath(prefix), ".params")


def _upgrade(record: Dict[str, Any], files: CheckpointFiles) -> Dict[str, Any]:
    """A record written before ``format`` 1: ``precision`` was the saved network's dtype (Predictor.save) and
    ``dtype`` the training precision (Checkpoint), which also wrote ``.states`` and ``num_update``."""
    record = dict(record)
    training = "num_update" in record
    record["train_dtype"] = record.get("dtype") if training else None
    record["dtype"] = record.pop("precision", "float32")
    names = [files.symbol, files.params] + ([files.states] if training else [])
    record["files"] = [os.path.basename(n) for n in names]
    record.setdefault("layout", "NCHW")
    record["format"] = 0
    return record


def read_record(prefix: PathLike, epoch: int, step: int = 0) -> Dict[str, Any]:
    """The record of a checkpoint, in the current layout (older records are upgraded when read).

    Raises
    ------
    FileNotFoundError
        When the record does not exist.
    ValueError
        When it is not a JSON object.
    """
    files = checkpoint_files(prefix, epoch, step)
    if not os.path.isfile(files.record):
        raise FileNotFoundError(f"no checkpoint record {files.record!r}")
    with open(files.record) as f:
        try:
            record = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{files.record!r} is not a checkpoint record ({err})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{files.record!r} is not a checkpoint record (not a JSON object)")
    return record if "format" in record else _upgrade(record, files)


def _is_complete(prefix: str, epoch: int, step: int = 0) -> bool:
    try:
        record = read_record(prefix, epoch, step)
    except (FileNotFoundError, ValueError):
        return False
    folder = os.path.dirname(prefix)
    return all(os.path.isfile(os.path.join(folder, name)) for name in record.get("files", ()))


def complete_epochs(prefix: PathLike) -> List[int]:
    """Epochs with a complete checkpoint under ``prefix`` (record present, every file it lists present), sorted."""
    prefix = os.fspath(prefix)
    return [e for e in _epochs_with(prefix, ".json") if _is_complete(prefix, e)]


def latest_checkpoint(prefix: PathLike) -> Optional[int]:
    """The newest epoch with a complete checkpoint under ``prefix`` (None if there is none)."""
    epochs = complete_epochs(prefix)
    return epochs[-1] if epochs else None


def resolve_epoch(prefix: PathLike, epoch: Optional[int] = None) -> Tuple[int, Optional[Dict[str, Any]]]:
    """The checkpoint to load for inference or validation, and its record.

    ``epoch=None`` takes the newest complete checkpoint. A named epoch must be complete, except under a prefix
    without any record (the reference's own checkpoints: a plain ``symbol.json`` + ``.params`` pair), where it
    is returned with ``None`` as its record.

    Raises
    ------
    FileNotFoundError
        No checkpoint, or the named epoch is missing or incomplete (the message lists the complete ones).
    """
    prefix = os.fspath(prefix)
    complete, saved = complete_epochs(prefix), saved_epochs(prefix)
    listed = ", ".join(map(str, complete)) or "none"
    if epoch is None:
        if complete:
            epoch = complete[-1]
        elif saved:
            raise FileNotFoundError(
                f"no complete checkpoint under {prefix!r}: {checkpoint_files(prefix, saved[-1]).params!r} has no "
                "record beside it (an interrupted save, or a checkpoint not written by resnet_gluon); name its "
                "epoch to load it as a plain symbol + params pair")
        elif _epochs_with(prefix, ".json"):  # records whose files are missing (e.g. an OpenVINO predictor's)
            record = checkpoint_files(prefix, _epochs_with(prefix, ".json")[-1]).record
            raise FileNotFoundError(f"no complete checkpoint under {prefix!r}: {record!r} lists files that are "
                                    "missing (an interrupted save, or files moved away)")
        else:
            raise FileNotFoundError(f"no checkpoint '{prefix}-NNNN.params'; train first, or check the model prefix")
    files = checkpoint_files(prefix, epoch)
    if epoch in complete:
        return epoch, read_record(prefix, epoch)
    ours = bool(_epochs_with(prefix, ".json"))  # resnet_gluon wrote records here: a missing one means incomplete
    if ours or epoch not in saved or not os.path.isfile(files.symbol):
        what = f"checkpoint {files.params!r} is incomplete (a save was interrupted)" if epoch in saved else \
            f"no checkpoint {files.params!r}"
        raise FileNotFoundError(f"{what}; complete epochs under {prefix!r}: {listed}")
    return epoch, None


def network_record(net: gluon.Block) -> Dict[str, Any]:
    """What the record says about a network: ``model``, ``classes``, ``layout``, ``in_channels``."""
    return dict(model=getattr(net, "model_name", type(net).__name__), classes=getattr(net, "classes", None),
                layout=getattr(net, "layout", "NCHW"), in_channels=getattr(net, "in_channels", 3))


def export_checkpoint(net: gluon.HybridBlock, prefix: PathLike, epoch: int = 0, *,
                      input_shape: Optional[tuple] = None, step: int = 0) -> Tuple[str, str]:
    """Write ``net`` as ``<prefix>-symbol.json`` + ``<prefix>-<epoch:04d>.params`` (the reference's format).

    The files load back with ``gluon.SymbolBlock.imports(symbol, ['data'], params)`` and with
    :func:`~resnet_gluon.models.weights.load_parameters`. Each file is written to a temporary name and renamed.
    No record is written: use :func:`write_record` (or the :class:`~resnet_gluon.train.callbacks.Checkpoint`
    callback) to make a
    complete checkpoint.

    Parameters
    ----------
    net : HybridBlock
        An initialised network. If it has not run forward since it was hybridized, ``input_shape`` is required.
    prefix : str or PathLike
        Path prefix of the files.
    epoch : int
        Epoch number in the params file name.
    input_shape : tuple, optional
        Shape of a dummy float32 batch in the network's layout, e.g. ``(1, 3, 224, 224)``, to run one forward
        pass first.
    step : int
        For a mid-epoch checkpoint: batches done of the epoch after ``epoch`` (``<prefix>-NNNN-SSSSSS.params``).

    Returns
    -------
    tuple of str
        The symbol file and the params file.

    Raises
    ------
    RuntimeError
        When the network has no graph to export yet (no forward pass since ``hybridize`` and no ``input_shape``).
    """
    if not getattr(net, "_active", False):  # hybridize() again would drop the cached graph
        net.hybridize()
    if input_shape is not None:
        ctx = next(iter(net.collect_params().values())).list_ctx()[0]
        net(mx.nd.zeros(input_shape, ctx=ctx))
    files = checkpoint_files(prefix, epoch, step)
    tmp = checkpoint_files(f"{files.prefix}.tmp{os.getpid()}", epoch)
    os.makedirs(os.path.dirname(os.path.abspath(files.prefix)), exist_ok=True)
    try:
        net.export(tmp.prefix, epoch)
        os.replace(tmp.params, files.params)
        os.replace(tmp.symbol, files.symbol)
    except RuntimeError as err:
        raise RuntimeError(f"cannot export: {err}; run one forward pass after hybridize() or pass "
                           "input_shape=") from err
    finally:
        for leftover in (tmp.params, tmp.symbol):
            if os.path.exists(leftover):
                os.remove(leftover)
    return files.symbol, files.params


def params_keys(net: gluon.HybridBlock) -> Dict[str, str]:
    """The key of each parameter of ``net`` in its exported ``.params`` file, by parameter name: ``'aux:<name>'``
    for the graph's auxiliary states (BatchNorm's running statistics), else ``'arg:<name>'``, as
    ``HybridBlock.export`` writes them (MXNet 1.9).

    Raises
    ------
    RuntimeError
        When the network has no graph yet (no forward pass since ``hybridize``).
    """
    graph = getattr(net, "_cached_graph", None)
    if not graph:
        raise RuntimeError("the network has no graph yet: run one forward pass after hybridize()")
    aux = set(graph[1].list_auxiliary_states())
    return {name: ("aux:" if name in aux else "arg:") + name for name in net.collect_params()}


def weights_used(record: Optional[Dict[str, Any]], ema: bool = True) -> str:
    """``'ema'`` when a checkpoint's record lists averaged weights (``<prefix>-NNNN-ema.params``) and ``ema`` asks
    for them, else ``'raw'`` (the ``.params`` file)."""
    has_ema = bool(record and record.get("ema") and any(f.endswith("-ema.params") for f in record.get("files", ())))
    return "ema" if ema and has_ema else "raw"


def write_record(prefix: PathLike, epoch: int, record: Dict[str, Any], *, states: bool = False,
                 files: Optional[Sequence[str]] = None, step: int = 0) -> str:
    """Write the record of epoch ``epoch`` (with ``step``: of that mid-epoch checkpoint) last, making the
    checkpoint complete; returns its path.

    ``record`` holds the fields described in the module docstring; ``format``, ``epoch``, ``step``, ``time`` and
    ``files`` (symbol, params and, with ``states``, the trainer state; or the paths given as ``files``) are filled
    in here.
    """
    paths = checkpoint_files(prefix, epoch, step)
    names = list(files) if files is not None else [paths.symbol, paths.params] + ([paths.states] if states else [])
    full = dict(record, format=FORMAT, epoch=int(epoch), step=int(step), time=time.time(),
                files=[os.path.basename(n) for n in names])
    atomic_write_json(paths.record, full)
    return paths.record


def load_network(prefix: PathLike, epoch: Optional[int] = None, *, ctx: Optional[mx.Context] = None,
                 ema: bool = False) -> Tuple[gluon.HybridBlock, int, Optional[Dict[str, Any]]]:
    """The network of a checkpoint on ``ctx``: ``(net, epoch, record)``.

    With ``ema``, the averaged weights (``<prefix>-NNNN-ema.params``) where the checkpoint has them
    (:func:`weights_used` says which were loaded); otherwise, and by default, the raw ``.params``.

    A float32 checkpoint of a registered model is rebuilt with :func:`~resnet_gluon.models.registry.get_model`
    (the recorded classes, layout and input channels) and its weights loaded by name and shape; anything else (INT8,
    bfloat16, foreign checkpoints) is imported as a ``SymbolBlock`` from the symbol file.

    Raises
    ------
    FileNotFoundError
        See :func:`resolve_epoch`.
    ValueError
        When the files do not load (names the file and MXNet's reason).
    """
    from .registry import get_model, list_models
    from .weights import load_parameters

    epoch, record = resolve_epoch(prefix, epoch)
    files = checkpoint_files(prefix, epoch)
    params = files.ema if weights_used(record, ema) == "ema" else files.params
    ctx = ctx or mx.cpu()
    record_ = record or {}
    if record_.get("dtype", "float32") == "float32" and record_.get("model") in list_models() and record_.get("classes"):
        options = dict(classes=record_["classes"], layout=record_.get("layout", "NCHW"))
        if record_.get("in_channels", 3) != 3:
            options["in_channels"] = record_["in_channels"]
        net = get_model(record_["model"], **options)
        load_parameters(net, params, ctx=ctx)
        return net, epoch, record
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            net = gluon.SymbolBlock.imports(files.symbol, ["data"], params, ctx=ctx)
        except mx.MXNetError as err:
            raise ValueError(f"cannot load {files.symbol!r} with {params!r}: "
                             f"{str(err).splitlines()[0]}") from None
    return net, epoch, record
