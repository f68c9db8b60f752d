"""Inference: a :class:`Predictor` from a checkpoint, in float32, bfloat16 or INT8, and ONNX export.

- :func:`load_image` / :func:`preprocess` decode image files or arrays with OpenCV and apply the validation
  preprocessing of the pipelines (resize the shorter side to ``resize``, centre crop ``image_size``,
  ``(x - mean) / std``), giving float32 ``(N, 3, H, W)`` batches.
- :class:`Predictor` runs a trained network on such batches and returns the top-k classes with their
  probabilities; :meth:`Predictor.from_checkpoint` loads the files that ``fit``'s ``Checkpoint`` (or the
  reference's ``model.save_checkpoint``) writes.
- Precisions: ``'float32'``; ``'bfloat16'`` (MXNet AMP's conversion of the hybridized network; CPUs with
  oneDNN bfloat16 support, i.e. AVX-512); ``'int8'`` (MXNet's oneDNN quantization,
  ``mxnet.contrib.quantization``, calibrated on images of a ``.rec`` file). :meth:`Predictor.save` writes
  a converted network as files that :meth:`Predictor.from_checkpoint` loads again.
- :func:`export_onnx` writes an ONNX model with ``mxnet.onnx``; :func:`onnx_logits` runs one in ONNX Runtime.

Nothing here imports Horovod or DALI.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import mxnet as mx
import numpy as np
from mxnet import gluon

from . import amp as _amp
from . import checkpoint
from .data import PathLike, Preprocessing, read_records, record_files

__all__ = ["PRECISIONS", "Prediction", "Predictor", "load_image", "preprocess", "calibration_batches",
           "quantize", "export_onnx", "onnx_logits"]

#: Inference dtypes (see :data:`resnet_gluon.amp.DTYPE_TABLE`); the old name of ``amp.INFERENCE_DTYPES``.
PRECISIONS = _amp.INFERENCE_DTYPES
ImageLike = Union[str, os.PathLike, bytes, np.ndarray]


# ------------------------------------------------------------------------------------------------ images
def _cv2():
    import cv2  # opencv-python; imported late so that ``import resnet_gluon`` stays light

    return cv2


def load_image(image: ImageLike, *, name: Optional[str] = None) -> np.ndarray:
    """Decode an image file, encoded bytes or an array into an RGB ``uint8`` array ``(H, W, 3)``.

    Grayscale images are repeated over three channels, the alpha channel of RGBA/BGRA images is dropped,
    and 16-bit images are scaled to 8 bits. Arrays are taken as RGB: ``(H, W)``, ``(H, W, 1)``,
    ``(H, W, 3)`` or ``(H, W, 4)``, ``uint8`` (0-255) or float (0-255).

    Raises
    ------
    FileNotFoundError
        A path that does not exist.
    ValueError
        Bytes or a file that OpenCV cannot decode (not an image, truncated or corrupt), or an array of another
        shape.
    """
    cv2 = _cv2()
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 2:
            array = array[:, :, None]
        if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or 0 in array.shape:
            raise ValueError(f"{name or 'image array'} has shape {image.shape}; expected (H, W), (H, W, 1), "
                             "(H, W, 3) RGB or (H, W, 4) RGBA")
        if array.dtype != np.uint8:
            array = np.clip(np.rint(array.astype(np.float32)), 0, 255).astype(np.uint8)
        if array.shape[2] == 1:
            array = np.repeat(array, 3, axis=2)
        return np.ascontiguousarray(array[:, :, :3])
    if isinstance(image, (bytes, bytearray, memoryview)):
        encoded = np.frombuffer(image, np.uint8)
        name = name or "image bytes"
    else:
        name = name or os.fspath(image)
        if not os.path.isfile(image):
            raise FileNotFoundError(f"no image file {name!r}")
        encoded = np.fromfile(image, np.uint8)
    decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED) if encoded.size else None
    if decoded is None:
        raise ValueError(f"{name!r} is not an image OpenCV can decode (not an image, truncated or corrupt); "
                         "pass JPEG, PNG, BMP, TIFF or WebP files")
    if decoded.dtype == np.uint16:
        decoded = (decoded // 257).astype(np.uint8)
    elif decoded.dtype != np.uint8:
        decoded = cv2.normalize(decoded, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if decoded.ndim == 2 or decoded.shape[2] == 1:
        return cv2.cvtColor(decoded.reshape(decoded.shape[:2]), cv2.COLOR_GRAY2RGB)
    if decoded.shape[2] == 4:
        return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def _validation_transform(rgb: np.ndarray, p: Preprocessing) -> np.ndarray:
    """Resize the shorter side to ``p.resize``, centre crop ``p.image_size``, normalise; ``(3, S, S)`` float32."""
    cv2 = _cv2()
    h, w = rgb.shape[:2]
    scale = p.resize / min(h, w)
    size = (max(p.resize, round(w * scale)), max(p.resize, round(h * scale)))  # (width, height)
    # Bilinear like DALI's resize; when shrinking, area averaging stands in for DALI's antialiasing.
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(rgb, size, interpolation=interpolation) if size != (w, h) else rgb
    s = p.image_size
    # DALI's centre crop anchor: (size - crop) / 2 rounded half up.
    top, left = int((resized.shape[0] - s) / 2 + 0.5), int((resized.shape[1] - s) / 2 + 0.5)
    crop = resized[top:top + s, left:left + s].astype(np.float32)
    crop = (crop - np.asarray(p.mean, np.float32)) / np.asarray(p.std, np.float32)
    return crop.transpose(2, 0, 1)


def preprocess(images: Sequence[ImageLike], preprocessing: Preprocessing = Preprocessing()) -> np.ndarray:
    """Images (paths, encoded bytes or RGB arrays) -> the validation preprocessing's float32 batch.

    Parameters
    ----------
    images : sequence of str, PathLike, bytes or ndarray
        See :func:`load_image`.
    preprocessing : Preprocessing
        ``resize``, ``image_size``, ``mean`` and ``std`` of the validation pipeline (default: the reference's
        224/256 ImageNet values).

    Returns
    -------
    ndarray
        ``(N, 3, image_size, image_size)`` float32 ('NCHW', RGB), normalised as ``(x - mean) / std``.
    """
    if isinstance(images, (str, os.PathLike, bytes, np.ndarray)):
        raise TypeError("preprocess takes a sequence of images; wrap a single image in a list")
    out = np.empty((len(images), 3, preprocessing.image_size, preprocessing.image_size), np.float32)
    for i, image in enumerate(images):
        out[i] = _validation_transform(load_image(image), preprocessing)
    return out


# ------------------------------------------------------------------------------------------------ results
@dataclasses.dataclass(frozen=True)
class Prediction:
    """Top-k classes of one image, most probable first."""

    classes: Tuple[int, ...]
    probabilities: Tuple[float, ...]
    names: Tuple[str, ...]

    @property
    def label(self) -> int:
        """The most probable class index."""
        return self.classes[0]

    @property
    def name(self) -> str:
        """The most probable class name."""
        return self.names[0]

    @property
    def probability(self) -> float:
        """The probability of the most probable class."""
        return self.probabilities[0]


# ------------------------------------------------------------------------------------------------ INT8
def calibration_batches(path: PathLike, *, preprocessing: Preprocessing = Preprocessing(), num_images: int = 256,
                        batch_size: int = 32) -> mx.io.NDArrayIter:
    """``num_images`` images spread evenly over a ``.rec`` file (so a class-sorted file gives every class),
    preprocessed for validation, as a calibration iterator of float32 ``(batch_size, 3, H, W)`` batches.

    A file with fewer images gives all of them, in whole batches.

    Raises
    ------
    ValueError
        When the file holds fewer images than one batch, or ``num_images < batch_size``.
    """
    if num_images < batch_size:
        raise ValueError(f"num_images={num_images} is smaller than one calibration batch ({batch_size}); ask for "
                         f"at least {batch_size} images or a smaller batch size")
    total = len(record_files(path))
    if total < batch_size:
        raise ValueError(f"the calibration set {os.fspath(path)!r} holds {total} images, fewer than one "
                         f"batch of {batch_size}; use a larger .rec (a few hundred images) or a smaller "
                         "calibration batch size")
    count = min(num_images, total) // batch_size * batch_size
    positions = np.linspace(0, total - 1, count).round().astype(int)
    data = preprocess([bytes(encoded) for _, encoded in read_records(path, positions)], preprocessing)
    return mx.io.NDArrayIter(data, batch_size=batch_size, data_name="data", last_batch_handle="discard")


def quantize(net: gluon.HybridBlock, calibration: Union[PathLike, mx.io.DataIter], *,
             preprocessing: Preprocessing = Preprocessing(), num_images: int = 256, batch_size: int = 32,
             calib_mode: str = "naive", granularity: str = "channel-wise", quantize_mode: str = "smart",
             exclude_first_conv: bool = True) -> gluon.SymbolBlock:
    """An INT8 copy of a trained float32 network for CPU inference (MXNet's oneDNN quantization).

    Convolutions, fully connected layers and pooling run in INT8 with thresholds calibrated on real images;
    oneDNN fuses each convolution with its batch norm, ReLU and residual sum first.

    Parameters
    ----------
    net : HybridBlock
        Trained float32 network on the CPU.
    calibration : str, PathLike or mx.io.DataIter
        A ``.rec`` file (``num_images`` of its images, spread over it, preprocessed for validation) or an iterator
        of float32 ``(N, 3, H, W)`` batches named ``'data'``.
    preprocessing : Preprocessing
        Validation preprocessing of the calibration images.
    num_images, batch_size : int
        Calibration images and batch size.
    calib_mode : {'naive', 'entropy'}
        Thresholds from the min/max of each layer's outputs, or minimising KL divergence.
    granularity : {'channel-wise', 'tensor-wise'}
        Weight scales per output channel or per tensor.
    quantize_mode : {'smart', 'full'}
        Which operators to quantize (MXNet's choice or all it can).
    exclude_first_conv : bool
        Keep the stem's convolution (3 input channels) in float32, as is usual for accuracy.

    Returns
    -------
    SymbolBlock
        Takes and returns float32 tensors like ``net``.
    """
    from mxnet.contrib import quantization

    if calib_mode not in ("naive", "entropy"):
        raise ValueError(f"calib_mode must be 'naive' or 'entropy', got {calib_mode!r}")
    if granularity not in ("channel-wise", "tensor-wise"):
        raise ValueError(f"granularity must be 'channel-wise' or 'tensor-wise', got {granularity!r}")
    if isinstance(calibration, mx.io.DataIter):
        batches = calibration
    else:
        batches = calibration_batches(calibration, preprocessing=preprocessing, num_images=num_images,
                                      batch_size=batch_size)
    batches.reset()
    net.hybridize()
    exclude = None
    if exclude_first_conv:
        net(mx.nd.zeros(batches.provide_data[0].shape))
        nodes = json.loads(net._cached_graph[1].tojson())["nodes"]  # pylint: disable=protected-access
        exclude = [n["name"] for n in nodes if n["op"] == "Convolution"][:1] or None
    logger = logging.getLogger("resnet_gluon.quantize")
    quantized = quantization.quantize_net_v2(
        net, quantized_dtype="auto", quantize_mode=quantize_mode, quantize_granularity=granularity,
        exclude_layers=exclude, calib_data=batches, calib_mode=calib_mode, num_calib_examples=None,
        ctx=mx.cpu(), logger=logger if logger.isEnabledFor(logging.INFO) else None)
    quantized.hybridize(static_alloc=True, static_shape=True)
    return quantized


# ------------------------------------------------------------------------------------------------ predictor
def _deprecated_precision(dtype: Optional[str], precision: Optional[str], where: str) -> Optional[str]:
    if precision is None:
        return dtype
    warnings.warn(f"{where}(precision=...) is deprecated; use dtype=... (the same values)", DeprecationWarning,
                  stacklevel=3)
    if dtype is not None and dtype != precision:
        raise ValueError(f"{where} got dtype={dtype!r} and precision={precision!r}; pass dtype only")
    return precision


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
    dtype : {'float32', 'float16', 'bfloat16', 'int8'}
        Convert ``net`` to this precision (see :data:`resnet_gluon.amp.DTYPE_TABLE`): bfloat16 with MXNet AMP
        (CPUs with AVX-512), float16 with MXNet AMP on a GPU ``ctx``, INT8 with :func:`quantize` (CPU; needs
        ``calibration``).
    calibration : str, PathLike or mx.io.DataIter, optional
        INT8 only: a ``.rec`` file or batches for calibration (see :func:`quantize`).
    calibration_options : dict, optional
        More keyword arguments of :func:`quantize` (``num_images``, ``batch_size``, ``calib_mode``, ...).
    batch_size : int
        Images per forward pass in :meth:`predict`.
    ctx : Context, optional
        Default the CPU.
    converted : bool
        ``net`` is already in ``dtype`` (as loaded by :meth:`from_checkpoint` from :meth:`save`'s files).
    precision : str, optional
        Deprecated name of ``dtype``.

    Raises
    ------
    ValueError
        Unknown dtype; a dtype the device cannot run (bfloat16 without AVX-512 or on a GPU, float16 on a CPU,
        INT8 on a GPU); INT8 without calibration data.
    """

    def __init__(self, net: gluon.HybridBlock, *, preprocessing: Preprocessing = Preprocessing(),
                 class_names: Optional[Sequence[str]] = None, dtype: Optional[str] = None,
                 calibration: Optional[Union[PathLike, mx.io.DataIter]] = None,
                 calibration_options: Optional[Dict[str, Any]] = None, batch_size: int = 64,
                 ctx: Optional[mx.Context] = None, converted: bool = False, precision: Optional[str] = None):
        dtype = _deprecated_precision(dtype, precision, "Predictor") or "float32"
        if dtype not in PRECISIONS:
            raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(PRECISIONS)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.ctx = ctx or mx.cpu()
        if not converted:
            _amp.resolve_dtype(dtype, self.ctx, inference=True)
        self.preprocessing = preprocessing
        self.dtype = dtype
        self.batch_size = batch_size
        _move_to(net, self.ctx)
        if not converted and dtype in ("bfloat16", "float16"):
            net = _amp.convert(net, dtype, input_shape=preprocessing.data_shape(1), ctx=self.ctx)
        elif not converted and dtype == "int8":
            if calibration is None:
                raise ValueError("dtype='int8' needs calibration data: pass calibration='<file>.rec' "
                                 "(a few hundred images of the training or validation set)")
            net = quantize(net, calibration, preprocessing=preprocessing, **(calibration_options or {}))
        self.net = net
        self._optimize()
        self.num_classes = int(net(mx.nd.zeros(preprocessing.data_shape(1), ctx=self.ctx)).shape[1])
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        if len(names) != self.num_classes:
            raise ValueError(f"{len(names)} class names for a network with {self.num_classes} outputs")
        self.class_names = names

    @property
    def precision(self) -> str:
        """Deprecated name of :attr:`dtype`."""
        return self.dtype

    def _optimize(self) -> None:
        """Hybridize for inference; float32 on the CPU also gets oneDNN's fusion (conv + BN + ReLU + sum)."""
        if self.dtype == "float32" and self.ctx.device_type == "cpu":
            self.net.optimize_for(mx.nd.zeros(self.preprocessing.data_shape(1), ctx=self.ctx), backend="MKLDNN",
                                  static_alloc=True, static_shape=True)
        else:
            self.net.hybridize(static_alloc=True, static_shape=True)

    def export_onnx(self, path: PathLike, *, dynamic_batch: bool = True) -> str:
        """Write this float32 predictor's network as ONNX (see :func:`export_onnx`); returns ``path``."""
        if self.dtype != "float32":
            raise ValueError(f"ONNX export takes the float32 model, not this {self.dtype} one; load the "
                             "float32 checkpoint for export")
        try:
            return export_onnx(self.net, path, preprocessing=self.preprocessing, dynamic_batch=dynamic_batch)
        finally:
            self._optimize()  # export_onnx re-hybridized the network without fusion

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_checkpoint(cls, prefix: PathLike, epoch: Optional[int] = None, *, dtype: Optional[str] = None,
                        image_size: Optional[int] = None, class_names: Optional[Sequence[str]] = None,
                        precision: Optional[str] = None, **options) -> "Predictor":
        """Load a complete checkpoint (see :mod:`resnet_gluon.checkpoint`) into a predictor.

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
        dtype : {'float32', 'float16', 'bfloat16', 'int8'}, optional
            Convert to this precision (default: as saved). A saved INT8/bfloat16 model cannot change dtype.
        image_size : int, optional
            Override the recorded crop size (the resize keeps the ratio 256/224).
        class_names : sequence of str, optional
            Override the recorded class names.
        precision : str, optional
            Deprecated name of ``dtype``.
        **options
            Other :class:`Predictor` arguments (``calibration``, ``batch_size``, ``ctx``, ...).

        Raises
        ------
        FileNotFoundError
            No complete checkpoint, or the named epoch is missing or incomplete.
        ValueError
            A saved low-precision model asked for another dtype; unknown dtype.
        """
        dtype = _deprecated_precision(dtype, precision, "Predictor.from_checkpoint")
        ctx = options.pop("ctx", None) or mx.cpu()
        epoch, record = checkpoint.resolve_epoch(prefix, epoch)
        record = record or {}
        saved = record.get("dtype", "float32")
        dtype = dtype or saved
        if dtype not in PRECISIONS:
            raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(PRECISIONS)}")
        if saved != "float32" and dtype != saved:
            raise ValueError(f"{checkpoint.checkpoint_files(prefix, epoch).params!r} is a {saved} model; it cannot "
                             f"be loaded as {dtype}. Load the float32 checkpoint it was made from instead")
        pre = record.get("preprocessing")
        if image_size is not None:
            preprocessing = Preprocessing.for_size(image_size)
        elif pre:
            preprocessing = Preprocessing.from_validation_settings(pre)
        else:
            preprocessing = Preprocessing()
        preprocessing = dataclasses.replace(preprocessing, layout=record.get("layout", "NCHW"))
        net, _, _ = checkpoint.load_network(prefix, epoch, ctx=ctx)
        names = class_names if class_names is not None else record.get("class_names")
        return cls(net, preprocessing=preprocessing, class_names=names, dtype=dtype, ctx=ctx,
                   converted=saved != "float32", **options)

    def save(self, prefix: PathLike, epoch: int = 0) -> Tuple[str, str]:
        """Write this predictor's network (e.g. the INT8 one) as a complete checkpoint of epoch ``epoch``.

        The record gives the dtype, class names and preprocessing, so :meth:`from_checkpoint` (in any process)
        rebuilds the same predictor. Files are written to temporary names and renamed, the record last.
        """
        files = checkpoint.export_checkpoint(self.net, prefix, epoch)
        # model=None: the saved graph may be fused or quantized, so it is always imported as a SymbolBlock.
        record = dict(checkpoint.network_record(self.net), model=None, dtype=self.dtype, classes=self.num_classes,
                      class_names=self.class_names, preprocessing=self.preprocessing.validation_settings(),
                      layout=self.preprocessing.layout)
        checkpoint.write_record(prefix, epoch, record)
        return files

    # ------------------------------------------------------------------------------------------ running
    def logits(self, batch: Union[np.ndarray, mx.nd.NDArray]) -> np.ndarray:
        """The network's float32 outputs ``(N, classes)`` for a preprocessed batch ``(N, 3, H, W)`` float32."""
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

    def probabilities(self, images: Sequence[ImageLike]) -> np.ndarray:
        """Softmax probabilities ``(N, classes)`` float32 of images (paths, bytes or RGB arrays)."""
        logits = self.logits(preprocess(images, self.preprocessing))
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, images: Union[ImageLike, Sequence[ImageLike]], top_k: int = 5
                ) -> Union[Prediction, List[Prediction]]:
        """Top-``top_k`` classes of one image or a list of images (paths, encoded bytes or RGB arrays).

        Returns one :class:`Prediction` for a single image, else a list in input order.
        """
        single = isinstance(images, (str, os.PathLike, bytes, np.ndarray))
        batch = [images] if single else list(images)
        k = max(1, min(top_k, self.num_classes))
        results = []
        for probs in self.probabilities(batch):
            order = np.argsort(-probs, kind="stable")[:k]
            results.append(Prediction(classes=tuple(int(i) for i in order),
                                      probabilities=tuple(float(probs[i]) for i in order),
                                      names=tuple(self.class_names[i] for i in order)))
        return results[0] if single else results

    def __repr__(self) -> str:
        return (f"Predictor(dtype={self.dtype!r}, classes={self.num_classes}, "
                f"image_size={self.preprocessing.image_size}, ctx={self.ctx})")


