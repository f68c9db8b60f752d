"""ONNX export with ``mxnet.onnx``, and running an exported model in ONNX Runtime (to check it).

Nothing here imports Horovod or DALI.
"""
from __future__ import annotations

import os
from typing import Optional

import mxnet as mx
import numpy as np
from mxnet import gluon

from .._core.files import PathLike, atomic_path
from ..data.preprocessing import Preprocessing

__all__ = ["export_onnx", "onnx_logits"]


def export_onnx(net: gluon.HybridBlock, path: PathLike, *, preprocessing: Preprocessing = Preprocessing(),
                dynamic_batch: bool = True) -> str:
    """Write a float32 network as an ONNX model with ``mxnet.onnx`` (input ``'data'``, ``(N, 3, S, S)`` float32).

    The opset is the newest the installed onnx package knows (onnx 1.14.1: opset 19).

    Parameters
    ----------
    net : HybridBlock
        Trained float32 network. It is hybridized again without backend fusion (use
        :meth:`Predictor.export_onnx <resnet_gluon.deploy.predictor.Predictor.export_onnx>` for a predictor's network).
    path : str or PathLike
        The ``.onnx`` file, written to a temporary name and renamed.
    preprocessing : Preprocessing
        Gives the input size: ``image_size``, the test size (not ``train_image_size``).
    dynamic_batch : bool
        Let the batch dimension vary (else fixed at 1).

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ImportError
        Without the ``onnx`` package (the message names the install step).
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
        with atomic_path(path) as final:
            onnx.save(model, final)
    return path


def onnx_logits(path: PathLike, batch: np.ndarray, *, threads: Optional[int] = None) -> np.ndarray:
    """Run an ONNX model in ONNX Runtime (CPU) on a float32 batch ``(N, 3, H, W)``; returns its first output.

    Raises
    ------
    ImportError
        Without ``onnxruntime`` (the message names the install step).
    """
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
