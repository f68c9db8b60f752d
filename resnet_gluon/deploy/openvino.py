"""OpenVINO as an inference engine for the :class:`~resnet_gluon.deploy.predictor.Predictor` (``backend='openvino'``).

OpenVINO is the CPU inference engine Intel maintains; on Xeons with AMX and VNNI it runs ResNet-50 in INT8 at
15-17x our MXNet float32 predictor (issue #21: 2-core Xeon, batch 16), where MXNet 1.9.1's own INT8 gives
3-4x. MXNet stays the engine for training and the default for inference.

The network goes to OpenVINO as ONNX (:func:`resnet_gluon.deploy.export.export_onnx`). Precisions (``dtype``):

- ``'float32'``: OpenVINO with ``INFERENCE_PRECISION_HINT=f32``.
- ``'bfloat16'``: ``INFERENCE_PRECISION_HINT=bf16``; CPUs whose OpenVINO capabilities include BF16
  (AVX512_BF16 or AMX), refused elsewhere.
- ``'auto'``: OpenVINO's own choice (bfloat16 on CPUs with AMX, float32 elsewhere); :attr:`OpenVINONet.dtype`
  says which it took.
- ``'int8'``: post-training quantization by ONNX Runtime's ``quantize_static`` (QDQ, unsigned 8-bit
  activations, signed 8-bit weights per output channel, min-max calibration), which OpenVINO runs as INT8. The
  calibration images are the MXNet INT8 path's (:func:`resnet_gluon.deploy.quantization.calibration_batches`: the same
  ``.rec``, spread over it, with the validation preprocessing). Why not NNCF, OpenVINO's own quantizer: NNCF 3.x
  requires numpy >= 1.24 and MXNet 1.9.1 needs numpy < 1.24, and the project keeps one environment;
  ONNX Runtime is already in it. U8S8 rather than ONNX Runtime's default S8S8: S8S8 activations ran at
  0.7-0.9x float32 in ONNX Runtime on the same Xeon, U8S8 at 2.7-3.3x (issue #21).

Nothing here imports Horovod or DALI; ``openvino`` is imported when an :class:`OpenVINONet` is built.
"""
from __future__ import annotations

import os
import tempfile
from typing import Iterable, Optional, Union

import mxnet as mx
import numpy as np

from .._core.files import PathLike

__all__ = ["OpenVINONet", "DTYPES", "quantize_onnx", "import_openvino"]

#: The precisions of the OpenVINO backend.
DTYPES = ("float32", "bfloat16", "auto", "int8")
_HINTS = {"float32": "f32", "bfloat16": "bf16"}
_FROM_HINT = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}


def import_openvino():
    """The ``openvino`` module.

    Raises
    ------
    ImportError
        Without the ``openvino`` package (the message names the install step).
    """
    try:
        import openvino
    except ImportError as err:
        raise ImportError(f"backend='openvino' needs the openvino package ({err}): pip install 'openvino==2026.4.1' "
                          "(tools/setup_env.sh installs it)") from err
    return openvino


class _Batches:
    """ONNX Runtime's CalibrationDataReader over float32 NCHW batches (its interface: ``get_next()``)."""

    def __init__(self, batches: Iterable[np.ndarray], input_name: str):
        self._items = iter([{input_name: np.ascontiguousarray(b, np.float32)} for b in batches])

    def get_next(self):
        return next(self._items, None)


