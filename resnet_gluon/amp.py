"""Mixed precision: the one place that imports ``mxnet.contrib.amp``.

- Training: :func:`init` switches MXNet's AMP on for the whole process — float16 on GPUs (with dynamic
  loss scaling, see :func:`enable_loss_scaling`), bfloat16 on CPUs (MXNet has no float16 GEMM on CPU;
  bfloat16 has float32's range and needs no loss scaling). ``fit`` calls it for you before the first
  forward pass.
- Inference: :func:`convert` turns a trained, hybridized block into a low-precision one.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Optional

import mxnet as mx
from mxnet.contrib import amp as _amp
from mxnet.contrib.amp.loss_scaler import LossScaler

__all__ = ["DTYPES", "bfloat16_supported", "resolve_dtype", "init", "initialized_dtype", "enable_loss_scaling", "scale_loss",
           "loss_scale", "convert", "check_not_run"]

DTYPES = ("float32", "float16", "bfloat16", "auto")
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


def resolve_dtype(dtype: str, ctx: Optional[mx.Context] = None) -> str:
    """Turn ``'auto'`` into the fastest precision here and check the others.

    'auto' is float16 on a GPU context; on CPU it is bfloat16 where the CPU supports it
    (:func:`bfloat16_supported`) and float32 otherwise.

    Raises
    ------
    ValueError
        For an unknown dtype, float16 on a CPU context (MXNet cannot run float16 GEMMs on CPU), or bfloat16 on
        a CPU without oneDNN bfloat16 support.
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    on_gpu = (ctx.device_type == "gpu") if ctx is not None else mx.context.num_gpus() > 0
    if dtype == "auto":
        return "float16" if on_gpu else ("bfloat16" if bfloat16_supported() else "float32")
    if dtype == "float16" and not on_gpu:
        raise ValueError("float16 needs a GPU: MXNet has no float16 GEMM on CPU ('FP16 gemm on cpu not "
                         "implemented'); use dtype='bfloat16' (the CPU's mixed precision) or 'auto'")
    if dtype == "bfloat16" and not on_gpu and not bfloat16_supported():
        raise ValueError("bfloat16 is not supported on this CPU: MXNet's oneDNN bfloat16 kernels need AVX-512 "
                         "(ideally AVX512_BF16); use dtype='float32', or 'auto' to pick the best available")
    return dtype


def check_not_run(net: mx.gluon.HybridBlock) -> None:
    """Raise if ``net`` has a hybridized graph already: AMP would not reach it."""
    if getattr(net, "_cached_graph", ()):
        raise RuntimeError(
            "AMP must be initialised before the network's first forward pass: this network already built its "
            "hybridized graph in float32, which AMP cannot change. Call resnet_gluon.amp.init() (or fit(..., "
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
    _amp.init(target_dtype=dtype if dtype == "float16" else _amp.amp.bfloat16)
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
        A converted ``SymbolBlock`` taking and returning float32 ``input_shape``-like tensors.
    """
    ctx = ctx or mx.cpu()
    dtype = resolve_dtype(dtype, ctx)
    if dtype == "float32":
        return net
    net.hybridize()
    net(mx.nd.zeros(input_shape, ctx=ctx))
    target = "float16" if dtype == "float16" else _amp.amp.bfloat16
    return _amp.convert_hybrid_block(net, target_dtype=target, ctx=ctx)