def _move_to(net: gluon.Block, ctx: mx.Context) -> None:
    """Put ``net``'s initialised parameters on ``ctx`` (a no-op where they are already)."""
    params = net.collect_params()
    try:
        contexts = {c for p in params.values() for c in p.list_ctx()}
    except RuntimeError:  # not initialised: nothing to move
        return
    if contexts and contexts != {ctx}:
        params.reset_ctx(ctx)


# ------------------------------------------------------------------------------------------------ ONNX
def export_onnx(net: gluon.HybridBlock, path: PathLike, *, preprocessing: Preprocessing = Preprocessing(),
                dynamic_batch: bool = True) -> str:
    """Write a float32 network as an ONNX model with ``mxnet.onnx`` (input ``'data'``, ``(N, 3, S, S)`` float32).

    The opset is the newest the installed onnx package knows (onnx 1.14.1: opset 19).

    Parameters
    ----------
    net : HybridBlock
        Trained float32 network. It is hybridized again without backend fusion (use
        :meth:`Predictor.export_onnx` for a predictor's network).
    path : str or PathLike
        The ``.onnx`` file, written to a temporary name and renamed.
    preprocessing : Preprocessing
        Gives the input size ``image_size``.
    dynamic_batch : bool
        Let the batch dimension vary (else fixed at 1).

    Returns
    -------
    str
        ``path``.
    """
    import tempfile

    try:
        from mxnet import onnx as mx_onnx
        import onnx  # noqa: F401  (mxnet.onnx needs it)
    except ImportError as err:
        raise ImportError(f"ONNX export needs the onnx package ({err}): pip install 'onnx==1.14.1'") from err
    path = os.fspath(path)
    shape = preprocessing.data_shape(1)
    net.hybridize()
    net(mx.nd.zeros(shape))
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        net.export(os.path.join(tmp, "net"), 0)
        out = os.path.join(tmp, "net.onnx")
        mx_onnx.export_model(os.path.join(tmp, "net-symbol.json"), os.path.join(tmp, "net-0000.params"),
                             in_shapes=[shape], in_types=[np.float32], onnx_file_path=out,
                             dynamic=dynamic_batch, dynamic_input_shapes=[(None, *shape[1:])] if dynamic_batch
                             else None, run_shape_inference=True)
        model = onnx.load(out)
        # mxnet.onnx lists the weights as graph inputs too, which stops ONNX Runtime from folding them.
        weights = {init.name for init in model.graph.initializer}
        for graph_input in [i for i in model.graph.input if i.name in weights]:
            model.graph.input.remove(graph_input)
        onnx.checker.check_model(model)
        onnx.save(model, out)
        os.replace(out, path)
    return path


def onnx_logits(path: PathLike, batch: np.ndarray, *, threads: Optional[int] = None) -> np.ndarray:
    """Run an ONNX model in ONNX Runtime (CPU) on a float32 batch ``(N, 3, H, W)``; returns its first output."""
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError(f"running ONNX models needs onnxruntime ({err}): pip install onnxruntime") from err
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.ascontiguousarray(batch, np.float32)})[0]