def quantize_onnx(model: PathLike, output: PathLike, batches: Iterable[np.ndarray]) -> str:
    """Write an INT8 QDQ copy of the float32 ONNX ``model`` (ONNX Runtime's ``quantize_static``, U8S8,
    per-channel weights) calibrated on ``batches`` (float32 ``(N, 3, H, W)``, preprocessed); returns ``output``.

    Batch normalisation is folded into the convolutions first (``quant_pre_process``), so that each
    convolution is quantized with its folded weights.

    Raises
    ------
    ValueError
        No calibration batch.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = [np.asarray(b) for b in batches]
    if not batches:
        raise ValueError("INT8 quantization needs calibration images; none were given")
    with tempfile.TemporaryDirectory() as tmp:
        folded = os.path.join(tmp, "folded.onnx")
        quant_pre_process(os.fspath(model), folded, skip_symbolic_shape=True)
        import onnx

        input_name = onnx.load(folded, load_external_data=False).graph.input[0].name
        quantize_static(folded, os.fspath(output), _Batches(batches, input_name), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        calibrate_method=CalibrationMethod.MinMax)
    return os.fspath(output)


class OpenVINONet:
    """An ONNX model compiled by OpenVINO for the CPU, called like a Gluon block on NDArrays.

    Parameters
    ----------
    model : bytes
        The ONNX model (float32, or INT8 QDQ from :func:`quantize_onnx`); input ``(N, 3, H, W)`` float32.
    dtype : {'float32', 'bfloat16', 'auto', 'int8'}
        What ``model`` is run as (see the module docstring); 'int8' means ``model`` is a QDQ model.
    threads : int, optional
        OpenVINO's ``INFERENCE_NUM_THREADS``; default OpenVINO's (every core).

    Raises
    ------
    ImportError
        openvino is not installed.
    ValueError
        An unknown dtype; bfloat16 on a CPU without BF16 support in OpenVINO.
    """

    def __init__(self, model: bytes, *, dtype: str = "float32", threads: Optional[int] = None):
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r} for backend='openvino'; choose one of {', '.join(DTYPES)}")
        ov = import_openvino()
        core = ov.Core()
        if dtype == "bfloat16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise ValueError("bfloat16 is not supported by OpenVINO on this CPU (it needs AVX512_BF16 or AMX); use "
                             "dtype='float32', 'int8', or 'auto' for OpenVINO's own choice")
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if dtype in _HINTS:
            config["INFERENCE_PRECISION_HINT"] = _HINTS[dtype]
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.model = bytes(model)
        self.requested_dtype = dtype
        self._compiled = core.compile_model(core.read_model(self.model, b""), "CPU", config)
        self._request = self._compiled.create_infer_request()
        hint = self._compiled.get_property("INFERENCE_PRECISION_HINT")  # an openvino.Type, e.g. f32
        hint = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        #: What OpenVINO runs, 'int8' for a QDQ model, else its inference precision ('float32' or 'bfloat16').
        self.dtype = "int8" if dtype == "int8" else _FROM_HINT.get(hint, hint)
        self.classes = int(self._compiled.outputs[0].get_partial_shape()[1].get_length())

    @classmethod
    def from_onnx_file(cls, path: PathLike, **options) -> "OpenVINONet":
        """Load an ONNX file (e.g. one that :meth:`save` wrote)."""
        with open(path, "rb") as f:
            return cls(f.read(), **options)

    def save(self, path: PathLike) -> str:
        """Write the ONNX model (atomically); returns ``path``."""
        from .._core.files import atomic_path

        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(self.model)
        return os.fspath(path)

    def __call__(self, x: Union[mx.nd.NDArray, np.ndarray]) -> mx.nd.NDArray:
        """Logits ``(N, classes)`` float32 of a preprocessed batch ``(N, 3, H, W)`` float32 (synchronous)."""
        batch = x.asnumpy() if isinstance(x, mx.nd.NDArray) else x
        result = self._request.infer({0: np.ascontiguousarray(batch, np.float32)})
        out = np.asarray(result[self._compiled.outputs[0]], dtype=np.float32)
        return mx.nd.array(out, ctx=x.context if isinstance(x, mx.nd.NDArray) else mx.cpu())

    def __repr__(self) -> str:
        return f"OpenVINONet(dtype={self.dtype!r}, classes={self.classes})"


def build(net: mx.gluon.HybridBlock, *, dtype: str, preprocessing, calibration: Optional[Iterable[np.ndarray]] = None,
          threads: Optional[int] = None) -> OpenVINONet:
    """Export a float32 Gluon network to ONNX and compile it with OpenVINO in ``dtype`` (int8: quantized on
    ``calibration`` batches first)."""
    from .export import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(net, os.path.join(tmp, "net.onnx"), preprocessing=preprocessing)
        if dtype == "int8":
            if calibration is None:
                raise ValueError("dtype='int8' needs calibration data: pass calibration='<file>.rec' (a few hundred "
                                 "images of the training or validation set)")
            path = quantize_onnx(path, os.path.join(tmp, "int8.onnx"), calibration)
        with open(path, "rb") as f:
            model = f.read()
    return OpenVINONet(model, dtype=dtype, threads=threads)
