"""Inference: a :class:`Predictor` from a checkpoint, in float32, float16, bfloat16 or INT8.

- :class:`Predictor` runs a trained network on images (decoded and preprocessed by
  :mod:`resnet_gluon.data.preprocessing` exactly as the validation pipelines do) and returns the top-k classes with
  their probabilities; :meth:`Predictor.from_checkpoint` loads a complete checkpoint
  (:mod:`resnet_gluon.models.checkpoint`) or the reference's own ``symbol.json`` + ``.params`` pair.
- Precisions (``dtype``, see :data:`resnet_gluon._core.amp.DTYPE_TABLE`): ``'float32'``; ``'bfloat16'`` (MXNet AMP's
  conversion of the hybridized network; CPUs with AVX-512); ``'float16'`` (GPUs); ``'int8'``
  (:mod:`resnet_gluon.deploy.quantization`). :meth:`Predictor.save` writes a converted network as a checkpoint that
  :meth:`Predictor.from_checkpoint` loads again; :meth:`Predictor.export_onnx` writes ONNX
  (:mod:`resnet_gluon.deploy.export`).
- Engines (``backend``): ``'mxnet'`` (the default) or ``'openvino'`` (:mod:`resnet_gluon.deploy.openvino`:
  the exported ONNX model run by OpenVINO in float32, bfloat16, its own choice 'auto', or INT8).

Nothing here imports Horovod or DALI.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import mxnet as mx
import numpy as np
from mxnet import gluon

from .._core import amp as _amp
from .._core.deprecation import deprecated, renamed_argument
from ..models import checkpoint
from .._core.files import PathLike
from .._core.runtime import place_parameters
from .export import export_onnx, onnx_logits
from ..data.preprocessing import ImageLike, Preprocessing, load_image, preprocess
from .quantization import calibration_batches, quantize

# load_image ... onnx_logits: their modules' names, kept importable from here as before.
__all__ = ["BACKENDS", "Prediction", "Predictor"]

#: Inference engines of the :class:`Predictor`.
BACKENDS = ("mxnet", "openvino")


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Top-k classes of one image, most probable first: their indices (labels), probabilities and names."""

    class_indices: Tuple[int, ...]
    probabilities: Tuple[float, ...]
    names: Tuple[str, ...]

    @property
    def classes(self) -> Tuple[int, ...]:
        """Deprecated name of ``class_indices`` (``classes`` is a count elsewhere, as in Gluon)."""
        deprecated("Prediction.classes", "Prediction.class_indices")
        return self.class_indices

    @property
    def label(self) -> int:
        """The most probable class index."""
        return self.class_indices[0]

    @property
    def name(self) -> str:
        """The most probable class name."""
        return self.names[0]

    @property
    def probability(self) -> float:
        """The probability of the most probable class."""
        return self.probabilities[0]

    def as_dict(self) -> Dict[str, list]:
        """``class_indices``, ``names`` and ``probabilities`` (rounded to 6 decimals) as lists, for JSON."""
        return dict(class_indices=list(self.class_indices), names=list(self.names),
                    probabilities=[round(float(p), 6) for p in self.probabilities])

    def __str__(self) -> str:
        """``'name (class) probability, ...'``, most probable first, probabilities to 4 decimals."""
        return ", ".join(f"{n} ({c}) {p:.4f}" for c, n, p in zip(self.class_indices, self.names, self.probabilities))


