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
The record is a :class:`CheckpointRecord`, written by :func:`write_checkpoint_record` and read by
:func:`read_checkpoint_record`; records of every older schema version (resnet_gluon 0.1's) are read too.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import tempfile
import time
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import mxnet as mx
from mxnet import gluon

from .._core.deprecation import deprecated
from .._core.files import PathLike, atomic_write_json

__all__ = ["SCHEMA_VERSION", "CheckpointRecord", "CheckpointFiles", "checkpoint_files", "mid_epoch_checkpoints",
           "prune_mid_epoch_checkpoints", "saved_epochs", "complete_epochs", "latest_checkpoint", "resolve_epoch",
           "read_checkpoint_record", "write_checkpoint_record", "export_checkpoint", "load_network", "params_keys",
           "weights_used", "read_record", "write_record", "network_record"]




def __getattr__(name: str):
    if name == "FORMAT":  # 0.1's name of the record's version
        deprecated(f"{__name__}.FORMAT", f"{__name__}.SCHEMA_VERSION")
        return SCHEMA_VERSION
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


#: The version of the record's layout this release writes (its ``schema_version``): 0, resnet_gluon 0.1 before
#: the ``format`` field; 1, 0.1's ``format`` 1 (adds ``files``, ``layout``, ``recipe``, the dtype fields); 2, 0.2's
#: :class:`CheckpointRecord` (``format`` renamed ``schema_version``). Every older version is read.
SCHEMA_VERSION = 2


@dataclasses.dataclass(frozen=True)
class CheckpointRecord:
    """The checkpoint record ``<prefix>-NNNN.json``: what a checkpoint's files are, and how it was trained.

    Written only by :func:`write_checkpoint_record` and read only by :func:`read_checkpoint_record` (through
    :meth:`from_dict`, which upgrades every older layout), so a missing field has one default, the one given
    here. Fields that are None are left out of the JSON file.
    """

    #: Registry name of the network (:func:`~resnet_gluon.models.registry.get_model`); None: import the symbol file
    #: instead.
    model: Optional[str] = None
    #: Number of classes of the output layer (Gluon's ``classes``).
    classes: Optional[int] = None
    #: Input layout of the network, ``'NCHW'`` or ``'NHWC'``.
    layout: str = "NCHW"
    in_channels: int = 3
    #: Data type of the saved network's weights and graph (float32 for training checkpoints).
    dtype: str = "float32"
    #: Training precision (``fit(dtype=)``); None for a predictor's saved network.
    train_dtype: Optional[str] = None
    #: The checkpoint's files (base names), the record excluded; complete when all exist.
    files: Tuple[str, ...] = ()
    #: Epochs completed (the ``NNNN``) and, for a mid-epoch checkpoint, batches done of the next epoch.
    epoch: int = 0
    step: int = 0
    #: When the record was written (seconds since the epoch, ``time.time()``).
    time: Optional[float] = None
    class_names: Optional[Tuple[str, ...]] = None
    #: :meth:`~resnet_gluon.data.preprocessing.Preprocessing.validation_settings` of the run.
    preprocessing: Optional[Dict[str, Any]] = None
    #: :meth:`~resnet_gluon.train.recipe.Recipe.to_dict` of the run.
    recipe: Optional[Dict[str, Any]] = None
    #: Per-worker batch, workers and batches per optimizer update (global batch = the product).
    batch_size: Optional[int] = None
    workers: Optional[int] = None
    accumulate: Optional[int] = None
    #: Batches per epoch and optimizer updates done (the schedule position).
    steps_per_epoch: Optional[int] = None
    num_update: Optional[int] = None
    loss_scale: Optional[float] = None
    #: The epoch's logs (``loss``, ``top1``, ``val_top1``, ...), numbers only.
    metrics: Dict[str, float] = dataclasses.field(default_factory=dict)
    #: :meth:`~resnet_gluon.train.ema.EMA.record` when ``<prefix>-NNNN-ema.params`` is saved.
    ema: Optional[Dict[str, Any]] = None
    #: Mid-epoch checkpoints: the epoch's metric sums so far, and why the run stopped.
    meter: Optional[Dict[str, Any]] = None
    reason: Optional[str] = None
    #: A predictor's saved network: ``'openvino'`` for an ONNX model, the dtype it was asked for, and which
    #: weights (``'ema'``/``'raw'``) it was made from.
    backend: Optional[str] = None
    requested_dtype: Optional[str] = None
    weights: Optional[str] = None
    #: Fields this release does not know (written by a newer one of the same schema version), kept as read.
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def for_network(cls, net: gluon.Block, **fields) -> "CheckpointRecord":
        """A record of ``net``'s ``model``, ``classes``, ``layout`` and ``in_channels`` (read from the network's
        attributes; ``model`` is the class name of a network that was not built by the registry), plus
        ``fields``."""
        about = dict(model=getattr(net, "model_name", type(net).__name__), classes=getattr(net, "classes", None),
                     layout=getattr(net, "layout", "NCHW"), in_channels=getattr(net, "in_channels", 3))
        return cls(**dict(about, **fields))

    @classmethod
    def from_dict(cls, data: Dict[str, Any], *, files: Optional[CheckpointFiles] = None,
                  source: str = "checkpoint record") -> "CheckpointRecord":
        """The record of a JSON object of any schema version up to :data:`SCHEMA_VERSION`.

        Version 0 (no ``format``) listed no files: they are those of ``files`` (symbol, params and, for a
        training checkpoint, the trainer state); its ``precision`` was the saved dtype and its ``dtype`` the
        training dtype. Records written before gradient accumulation existed did one batch per update.

        Raises
        ------
        ValueError
            When ``data`` is not a JSON object, or was written by a newer schema version (names ``source`` and
            the upgrade to make).
        """
        if not isinstance(data, dict):
            raise ValueError(f"{source} is not a checkpoint record (not a JSON object)")
        data = dict(data)
        version = data.pop("schema_version", data.pop("format", 0))
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ValueError(f"{source} has schema_version {version!r}, newer than this resnet_gluon reads "
                             f"({SCHEMA_VERSION}); upgrade it: pip install --upgrade resnet_gluon")
        if version == 0:
            data = _upgrade_version_0(data, files)
        if "batch_size" in data:
            data.setdefault("accumulate", 1)
        known = {f.name for f in dataclasses.fields(cls)} - {"extra", "schema_version"}
        extra = {k: v for k, v in data.items() if k not in known}
        fields = {k: v for k, v in data.items() if k in known}
        for name in ("files", "class_names"):
            if fields.get(name) is not None:
                fields[name] = tuple(fields[name])
        return cls(**fields, extra=extra, schema_version=version)

    def to_dict(self) -> Dict[str, Any]:
        """The JSON object of the record in the current layout (``schema_version`` :data:`SCHEMA_VERSION`),
        fields that are None left out; :meth:`from_dict` reads it back equal."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("extra", "schema_version")}
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in data.items() if v is not None}
        return dict(self.extra, **data, schema_version=SCHEMA_VERSION)

    def __getitem__(self, key: str) -> Any:
        deprecated(f"record[{key!r}] (records were dicts in 0.1)", f"the attribute record.{key}")
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        """Deprecated: records were dicts in 0.1; use the attributes."""
        deprecated(f"record.get({key!r}) (records were dicts in 0.1)", f"the attribute record.{key}")
        return self.to_dict().get(key, default)


def _upgrade_version_0(data: Dict[str, Any], files: Optional[CheckpointFiles]) -> Dict[str, Any]:
    training = "num_update" in data
    data["train_dtype"] = data.get("dtype") if training else None
    data["dtype"] = data.pop("precision", "float32")
    if files is not None:
        names = [files.symbol, files.params] + ([files.states] if training else [])
        data["files"] = [os.path.basename(n) for n in names]
    return data


def read_checkpoint_record(prefix: PathLike, epoch: int, step: int = 0) -> CheckpointRecord:
    """The record of a checkpoint (of the mid-epoch checkpoint ``step`` with ``step``), of any schema version.

    Raises
    ------
    FileNotFoundError
        When the record does not exist.
    ValueError
        When it is not a JSON object, or was written by a newer resnet_gluon (the message names the upgrade).
    """
    files = checkpoint_files(prefix, epoch, step)
    if not os.path.isfile(files.record):
        raise FileNotFoundError(f"no checkpoint record {files.record!r}")
    with open(files.record) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{files.record!r} is not a checkpoint record ({err})") from None
    return CheckpointRecord.from_dict(data, files=files, source=repr(files.record))


def read_record(prefix: PathLike, epoch: int, step: int = 0) -> Dict[str, Any]:
    """Deprecated: :func:`read_checkpoint_record` (a :class:`CheckpointRecord`); this returns its ``to_dict()``."""
    deprecated(f"{__name__}.read_record", f"{__name__}.read_checkpoint_record (a CheckpointRecord)")
    return read_checkpoint_record(prefix, epoch, step).to_dict()


def _is_complete(prefix: str, epoch: int, step: int = 0) -> bool:
    try:
        record = read_checkpoint_record(prefix, epoch, step)
    except (FileNotFoundError, ValueError):
        return False
    folder = os.path.dirname(prefix)
    return all(os.path.isfile(os.path.join(folder, name)) for name in record.files)


def complete_epochs(prefix: PathLike) -> List[int]:
    """Epochs with a complete checkpoint under ``prefix`` (record present, every file it lists present), sorted."""
    prefix = os.fspath(prefix)
    return [e for e in _epochs_with(prefix, ".json") if _is_complete(prefix, e)]


def latest_checkpoint(prefix: PathLike) -> Optional[int]:
    """The newest epoch with a complete checkpoint under ``prefix`` (None if there is none)."""
    epochs = complete_epochs(prefix)
    return epochs[-1] if epochs else None


def resolve_epoch(prefix: PathLike, epoch: Optional[int] = None) -> Tuple[int, Optional[CheckpointRecord]]:
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
        return epoch, read_checkpoint_record(prefix, epoch)
    ours = bool(_epochs_with(prefix, ".json"))  # resnet_gluon wrote records here: a missing one means incomplete
    if ours or epoch not in saved or not os.path.isfile(files.symbol):
        what = f"checkpoint {files.params!r} is incomplete (a save was interrupted)" if epoch in saved else \
            f"no checkpoint {files.params!r}"
        raise FileNotFoundError(f"{what}; complete epochs under {prefix!r}: {listed}")
    return epoch, None


def network_record(net: gluon.Block) -> Dict[str, Any]:
    """Deprecated: ``CheckpointRecord.for_network(net)``; this returns those four fields as a dict."""
    deprecated(f"{__name__}.network_record", f"{__name__}.CheckpointRecord.for_network")
    record = CheckpointRecord.for_network(net)
    return dict(model=record.model, classes=record.classes, layout=record.layout, in_channels=record.in_channels)


def export_checkpoint(net: gluon.HybridBlock, prefix: PathLike, epoch: int = 0, *,
                      input_shape: Optional[tuple] = None, step: int = 0) -> Tuple[str, str]:
    """Write ``net`` as ``<prefix>-symbol.json`` + ``<prefix>-<epoch:04d>.params`` (the reference's format).

    The files load back with ``gluon.SymbolBlock.imports(symbol, ['data'], params)`` and with
    :func:`~resnet_gluon.models.weights.load_parameters`. Each file is written to a temporary name and renamed.
    No record is written: use :func:`write_checkpoint_record` (or the
    :class:`~resnet_gluon.train.callbacks.Checkpoint` callback) to make a complete checkpoint.

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
    folder = os.path.dirname(os.path.abspath(files.prefix))
    os.makedirs(folder, exist_ok=True)
    # net.export names its files after a prefix: it writes into a private folder beside the checkpoint (so a
    # failed export leaves nothing), then each file is renamed into place (atomic: the same file system)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        exported = checkpoint_files(os.path.join(scratch, "net"), epoch)
        try:
            net.export(exported.prefix, epoch)
        except RuntimeError as err:
            raise RuntimeError(f"cannot export: {err}; run one forward pass after hybridize() or pass "
                               "input_shape=") from err
        os.replace(exported.params, files.params)
        os.replace(exported.symbol, files.symbol)
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


def weights_used(record: Optional[CheckpointRecord], ema: bool = True) -> str:
    """``'ema'`` when a checkpoint's record lists averaged weights (``<prefix>-NNNN-ema.params``) and ``ema`` asks
    for them, else ``'raw'`` (the ``.params`` file)."""
    if isinstance(record, dict):  # 0.1 passed read_record's dict
        record = CheckpointRecord.from_dict(record)
    has_ema = bool(record and record.ema and any(f.endswith("-ema.params") for f in record.files))
    return "ema" if ema and has_ema else "raw"


def write_checkpoint_record(prefix: PathLike, epoch: int, record: CheckpointRecord, *,
                            files: Optional[Sequence[str]] = None, step: int = 0) -> str:
    """Write the record of epoch ``epoch`` (with ``step``: of that mid-epoch checkpoint) last, making the
    checkpoint complete; returns its path. The one writer of records.

    ``epoch``, ``step``, ``time`` and ``files`` (the base names of ``files``; default the symbol and params) are
    filled in here, over the record's own.
    """
    paths = checkpoint_files(prefix, epoch, step)
    names = list(files) if files is not None else [paths.symbol, paths.params]
    record = dataclasses.replace(record, epoch=int(epoch), step=int(step), time=time.time(),
                                 files=tuple(os.path.basename(n) for n in names))
    atomic_write_json(paths.record, record.to_dict())
    return paths.record


def write_record(prefix: PathLike, epoch: int, record: Dict[str, Any], *, states: bool = False,
                 files: Optional[Sequence[str]] = None, step: int = 0) -> str:
    """Deprecated: :func:`write_checkpoint_record` with a :class:`CheckpointRecord`."""
    deprecated(f"{__name__}.write_record", f"{__name__}.write_checkpoint_record (a CheckpointRecord)")
    paths = checkpoint_files(prefix, epoch, step)
    if files is None:
        files = [paths.symbol, paths.params] + ([paths.states] if states else [])
    data = dict(record, schema_version=SCHEMA_VERSION)
    return write_checkpoint_record(prefix, epoch, CheckpointRecord.from_dict(data), files=files, step=step)


def load_network(prefix: PathLike, epoch: Optional[int] = None, *, ctx: Optional[mx.Context] = None,
                 ema: bool = False) -> Tuple[gluon.HybridBlock, int, Optional[CheckpointRecord]]:
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
    known = record or CheckpointRecord()
    if known.dtype == "float32" and known.model in list_models() and known.classes:
        options = dict(classes=known.classes, layout=known.layout)
        if known.in_channels != 3:
            options["in_channels"] = known.in_channels
        net = get_model(known.model, **options)
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
