"""Mixed precision: the one place that imports ``mxnet.contrib.amp``.

- Training: :func:`init` switches MXNet's AMP on for the whole process — float16 on GPUs (with dynamic
  loss scaling, see :func:`enable_loss_scaling`), bfloat16 on CPUs (MXNet has no float16 GEMM on CPU;
  bfloat16 has float32's range and needs no loss scaling). ``fit`` calls it for you before the first
  forward pass.
- Inference: :func:`convert` turns a trained, hybridized block into a low-precision one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from typing import Optional

import mxnet as mx
from mxnet.contrib import amp as _amp
from mxnet.contrib.amp.loss_scaler import LossScaler

from . import runtime

__all__ = ["DType", "DTYPE_TABLE", "DTYPES", "TRAINING_DTYPES", "INFERENCE_DTYPES", "bfloat16_supported",
           "resolve_dtype", "init", "initialized_dtype", "enable_loss_scaling", "scale_loss", "loss_scale", "convert",
           "check_not_run"]


@dataclasses.dataclass(frozen=True)
class DType:
    """What a precision means here.

    Attributes
    ----------
    name : str
        The value of ``dtype=`` / ``--dtype``.
    amp_target : str or None
        MXNet AMP's target dtype (None: no AMP).
    device : {'any', 'gpu', 'cpu'}
        Where MXNet 1.9.1 runs it: float16 GEMMs exist on GPUs only, bfloat16 and INT8 kernels (oneDNN) on
        CPUs only; bfloat16 further needs AVX-512 (:func:`bfloat16_supported`).
    loss_scaling : bool
        Training needs dynamic loss scaling (float16's narrow exponent range).
    inference_only : bool
        Not a training precision.
    """

    name: str
    amp_target: Optional[str]
    device: str
    loss_scaling: bool
    inference_only: bool


#: The one table of precisions; 'auto' picks one of the training precisions (see :func:`resolve_dtype`).
DTYPE_TABLE = {
    "float32": DType("float32", None, "any", False, False),
    "float16": DType("float16", "float16", "gpu", True, False),
    "bfloat16": DType("bfloat16", "bfloat16", "cpu", False, False),
    "int8": DType("int8", None, "cpu", False, True),
}
#: The ``dtype`` values training takes: 'auto' and every precision that is not inference-only.
TRAINING_DTYPES = ("auto",) + tuple(n for n, d in DTYPE_TABLE.items() if not d.inference_only)
#: The ``dtype`` values inference takes: every precision of :data:`DTYPE_TABLE`.
INFERENCE_DTYPES = tuple(DTYPE_TABLE)
DTYPES = TRAINING_DTYPES
_initialized: Optional[str] = None
_BF16_SUPPORTED: Optional[bool] = None


@contextlib.contextmanager
def _quiet_stderr():
    """Silence C++ log lines written to fd 2 (oneDNN's failure message while probing)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def bfloat16_supported() -> bool:
    """Whether this CPU runs MXNet's oneDNN bfloat16 convolutions (they need AVX-512; AVX2-only CPUs fail)."""
    global _BF16_SUPPORTED
    if _BF16_SUPPORTED is None:
        try:
            with _quiet_stderr():
                x = mx.nd.amp_cast(mx.nd.ones((1, 4, 4, 4)), dtype=_amp.amp.bfloat16)
                w = mx.nd.amp_cast(mx.nd.ones((4, 4, 1, 1)), dtype=_amp.amp.bfloat16)
                mx.nd.Convolution(x, w, kernel=(1, 1), num_filter=4, no_bias=True).wait_to_read()
            _BF16_SUPPORTED = True
        except mx.MXNetError:
            _BF16_SUPPORTED = False
    return _BF16_SUPPORTED


def resolve_dtype(dtype: str, ctx: Optional[mx.Context] = None, *, inference: bool = False) -> str:
    """Turn ``'auto'`` into the fastest precision here and check that ``dtype`` can run on ``ctx``.

    'auto' is the AMP dtype already switched on in this process, if any (MXNet's AMP is process-wide);
    otherwise float16 on a GPU context, and on a CPU bfloat16 only where it is measured faster than float32:
    with oneDNN's AMX kernels on (:func:`resnet_gluon._core.runtime.amx_enabled`), else float32. Without AMX,
    oneDNN 2.4's bfloat16 kernels (AVX512_BF16) trained ResNet-50 at 0.76x float32 (issue #21), so 'auto'
    never picks them: it is never slower than float32.

    Parameters
    ----------
    dtype : str
        One of :data:`TRAINING_DTYPES` (with ``inference``: :data:`INFERENCE_DTYPES`).
    ctx : Context, optional
        Where it runs; default a GPU when mxnet sees one, else the CPU.
    inference : bool
        Allow inference-only precisions (int8).

    Raises
    ------
    ValueError
        For an unknown dtype, int8 for training, float16 on a CPU (MXNet has no float16 GEMM on CPU), bfloat16
        on a GPU (MXNet 1.9.1 has no bfloat16 GPU kernels) or on a CPU without oneDNN bfloat16 support, int8
        on a GPU.
    """
    allowed = INFERENCE_DTYPES + ("auto",) if inference else TRAINING_DTYPES
    if dtype not in allowed:
        extra = " (int8 is for inference only)" if dtype == "int8" else ""
        raise ValueError(f"unknown dtype {dtype!r}{extra}; choose one of {', '.join(allowed)}")
    on_gpu = (ctx.device_type == "gpu") if ctx is not None else mx.context.num_gpus() > 0
    if dtype == "auto":
        if _initialized is not None:
            return _initialized
        if on_gpu:
            return "float16"
        return "bfloat16" if runtime.amx_enabled() and bfloat16_supported() else "float32"
    device = DTYPE_TABLE[dtype].device
    if device == "gpu" and not on_gpu:
        raise ValueError(f"{dtype} needs a GPU: MXNet has no float16 GEMM on CPU ('FP16 gemm on cpu not "
                         "implemented'); use dtype='bfloat16' (the CPU's mixed precision) or 'auto'")
    if device == "cpu" and on_gpu:
        raise ValueError(f"{dtype} runs on CPUs only (MXNet 1.9.1 has no {dtype} GPU kernels); use "
                         "dtype='float16' on a GPU, or 'auto'")
    if dtype == "bfloat16" and not bfloat16_supported():
        raise ValueError("bfloat16 is not supported on this CPU: MXNet's oneDNN bfloat16 kernels need AVX-512 "
                         "(ideally AVX512_BF16); use dtype='float32', or 'auto' to pick the best available")
    return dtype


def check_not_run(net: mx.gluon.HybridBlock) -> None:
    """Raise if ``net`` has a hybridized graph already: AMP would not reach it.

    Raises
    ------
    RuntimeError
        When ``net`` ran a hybridized forward pass before :func:`init` (its graph stays float32).
    """
    if getattr(net, "_cached_graph", ()):
        raise RuntimeError(
            "AMP must be initialised before the network's first forward pass: this network already built its "
            "hybridized graph in float32, which AMP cannot change. Call resnet_gluon._core.amp.init() (or fit(..., "
            "dtype=...)) before running it, or call net.hybridize() again to drop the old graph.")


def init(dtype: str = "auto", *, net: Optional[mx.gluon.HybridBlock] = None,
         ctx: Optional[mx.Context] = None) -> str:
    """Switch mixed precision on for this process; returns the dtype in force ('float32' means off).

    Safe to call again with the same dtype. ``net``, when given, is checked not to have run yet.

    Raises
    ------
    ValueError
        Unknown dtype; float16 on CPU.
    RuntimeError
        When ``net`` has already run a hybridized forward pass, or AMP is already on with another dtype
        (MXNet's AMP patches operators process-wide and cannot be switched off or changed).
    """
    global _initialized
    dtype = resolve_dtype(dtype, ctx)
    if net is not None and dtype != "float32":
        check_not_run(net)
    if _initialized is not None and _initialized != dtype:
        raise RuntimeError(f"AMP is already initialised with {_initialized} in this process and cannot change to "
                           f"{dtype}; start a new process")
    if dtype == "float32" or _initialized == dtype:
        return dtype
    target = DTYPE_TABLE[dtype].amp_target
    _amp.init(target_dtype=target if target == "float16" else _amp.amp.bfloat16)
    _initialized = dtype
    return dtype


def initialized_dtype() -> Optional[str]:
    """The AMP dtype switched on in this process, or None."""
    return _initialized


def enable_loss_scaling(trainer: mx.gluon.Trainer) -> LossScaler:
    """Attach MXNet's dynamic loss scaler to ``trainer`` (as ``amp.init_trainer`` does).

    The trainer then skips any update whose (allreduced) gradients hold inf/NaN and halves the scale;
    after 2000 clean steps the scale doubles. Use :func:`scale_loss` around ``backward``.
    """
    scaler = LossScaler()
    trainer._amp_loss_scaler = scaler  # pylint: disable=protected-access
    trainer._amp_original_scale = trainer._scale  # pylint: disable=protected-access
    return scaler


def scale_loss(loss, trainer: mx.gluon.Trainer):
    """Context manager giving the loss multiplied by the trainer's current loss scale (``mxnet.contrib.amp``)."""
    return _amp.scale_loss(loss, trainer)


def loss_scale(trainer: mx.gluon.Trainer) -> float:
    """The trainer's current loss scale (1.0 without loss scaling)."""
    scaler = getattr(trainer, "_amp_loss_scaler", None)
    return float(scaler.loss_scale) if scaler is not None else 1.0


def convert(net: mx.gluon.HybridBlock, dtype: str = "bfloat16", *, input_shape=(1, 3, 224, 224),
            ctx: Optional[mx.Context] = None) -> mx.gluon.HybridBlock:
    """A low-precision copy of a trained block for inference (``amp.convert_hybrid_block``).

    Parameters
    ----------
    net : HybridBlock
        Trained network (float32 weights).
    dtype : {'bfloat16', 'float16'}
        Target dtype; float16 needs a GPU.
    input_shape : tuple
        Shape of a float32 batch ('NCHW') used to build the graph first, as conversion requires.
    ctx : Context, optional
        Where to run; default CPU.

    Returns
    -------
    HybridBlock
        A converted ``SymbolBlock`` taking float32 ``input_shape``-like tensors; its weights are stored in
        ``dtype`` (``cast_optional_params``), so no weight is cast on every call (54 float32 -> bfloat16
        reorders per call made ResNet-50 at batch 1 slower than float32, issue #21).

    Raises
    ------
    ValueError
        A dtype that ``ctx`` cannot run (see :func:`resolve_dtype`).
    """
    ctx = ctx or mx.cpu()
    dtype = resolve_dtype(dtype, ctx)
    if dtype == "float32":
        return net
    net.hybridize()
    net(mx.nd.zeros(input_shape, ctx=ctx))
    # MXNet's convert_symbol takes the names 'float16' and 'bfloat16', not NumPy's bfloat16 dtype object.
    return _amp.convert_hybrid_block(net, target_dtype=DTYPE_TABLE[dtype].amp_target, ctx=ctx,
                                     cast_optional_params=True)