class Predictor:
    """Top-k predictions of a trained network on images, with the validation preprocessing.

    Parameters
    ----------
    net : HybridBlock
        A trained float32 network (e.g. ``resnet50_v1_5`` with loaded weights), or an already converted one
        (``dtype`` then names what it is). Its parameters are moved to ``ctx``.
    preprocessing : Preprocessing
        The validation preprocessing the network was trained with (``image_size``, ``resize``, mean/std).
    class_names : sequence of str, optional
        Names in label order; default ``'0'``, ``'1'``, ...
    dtype : {'float32', 'float16', 'bfloat16', 'int8', 'auto'}
        Convert ``net`` to this precision (see :data:`resnet_gluon._core.amp.DTYPE_TABLE`): bfloat16 with MXNet AMP
        (CPUs with AVX-512), float16 with MXNet AMP on a GPU ``ctx``, INT8 with
        :func:`~resnet_gluon.deploy.quantization.quantize` (CPU; needs ``calibration``); 'auto' as
        :func:`resnet_gluon._core.amp.resolve_dtype` picks (float32 on CPUs without AMX).
        With ``backend='openvino'``: 'float32', 'bfloat16', 'int8' or 'auto' (OpenVINO's own choice), see
        :mod:`resnet_gluon.deploy.openvino`. :attr:`dtype` is the precision in force.
    calibration : str, PathLike or mx.io.DataIter, optional
        INT8 only: a ``.rec`` file or batches for calibration (see :func:`~resnet_gluon.deploy.quantization.quantize`).
    calibration_options : dict, optional
        More keyword arguments of :func:`~resnet_gluon.deploy.quantization.quantize` (``num_images``,
        ``batch_size``, ``calib_mode``, ...; the OpenVINO backend takes ``num_images`` and ``batch_size``).
    batch_size : int
        Images per forward pass in :meth:`predict`.
    ctx : Context, optional
        Default the CPU.
    converted : bool
        ``net`` is already in ``dtype`` (as loaded by :meth:`from_checkpoint` from :meth:`save`'s files).
    precision : str, optional
        Deprecated name of ``dtype``.
    backend : {'mxnet', 'openvino'}
        The inference engine (:data:`BACKENDS`); OpenVINO runs on the CPU only.

    Raises
    ------
    ValueError
        Unknown dtype or backend; a dtype the device cannot run (bfloat16 without AVX-512 or on a GPU, float16 on
        a CPU, INT8 on a GPU); INT8 without calibration data; OpenVINO on a GPU context.
    ImportError
        ``backend='openvino'`` without the openvino package.

    Attributes
    ----------
    dtype : str
        The precision in force ('auto' resolved to what was picked).
    batch_size : int
        Images per forward pass in :meth:`predict`.

    Examples
    --------
    >>> import numpy as np
    >>> from resnet_gluon import Predictor, Preprocessing, resnet18_v1_5
    >>> net = resnet18_v1_5(classes=3)
    >>> net.initialize()  # untrained: the classes below are arbitrary, their number and order are not
    >>> predictor = Predictor(net, preprocessing=Preprocessing.for_size(32), class_names=["cat", "dog", "bird"])
    >>> image = np.zeros((40, 50, 3), np.uint8)  # (H, W, 3) RGB uint8, resized and centre-cropped to 32 px
    >>> prediction = predictor.predict(image, top_k=2)
    >>> len(prediction.names), set(prediction.names) <= {"cat", "dog", "bird"}
    (2, True)
    >>> prediction.probabilities[0] >= prediction.probabilities[1]
    True
    >>> predictor.logits(np.zeros((4, 3, 32, 32), np.float32)).shape  # a preprocessed (N, 3, H, W) batch
    (4, 3)
    """

    #: Which weights of a training checkpoint :meth:`from_checkpoint` loaded: 'ema' (the moving average) or 'raw'.
    weights = "raw"

    def __init__(self, net: gluon.HybridBlock, *, preprocessing: Preprocessing = Preprocessing(),
                 class_names: Optional[Sequence[str]] = None, dtype: Optional[str] = None,
                 calibration: Optional[Union[PathLike, mx.io.DataIter]] = None,
                 calibration_options: Optional[Dict[str, Any]] = None, batch_size: int = 64,
                 ctx: Optional[mx.Context] = None, converted: bool = False, precision: Optional[str] = None,
                 backend: str = "mxnet"):
        dtype = renamed_argument("Predictor", "precision", precision, "dtype", dtype) or "float32"
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.ctx = ctx or mx.cpu()
        self.backend = backend
        self.preprocessing = preprocessing
        self.batch_size = batch_size
        if backend == "openvino":
            net = self._openvino_net(net, dtype, converted, calibration, calibration_options)
            dtype = net.dtype
        else:
            if dtype not in _amp.INFERENCE_DTYPES + ("auto",):
                raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(_amp.INFERENCE_DTYPES + ('auto',))}")
            if not converted:
                dtype = _amp.resolve_dtype(dtype, self.ctx, inference=True)
            net = self._mxnet_net(net, dtype, converted, calibration, calibration_options)
        self.dtype = dtype
        self.net = net
        self._optimize()
        self.num_classes = int(net(mx.nd.zeros(preprocessing.data_shape(1), ctx=self.ctx)).shape[1])
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        if len(names) != self.num_classes:
            raise ValueError(f"{len(names)} class names for a network with {self.num_classes} outputs")
        self.class_names = names

    @property
    def precision(self) -> str:
        """Deprecated name of :attr:`dtype` (removed in 0.3.0)."""
        deprecated("Predictor.precision", "Predictor.dtype")
        return self.dtype

    def _mxnet_net(self, net, dtype, converted, calibration, calibration_options):
        place_parameters(net, self.ctx)
        if not converted and dtype in ("bfloat16", "float16"):
            return _amp.convert(net, dtype, input_shape=self.preprocessing.data_shape(1), ctx=self.ctx)
        if not converted and dtype == "int8":
            if calibration is None:
                raise ValueError("dtype='int8' needs calibration data: pass calibration='<file>.rec' "
                                 "(a few hundred images of the training or validation set)")
            return quantize(net, calibration, preprocessing=self.preprocessing, **(calibration_options or {}))
        return net

    def _openvino_net(self, net, dtype, converted, calibration, calibration_options):
        from . import openvino as openvino_backend

        if self.ctx.device_type != "cpu":
            raise ValueError(f"backend='openvino' runs on the CPU, not {self.ctx}; use backend='mxnet' on a GPU")
        if converted:
            return net
        if dtype not in openvino_backend.DTYPES:
            raise ValueError(f"unknown dtype {dtype!r} for backend='openvino'; choose one of "
                             f"{', '.join(openvino_backend.DTYPES)}")
        batches = None
        if dtype == "int8" and calibration is not None:
            options = {k: v for k, v in (calibration_options or {}).items() if k in ("num_images", "batch_size")}
            if not isinstance(calibration, mx.io.DataIter):
                calibration = calibration_batches(calibration, preprocessing=self.preprocessing, **options)
            calibration.reset()
            batches = [b.data[0].asnumpy() for b in calibration]
        place_parameters(net, mx.cpu())
        return openvino_backend.build(net, dtype=dtype, preprocessing=self.preprocessing, calibration=batches)

    def _optimize(self) -> None:
        """Hybridize for inference; float32 on the CPU also gets oneDNN's fusion (conv + BN + ReLU + sum)."""
        if self.backend == "openvino":
            return
        if self.dtype == "float32" and self.ctx.device_type == "cpu":
            self.net.optimize_for(mx.nd.zeros(self.preprocessing.data_shape(1), ctx=self.ctx), backend="MKLDNN",
                                  static_alloc=True, static_shape=True)
        else:
            self.net.hybridize(static_alloc=True, static_shape=True)

    def export_onnx(self, path: PathLike, *, dynamic_batch: bool = True) -> str:
        """Write this float32 predictor's network as ONNX (see :func:`~resnet_gluon.deploy.export.export_onnx`);
        returns ``path``.

        Raises
        ------
        ValueError
            For a predictor of another dtype (load the float32 checkpoint to export).
        ImportError
            Without the ``onnx`` package.
        """
        if self.dtype != "float32":
            raise ValueError(f"ONNX export takes the float32 model, not this {self.dtype} one; load the "
                             "float32 checkpoint for export")
        if self.backend == "openvino":
            return self.net.save(path)
        try:
            return export_onnx(self.net, path, preprocessing=self.preprocessing, dynamic_batch=dynamic_batch)
        finally:
            self._optimize()  # export_onnx re-hybridized the network without fusion

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_checkpoint(cls, prefix: PathLike, epoch: Optional[int] = None, *, dtype: Optional[str] = None,
                        image_size: Optional[int] = None, class_names: Optional[Sequence[str]] = None,
                        precision: Optional[str] = None, ema: bool = True, **options) -> "Predictor":
        """Load a complete checkpoint (see :mod:`resnet_gluon.models.checkpoint`) into a predictor.

        The record gives the model, class names, validation preprocessing and, for saved INT8/bfloat16
        models, their dtype; incomplete checkpoints (a save that was interrupted) are skipped. A plain
        ``symbol.json`` + ``.params`` pair with no record (the reference's own checkpoints) loads when its
        epoch is named, at ``image_size`` (default 224) with the ImageNet normalisation.

        Parameters
        ----------
        prefix : str or PathLike
            Checkpoint prefix, e.g. ``'runs/demo/model'``.
        epoch : int, optional
            Checkpoint epoch (the ``NNNN``); default the newest complete one.
        dtype : {'float32', 'float16', 'bfloat16', 'int8', 'auto'}, optional
            Convert to this precision (default: as saved). A saved INT8/bfloat16 model cannot change dtype.
        image_size : int, optional
            Override the recorded crop size (the resize keeps the ratio 256/224).
        class_names : sequence of str, optional
            Override the recorded class names.
        precision : str, optional
            Deprecated name of ``dtype``.
        ema : bool
            Use the checkpoint's moving average of the weights (``<prefix>-NNNN-ema.params``, written when
            training with ``Recipe.ema_decay``) where it has one; False: the raw weights. :attr:`weights` says
            which were loaded ('ema' or 'raw').
        **options
            Other :class:`Predictor` arguments (``calibration``, ``batch_size``, ``ctx``, ``backend``, ...). A
            checkpoint that an OpenVINO predictor saved loads with ``backend='openvino'`` whatever is asked.

        Raises
        ------
        FileNotFoundError
            No complete checkpoint, or the named epoch is missing or incomplete.
        ValueError
            A saved low-precision model asked for another dtype; unknown dtype; an OpenVINO checkpoint asked
            for ``backend='mxnet'``; ``ema=False`` for a saved predictor of the moving average (it has no raw
            weights).
        """
        dtype = renamed_argument("Predictor.from_checkpoint", "precision", precision, "dtype", dtype)
        ctx = options.pop("ctx", None) or mx.cpu()
        epoch, record = checkpoint.resolve_epoch(prefix, epoch)
        if record is not None and not record.preprocessing and image_size is None:
            warnings.warn(f"checkpoint {os.fspath(prefix)!r} records no preprocessing (its Checkpoint was given none "
                          "and its data had none): predicting at the 224 px defaults (resize 256, ImageNet mean/std); "
                          "pass image_size= (predict --image-size) if it was trained at another size", stacklevel=2)
        record = record or checkpoint.CheckpointRecord()  # a plain symbol + params pair: the record's defaults
        saved = record.dtype
        dtype = dtype or saved
        if dtype not in _amp.INFERENCE_DTYPES + ("auto",):
            raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(_amp.INFERENCE_DTYPES + ('auto',))}")
        files = checkpoint.checkpoint_files(prefix, epoch)
        if saved != "float32" and dtype != saved:
            raise ValueError(f"{files.params if record.backend != 'openvino' else files.onnx!r} is a {saved} "
                             f"model; it cannot be loaded as {dtype}. Load the float32 checkpoint it was made from "
                             "instead")
        if image_size is not None:
            preprocessing = Preprocessing.for_size(image_size)
        elif record.preprocessing:
            preprocessing = Preprocessing.from_validation_settings(record.preprocessing)
        else:
            preprocessing = Preprocessing()
        preprocessing = dataclasses.replace(preprocessing, layout=record.layout)
        names = class_names if class_names is not None else record.class_names
        if record.weights == "ema" and not ema:
            raise ValueError(f"{files.record!r} is a saved predictor of the moving average of the weights; the raw "
                             "weights are only in the training checkpoint it was made from: load that one with "
                             "ema=False (predict --no-ema)")
        if record.backend == "openvino":
            from .openvino import OpenVINONet

            if options.setdefault("backend", "openvino") != "openvino":
                raise ValueError(f"{files.onnx!r} was saved by an OpenVINO predictor; load it with "
                                 "backend='openvino' (or load the float32 checkpoint it was made from)")
            if dtype != saved:
                raise ValueError(f"{files.onnx!r} is an OpenVINO {saved} model; it loads as saved. For {dtype}, "
                                 f"load the float32 checkpoint it was made from with backend='openvino', "
                                 f"dtype={dtype!r}")
            net = OpenVINONet.from_onnx_file(files.onnx, dtype=record.requested_dtype or saved)
            predictor = cls(net, preprocessing=preprocessing, class_names=names, dtype=saved, ctx=ctx,
                            converted=True, **options)
            predictor.weights = record.weights or "raw"  # the weights it was made from, as recorded
            return predictor
        net, _, _ = checkpoint.load_network(prefix, epoch, ctx=ctx, ema=ema)
        predictor = cls(net, preprocessing=preprocessing, class_names=names, dtype=dtype, ctx=ctx,
                        converted=saved != "float32", **options)
        # a predictor's own saved network says which weights it was made from
        predictor.weights = record.weights or checkpoint.weights_used(record, ema)
        return predictor

    def save(self, prefix: PathLike, epoch: int = 0) -> Tuple[str, ...]:
        """Write this predictor's network (e.g. the INT8 one) as a complete checkpoint of epoch ``epoch``; returns
        the files written before the record: the symbol and params, or with ``backend='openvino'`` the ONNX model
        (``<prefix>-NNNN.onnx``, the INT8 one quantized).

        The record gives the dtype, backend, class names and preprocessing, so :meth:`from_checkpoint` (in any
        process) rebuilds the same predictor. Files are written to temporary names and renamed, the record last.
        """
        common = dict(dtype=self.dtype, weights=self.weights, classes=self.num_classes,
                      class_names=tuple(self.class_names) if self.class_names is not None else None,
                      preprocessing=self.preprocessing.validation_settings(), layout=self.preprocessing.layout)
        if self.backend == "openvino":  # the ONNX model (float32 or INT8 QDQ) and the record
            path = self.net.save(checkpoint.checkpoint_files(prefix, epoch).onnx)
            record = checkpoint.CheckpointRecord(**common, backend="openvino",
                                                 requested_dtype=self.net.requested_dtype,
                                                 in_channels=self.preprocessing.data_shape(1)[1])
            checkpoint.write_checkpoint_record(prefix, epoch, record, files=[path])
            return (path,)
        files = checkpoint.export_checkpoint(self.net, prefix, epoch)
        # model=None: the saved graph may be fused or quantized, so it is always imported as a SymbolBlock.
        record = checkpoint.CheckpointRecord.for_network(self.net, **common, model=None)
        checkpoint.write_checkpoint_record(prefix, epoch, record)
        return files

    # ------------------------------------------------------------------------------------------ running
    def logits(self, batch: Union[np.ndarray, mx.nd.NDArray]) -> np.ndarray:
        """The network's float32 outputs ``(N, classes)`` for a preprocessed batch ``(N, 3, H, W)`` float32.

        Raises
        ------
        ValueError
            For a batch of another shape than the preprocessing's (use :meth:`predict` for images).
        """
        shape = tuple(batch.shape)
        expected = self.preprocessing.data_shape(1)[1:]
        if len(shape) != 4 or shape[1:] != expected:
            raise ValueError(f"expected a preprocessed batch of shape (N, {', '.join(map(str, expected))}) "
                             f"(NCHW float32), got {shape}; use predict() for images")
        outputs = []
        for start in range(0, shape[0], self.batch_size):
            part = batch[start:start + self.batch_size]
            data = mx.nd.array(part, ctx=self.ctx) if isinstance(part, np.ndarray) else part.as_in_context(self.ctx)
            outputs.append(self.net(data).astype("float32").asnumpy())
        return np.concatenate(outputs) if outputs else np.zeros((0, self.num_classes), np.float32)

    def probabilities(self, images: Sequence[ImageLike], *, max_value: Optional[float] = None) -> np.ndarray:
        """Softmax probabilities ``(N, classes)`` float32 of images (paths, bytes or RGB arrays; ``max_value``:
        the value of white in arrays, see :func:`~resnet_gluon.data.preprocessing.load_image`)."""
        logits = self.logits(preprocess(images, self.preprocessing, max_value=max_value))
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, images: Union[ImageLike, Sequence[ImageLike]], top_k: int = 5, *,
                max_value: Optional[float] = None) -> Union[Prediction, List[Prediction]]:
        """Top-``top_k`` classes of one image or a list of images (paths, encoded bytes or RGB arrays).

        Arrays are pixels: ``uint8`` 0-255, or float 0-255; ``max_value`` gives the value of white of other
        scales (``1.0`` for floats in ``[0, 1]``, ``65535`` for ``uint16``). Values outside ``[0, max_value]``
        (an already normalised array) and float arrays in ``[0, 1]`` without ``max_value=1.0`` raise a
        ``ValueError`` saying the range expected (see :func:`~resnet_gluon.data.preprocessing.load_image`).

        Returns one :class:`Prediction` for a single image, else a list in input order.
        """
        single = isinstance(images, (str, os.PathLike, bytes, np.ndarray))
        batch = [images] if single else list(images)
        k = max(1, min(top_k, self.num_classes))
        results = []
        for probs in self.probabilities(batch, max_value=max_value):
            order = np.argsort(-probs, kind="stable")[:k]
            results.append(Prediction(class_indices=tuple(int(i) for i in order),
                                      probabilities=tuple(float(probs[i]) for i in order),
                                      names=tuple(self.class_names[i] for i in order)))
        return results[0] if single else results

    def evaluate(self, rec: PathLike, *, data_backend: str = "dali-cpu",
                 num_threads: Optional[int] = None) -> Dict[str, Any]:
        """Accuracy and speed of this predictor on a ``.rec``/``.idx`` validation set, read in file order.

        Parameters
        ----------
        rec : str or PathLike
            The ``.rec`` file (its ``.idx`` beside it).
        data_backend : {'dali-cpu', 'dali-gpu', 'mxnet'}
            Pipeline that decodes it (:func:`resnet_gluon.data.pipelines.make_pipeline`), one shard.
        num_threads : int, optional
            Pipeline threads; default :func:`~resnet_gluon._core.runtime.default_data_threads`.

        Returns
        -------
        dict
            The keys :func:`resnet_gluon.evaluation.evaluate` returns, unprefixed
            (:data:`resnet_gluon.evaluation.METRICS`: ``top1``, ``top5`` (None with fewer than 5 classes),
            ``loss``, ``total_ips`` (img/s, data loading included), ``latency_avg``/``_50``/``_90``/``_95``/``_99``/
            ``_100`` (seconds from taking a batch to its result), ``num_images``), plus ``dtype``, ``backend``,
            ``weights`` (:attr:`weights`), ``rec``, ``batch_size`` (:attr:`batch_size`, at most the records of
            ``rec``) and ``cpu_isa`` (oneDNN's instruction set, :func:`resnet_gluon._core.runtime.onednn_isa`; None
            on a GPU).

        Raises
        ------
        FileNotFoundError, ValueError
            A missing or unreadable record pair, an unknown backend (from the pipeline).
        """
        from ..data import pipelines  # DALI is imported only when its pipeline is built
        from ..data.recordio import record_files
        from ..evaluation import evaluate

        data = pipelines.make_pipeline(data_backend, rec, batch_size=min(self.batch_size, len(record_files(rec))),
                                       train=False, preprocessing=self.preprocessing, num_shards=1, shard_id=0,
                                       num_threads=num_threads)
        logs = evaluate(self.net, data, ctx=self.ctx, prefix="")
        from .._core.runtime import onednn_isa

        return dict(dtype=self.dtype, backend=self.backend, weights=self.weights, rec=os.fspath(rec), **logs,
                    batch_size=data.batch_size, cpu_isa=onednn_isa() if self.ctx.device_type == "cpu" else None)

    def __repr__(self) -> str:
        return (f"Predictor(dtype={self.dtype!r}, backend={self.backend!r}, weights={self.weights!r}, "
                f"classes={self.num_classes}, "
                f"image_size={self.preprocessing.image_size}, ctx={self.ctx})")


def __getattr__(name):
    if name == "PRECISIONS":  # 0.1's name of amp.INFERENCE_DTYPES
        deprecated(f"{__name__}.PRECISIONS", "resnet_gluon.amp.INFERENCE_DTYPES")
        return _amp.INFERENCE_DTYPES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
