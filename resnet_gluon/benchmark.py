"""Training and inference speed: images/s and latency percentiles for a model, batch size, dtype and data source.

- :func:`measure` runs one configuration in this process (under ``horovodrun`` too, as one of several
  workers) and returns its figures, warm-up epochs left out.
- :func:`sweep` runs every workers x batch size pair in a fresh process each (MXNet's AMP and thread settings
  are process-wide): ``python -m resnet_gluon.benchmark`` for one worker, ``horovodrun -np N python -m
  resnet_gluon.benchmark`` for several. ``resnet-gluon benchmark`` is a front end to it.
- :func:`forward_speed` times a forward function on one batch; :func:`step_speed` a bare training step or forward
  pass of a model (ours or gluoncv's); :func:`inference_speed` a :class:`~resnet_gluon.deploy.predictor.Predictor` per
  dtype (or ONNX Runtime); :func:`make_jpeg_records` writes realistic JPEG records to read.
- :func:`in_fresh_process` runs :func:`measure`, :func:`step_speed` or :func:`inference_speed` in a new Python
  process (``python -m resnet_gluon.benchmark --function NAME``), as the scripts in ``benchmarks/`` do to
  compare settings MXNet reads once per process.

Figures: ``total_ips`` (images/s over all workers, data loading included), ``latency_avg`` and
``latency_50/90/95/99/100`` (seconds per batch), as in the reference's benchmark report.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .evaluation import SPEED_METRICS

__all__ = ["measure", "sweep", "forward_speed", "step_speed", "inference_speed", "make_jpeg_records",
           "in_fresh_process", "LATENCY_KEYS"]

#: The speed figures :func:`measure` averages over its epochs: images/s (data loading included), latencies (s);
#: :data:`resnet_gluon.evaluation.SPEED_METRICS`.
LATENCY_KEYS = SPEED_METRICS


def _check(**options) -> Dict:
    """The errors :func:`measure` would raise for ``options``, before any process starts; returns every argument
    of :func:`measure`, defaults filled in."""
    try:
        bound = inspect.signature(measure).bind(**options)
    except TypeError as err:
        raise TypeError(f"benchmark options: {err}") from None
    bound.apply_defaults()
    warmup, epochs, dtype, only_inference = map(bound.arguments.get, ("warmup", "epochs", "dtype", "only_inference"))
    if warmup >= epochs:
        raise ValueError(f"warmup ({warmup}) must be smaller than epochs ({epochs}) (--warmup, --epochs)")
    if dtype == "int8" and not only_inference:
        raise ValueError("dtype int8 is for inference: set only_inference (add --only-inference)")
    if bound.arguments["backend"] != "mxnet" and not only_inference:
        raise ValueError(f"backend {bound.arguments['backend']!r} is for inference: set only_inference (add "
                         "--only-inference); training runs on MXNet")
    return dict(bound.arguments)


def measure(*, arch: str = "resnet50_v1_5", batch_size: int = 32, dtype: str = "auto", image_size: int = 224,
            data_backend: str = "synthetic", data_root: Optional[str] = None, iterations: int = 20,
            epochs: int = 3, warmup: int = 1, only_inference: bool = False, classes: Optional[int] = None,
            data_threads: Optional[int] = None, backend: str = "mxnet", accumulate: int = 1) -> Dict:
    """Train (or run inference) for ``epochs`` epochs and return the mean figures of the epochs after ``warmup``.

    Parameters
    ----------
    arch : str
        A registered model name.
    batch_size : int
        Images per worker per step.
    dtype : str
        'auto', a training dtype, or with ``only_inference`` also 'int8' (calibrated on validation images).
    image_size : int
        Crop size in pixels.
    data_backend : {'synthetic', 'dali-cpu', 'dali-gpu', 'mxnet'}
        Synthetic data (one random batch on the device, ``iterations`` batches an epoch) or a real pipeline
        over ``data_root`` (whole epochs).
    classes : int, optional
        Default: ``classes.json`` in ``data_root``, else 1000.
    backend : {'mxnet', 'openvino'}
        The inference engine with ``only_inference`` (:class:`~resnet_gluon.deploy.predictor.Predictor`).
    accumulate : int
        Training: batches per optimizer update (``fit(accumulate=...)``); latencies stay per batch.

    Returns
    -------
    dict
        ``workers``, ``batch_size``, ``accumulate``, ``dtype`` (as resolved), ``backend``, ``cpu_isa``
        (:func:`resnet_gluon._core.runtime.onednn_isa`), ``epochs`` (measured), :data:`LATENCY_KEYS` (latencies: seconds
        until each batch's result exists) and ``peak_rss_mib``, this process's peak resident memory so far
        (``ru_maxrss``; run it in a fresh process, :func:`in_fresh_process`, to compare settings).

    Raises
    ------
    ValueError
        ``warmup >= epochs``; int8 for training; the openvino backend for training.
    FileNotFoundError
        A backend that reads files without ``data_root``, or a ``data_root`` that is not a folder.
    """
    import mxnet as mx

    from ._core import amp, dist
    from .models import registry as models
    from .data import pipelines
    from .data.recordio import num_classes
    from .evaluation import evaluate
    from .data.preprocessing import Preprocessing
    from ._core.runtime import default_context, onednn_isa

    _check(warmup=warmup, epochs=epochs, dtype=dtype, only_inference=only_inference, backend=backend)
    classes = classes or num_classes(data_root)
    preprocessing = Preprocessing.for_size(image_size)
    train, val = pipelines.imagenet(data_root, batch_size=batch_size, backend=data_backend, classes=classes,
                                    preprocessing=preprocessing, num_batches=iterations, num_threads=data_threads,
                                    seed=0)
    net = models.get_model(arch, classes=classes)
    ctx = default_context()
    if only_inference:
        from .deploy.predictor import Predictor

        net.initialize(ctx=ctx)
        calibration = None
        if dtype == "int8":  # calibrate on validation images (synthetic: the repeated random batch)
            calibration = (os.path.join(data_root, "val.rec") if data_root else
                           mx.io.NDArrayIter(next(iter(val))[0].as_in_context(mx.cpu()), batch_size=batch_size,
                                             data_name="data"))
        predictor = Predictor(net, preprocessing=preprocessing, dtype=dtype, calibration=calibration,
                              calibration_options=dict(batch_size=min(batch_size, 32)), ctx=ctx, batch_size=batch_size,
                              backend=backend)
        dtype = predictor.dtype
        logs = [evaluate(predictor.net, val, ctx=ctx, prefix="") for _ in range(epochs)]
    else:
        from .train.fit import fit

        history = fit(net, train, epochs=epochs, dtype=dtype, warmup_epochs=0, progress=False, accumulate=accumulate)
        logs = [{k: v[i] for k, v in history.history.items()} for i in range(len(history.epochs))]
        dtype = amp.initialized_dtype() or "float32"
    measured = logs[warmup:]
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return dict(workers=dist.size(), batch_size=batch_size, accumulate=accumulate, dtype=dtype, backend=backend,
                cpu_isa=onednn_isa(), epochs=len(measured),
                **{k: float(np.mean([e[k] for e in measured])) for k in LATENCY_KEYS}, peak_rss_mib=peak_kib / 1024)


def sweep(*, num_workers: Sequence[int] = (1,), batch_sizes: Sequence[int] = (32,),
          on_result: Optional[Callable[[Dict], None]] = None, output: Optional[str] = None, **options) -> List[Dict]:
    """:func:`measure` for every workers x batch size pair, each in a fresh process; returns the results in order.

    ``options`` are :func:`measure`'s other keyword arguments (their names and the values :func:`measure`
    refuses are checked before the first run); ``on_result`` is called with each result as it comes. With
    ``output``, the report (``model``, ``mode``, ``dtype``, ``image_size``, ``data_backend`` and ``results``)
    is written there as JSON (atomically).

    Raises
    ------
    TypeError
        An option :func:`measure` does not take.
    ValueError
        ``warmup >= epochs``; int8 for training.
    ChildProcessError
        When a run fails (with the last line of its error output).
    FileNotFoundError
        For more than one worker without ``horovodrun``.
    """
    from ._core.files import atomic_write_json

    spec = _check(**options)
    results = []
    for workers in num_workers:
        for batch in batch_sizes:
            results.append(in_fresh_process("measure", workers=workers, batch_size=batch, **options))
            if on_result:
                on_result(results[-1])
    if output:
        atomic_write_json(output, dict(model=spec["arch"], mode="inference" if spec["only_inference"] else "training",
                                       dtype=spec["dtype"], image_size=spec["image_size"],
                                       data_backend=spec["data_backend"], results=results))
    return results


def in_fresh_process(function: str, *, workers: int = 1, env: Optional[Dict[str, str]] = None, **kwargs):
    """Call ``function`` (a name in ``FRESH_PROCESS_FUNCTIONS``) with ``kwargs`` in a new Python process.

    MXNet reads its thread and engine settings once per process, and AMP stays on in a process once on: a
    comparison of such settings needs a process per setting. Under ``workers > 1`` the process is ``horovodrun
    -np workers``, and rank 0's result comes back. ``env`` replaces the child's environment. The result must
    be JSON (a dict or list of figures).

    Raises
    ------
    ValueError
        An unknown ``function``.
    ChildProcessError
        When the process fails, with the last error line of its output.
    FileNotFoundError
        For more than one worker without ``horovodrun``.
    """
    from ._core.dist import worker_command

    if function not in FRESH_PROCESS_FUNCTIONS:
        raise ValueError(f"unknown benchmark function {function!r}; choose one of {', '.join(FRESH_PROCESS_FUNCTIONS)}")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        proc = subprocess.run([*worker_command(workers), "-m", "resnet_gluon.benchmark", "--function", function,
                               json.dumps(kwargs), out], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, env=env)
        if proc.returncode or not os.path.isfile(out):
            lines = [line for line in proc.stderr.splitlines() if "Error" in line] or \
                proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
            what = f"benchmark of {workers} worker(s) x batch {kwargs.get('batch_size', 32)}" \
                if function == "measure" else f"{function}({json.dumps(kwargs)})"
            raise ChildProcessError(f"{what} failed: {lines[-1]}")
        with open(out) as f:
            return json.load(f)


def forward_speed(run: Callable[[object], object], batch, *, warmup: int = 3, iterations: int = 10) -> Dict:
    """Time ``run(batch)`` (which must wait for its result) ``iterations`` times after ``warmup`` calls.

    Returns ``img_s``, ``p50_ms``, ``p99_ms`` and ``iterations`` for a batch of ``len(batch)`` images.
    """
    for _ in range(warmup):
        run(batch)
    lat = []
    for _ in range(iterations):
        start = time.perf_counter()
        run(batch)
        lat.append(time.perf_counter() - start)
    lat = np.asarray(lat)
    return dict(img_s=len(batch) / lat.mean(), p50_ms=1e3 * np.percentile(lat, 50),
                p99_ms=1e3 * np.percentile(lat, 99), iterations=len(lat))


def step_speed(*, model: str = "resnet50_v1_5", mode: str = "train", dtype: str = "float32", batch_size: int = 32,
               image_size: int = 224, steps: int = 10, warmup: int = 3) -> Dict:
    """Speed of a bare Gluon training step (forward, softmax cross-entropy, backward, SGD with momentum) or
    forward pass of one model on one random batch, waiting for each step's result.

    Parameters
    ----------
    model : str
        A registered model name, or ``'gluoncv:NAME'`` for a gluoncv model zoo network (e.g.
        ``'gluoncv:resnet50_v1b'``, the peer of ``resnet50_v1_5``); 1000 classes, random weights.
    mode : {'train', 'infer'}
    dtype : {'float32', 'bfloat16'}
        bfloat16: AMP for training, a converted network for inference (CPUs with AVX-512).

    Raises
    ------
    ValueError
        Another mode or dtype.

    Returns
    -------
    dict
        :func:`forward_speed`'s figures of one step.
    """
    import mxnet as mx
    from mxnet import autograd, gluon

    from ._core import amp
    from .models import registry as models

    if mode not in ("train", "infer") or dtype not in ("float32", "bfloat16"):
        raise ValueError(f"step_speed measures mode 'train' or 'infer' in dtype 'float32' or 'bfloat16', not "
                         f"{mode!r} in {dtype!r}")
    if dtype == "bfloat16" and mode == "train":
        amp.init("bfloat16")
    if model.startswith("gluoncv:"):
        import gluoncv

        net = gluoncv.model_zoo.get_model(model[len("gluoncv:"):], pretrained=False, classes=1000)
    else:
        net = models.get_model(model, classes=1000)
    net.initialize(mx.init.Xavier())
    net.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.normal(shape=(batch_size, 3, image_size, image_size))
    y = mx.nd.array([i % 1000 for i in range(batch_size)])
    if mode == "infer" and dtype == "bfloat16":
        net = amp.convert(net, "bfloat16", input_shape=x.shape)
        net.hybridize(static_alloc=True, static_shape=True)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.01, "momentum": 0.9})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

    def train_step(batch):
        with autograd.record():
            loss = loss_fn(net(batch), y)
        loss.backward()
        trainer.step(batch_size)
        loss.wait_to_read()

    run = train_step if mode == "train" else lambda batch: net(batch).wait_to_read()
    return forward_speed(run, x, warmup=warmup, iterations=steps)


def inference_speed(*, dtype: str = "float32", batch_sizes: Sequence[int] = (1, 16, 64), image_size: int = 224,
                    images: int = 320, arch: str = "resnet50_v1_5", engine: str = "mxnet") -> List[Dict]:
    """Inference speed of a random-weight model per batch size, through a :class:`~resnet_gluon.deploy.predictor.Predictor`
    of ``dtype`` (int8: calibrated on 64 random images) with ``engine='mxnet'`` or ``'openvino'`` (its backend),
    or, with ``engine='onnxruntime'``, its ONNX export.

    Each batch size runs ``max(5, images // batch)`` timed forward passes after 3 warm-up ones. Returns
    :func:`forward_speed`'s figures with ``batch_size``, ``dtype`` (as resolved: 'auto' names what it took) and
    ``engine``, one dict per batch size.

    Raises
    ------
    ValueError
        For an ``engine`` other than 'mxnet', 'openvino' or 'onnxruntime'.
    """
    import mxnet as mx

    from .models import registry as models
    from .data.preprocessing import Preprocessing

    preprocessing = Preprocessing.for_size(image_size)
    net = models.get_model(arch, classes=1000)
    net.initialize(mx.init.Xavier())
    rng = np.random.RandomState(0)
    if engine == "onnxruntime":
        import onnxruntime

        from .deploy.export import export_onnx

        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(net, os.path.join(tmp, f"{arch}.onnx"), preprocessing=preprocessing)
            session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        run, to_batch = (lambda x: session.run(None, {"data": x})[0]), (lambda x: x)
    elif engine in ("mxnet", "openvino"):
        from .deploy.predictor import Predictor

        calibration = mx.io.NDArrayIter(rng.randn(64, 3, image_size, image_size).astype("float32"), batch_size=32,
                                        data_name="data")
        predictor = Predictor(net, preprocessing=preprocessing, dtype=dtype, calibration=calibration, backend=engine)
        run, to_batch = (lambda x: predictor.net(x).wait_to_read()), mx.nd.array
        dtype = predictor.dtype  # 'auto' resolved
    else:
        raise ValueError(f"unknown inference engine {engine!r}; choose 'mxnet', 'openvino' or 'onnxruntime'")
    results = []
    for batch_size in batch_sizes:
        batch = to_batch(rng.randn(batch_size, 3, image_size, image_size).astype("float32"))
        figures = forward_speed(run, batch, iterations=max(5, images // batch_size))
        results.append(dict(batch_size=batch_size, dtype=dtype, engine=engine, **figures))
    return results


def make_jpeg_records(prefix: str, images: int, *, seed: int = 0, size: Tuple[int, int] = (500, 375),
                      quality: int = 90):
    """Write ``images`` realistic JPEGs (smooth colour fields with noise, ``size`` (width, height), about 100 KB at
    500x375, as ImageNet's average photo) as RecordIO at ``prefix`` with labels ``i % 10``.

    Returns ``(RecordFiles, mean bytes per image)``.
    """
    import cv2

    from .data.recordio import write_records

    rng = np.random.RandomState(seed)
    items = []
    for i in range(images):
        base = cv2.resize(rng.randint(0, 256, (12, 16, 3)).astype(np.uint8), size, interpolation=cv2.INTER_CUBIC)
        image = np.clip(base + rng.normal(0, 18, base.shape), 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        items.append((i % 10, buf.tobytes(), f"{i}.jpg"))
    files = write_records(prefix, items, overwrite=True)
    return files, sum(len(b) for _, b, _ in items) / images


#: What :func:`in_fresh_process` (and ``python -m resnet_gluon.benchmark --function NAME``) can run.
FRESH_PROCESS_FUNCTIONS = {"measure": measure, "step_speed": step_speed, "inference_speed": inference_speed}


def _main(argv: Optional[List[str]] = None) -> int:
    """``python -m resnet_gluon.benchmark [--function NAME] SPEC_JSON OUT_JSON``: one call of a benchmark function
    (default :func:`measure`) with the keyword arguments SPEC_JSON; rank 0 writes the result to OUT_JSON."""
    parser = argparse.ArgumentParser(prog="python -m resnet_gluon.benchmark", description=_main.__doc__)
    parser.add_argument("--function", default="measure", choices=sorted(FRESH_PROCESS_FUNCTIONS))
    parser.add_argument("spec", help="the function's keyword arguments as a JSON object")
    parser.add_argument("output", help="where rank 0 writes the result (JSON)")
    args = parser.parse_args(argv)
    from ._core.dist import is_rank_zero
    from ._core.files import atomic_write_json

    result = FRESH_PROCESS_FUNCTIONS[args.function](**json.loads(args.spec))
    if is_rank_zero():
        atomic_write_json(args.output, result)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
