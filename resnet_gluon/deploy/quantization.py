"""INT8 inference: MXNet's oneDNN quantization (``mxnet.contrib.quantization``), calibrated on real images.

Nothing here imports Horovod or DALI.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Union

import mxnet as mx
import numpy as np
from mxnet import gluon

from .._core.files import PathLike
from ..data.recordio import read_records, record_files
from ..data.preprocessing import Preprocessing, preprocess

__all__ = ["calibration_batches", "quantize"]


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

    Raises
    ------
    ValueError
        For an unknown ``calib_mode`` or ``granularity``.
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
