"""Training and inference speed: images/s and latency percentiles for a model, batch size, dtype and data source.

- :func:`measure` runs one configuration in this process (under ``horovodrun`` too, as one of several
  workers) and returns its figures, warm-up epochs left out.
- :func:`sweep` runs every workers x batch size pair in a fresh process each (MXNet's AMP and thread settings
  are process-wide): ``python -m resnet_gluon.benchmark`` for one worker, ``horovodrun -np N python -m
  resnet_gluon.benchmark`` for several. ``resnet-gluon benchmark`` is a front end to it.
- :func:`forward_speed` times a forward function on one batch (the scripts in ``benchmarks/`` use it).

Figures: ``total_ips`` (images/s over all workers, data loading included), ``latency_avg`` and
``latency_50/90/95/99/100`` (seconds per batch), as in the reference's benchmark report.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

__all__ = ["measure", "sweep", "forward_speed", "LATENCY_KEYS"]

LATENCY_KEYS = ("total_ips", "latency_avg", "latency_50", "latency_90", "latency_95", "latency_99", "latency_100")


def _data(*, data_backend: str, data_root: Optional[str], batch_size: int, iterations: int, classes: int,
          image_size: int, data_threads: Optional[int]):
    from . import pipelines
    from .preprocessing import Preprocessing

    preprocessing = Preprocessing.for_size(image_size)
    if data_backend == "synthetic":
        from .runtime import default_context

        make = lambda: pipelines.SyntheticData(batch_size=batch_size, classes=classes, num_batches=iterations,
                                               preprocessing=preprocessing, ctx=default_context())
        return preprocessing, make(), make()
    if not data_root:
        raise ValueError(f"data_root is required with data_backend={data_backend!r} (a folder with train.rec and "
                         "val.rec)")
    train, val = pipelines.imagenet(data_root, batch_size=batch_size, backend=data_backend,
                                    preprocessing=preprocessing, num_threads=data_threads, seed=0)
    return preprocessing, train, val


def measure(*, arch: str = "resnet50_v1_5", batch_size: int = 32, dtype: str = "auto", image_size: int = 224,
            data_backend: str = "synthetic", data_root: Optional[str] = None, iterations: int = 20,
            epochs: int = 3, warmup: int = 1, only_inference: bool = False, classes: Optional[int] = None,
            data_threads: Optional[int] = None) -> Dict:
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

    Returns
    -------
    dict
        ``workers``, ``batch_size``, ``dtype`` (as resolved), ``epochs`` (measured) and :data:`LATENCY_KEYS`.

    Raises
    ------
    ValueError
        ``warmup >= epochs``; int8 for training; a real backend without ``data_root``.
    """
    import mxnet as mx

    from . import amp, dist, models
    from .data import load_classes
    from .evaluation import evaluate
    from .runtime import default_context

    if warmup >= epochs:
        raise ValueError(f"warmup ({warmup}) must be smaller than epochs ({epochs})")
    if dtype == "int8" and not only_inference:
        raise ValueError("dtype int8 is for inference: set only_inference (--only-inference)")
    if classes is None:
        classes = (len(load_classes(data_root) or []) if data_root else 0) or 1000
    preprocessing, train, val = _data(data_backend=data_backend, data_root=data_root, batch_size=batch_size,
                                      iterations=iterations, classes=classes, image_size=image_size,
                                      data_threads=data_threads)
    net = models.get_model(arch, classes=classes)
    ctx = default_context()
    if only_inference:
        from .inference import Predictor

        net.initialize(ctx=ctx)
        dtype = "int8" if dtype == "int8" else amp.resolve_dtype(dtype, ctx)
        calibration = None
        if dtype == "int8":  # calibrate on validation images (synthetic: the repeated random batch)
            calibration = (os.path.join(data_root, "val.rec") if data_root else
                           mx.io.NDArrayIter(next(iter(val))[0].as_in_context(mx.cpu()), batch_size=batch_size,
                                             data_name="data"))
        predictor = Predictor(net, preprocessing=preprocessing, dtype=dtype, calibration=calibration,
                              calibration_options=dict(batch_size=min(batch_size, 32)), ctx=ctx, batch_size=batch_size)
        logs = [evaluate(predictor.net, val, ctx=ctx, prefix="") for _ in range(epochs)]
    else:
        from .training import fit

        history = fit(net, train, epochs=epochs, dtype=dtype, warmup_epochs=0, progress=False)
        logs = [{k: v[i] for k, v in history.history.items()} for i in range(len(history.epochs))]
        dtype = amp.initialized_dtype() or "float32"
    measured = logs[warmup:]
    return dict(workers=dist.size(), batch_size=batch_size, dtype=dtype, epochs=len(measured),
                **{k: float(np.mean([e[k] for e in measured])) for k in LATENCY_KEYS})


def sweep(*, num_workers: Sequence[int] = (1,), batch_sizes: Sequence[int] = (32,),
          on_result: Optional[Callable[[Dict], None]] = None, **options) -> List[Dict]:
    """:func:`measure` for every workers x batch size pair, each in a fresh process; returns the results in order.

    ``options`` are :func:`measure`'s other keyword arguments; ``on_result`` is called with each result as it
    comes.

    Raises
    ------
    ChildProcessError
        When a run fails (with the last line of its error output).
    FileNotFoundError
        For more than one worker without ``horovodrun``.
    """
    from .dist import worker_command

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in num_workers:
            for batch in batch_sizes:
                out = os.path.join(tmp, f"{workers}x{batch}.json")
                spec = json.dumps(dict(options, batch_size=batch))
                proc = subprocess.run([*worker_command(workers), "-m", "resnet_gluon.benchmark", spec, out],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                if proc.returncode or not os.path.isfile(out):
                    lines = [line for line in proc.stderr.splitlines() if "Error" in line] or \
                        proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
                    raise ChildProcessError(f"benchmark of {workers} worker(s) x batch {batch} failed: {lines[-1]}")
                with open(out) as f:
                    results.append(json.load(f))
                if on_result:
                    on_result(results[-1])
    return results


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


def _main(argv: Optional[List[str]] = None) -> int:
    """``python -m resnet_gluon.benchmark SPEC_JSON OUT_JSON``: one :func:`measure` run (rank 0 writes OUT)."""
    parser = argparse.ArgumentParser(prog="python -m resnet_gluon.benchmark", description=_main.__doc__)
    parser.add_argument("spec", help="measure()'s keyword arguments as a JSON object")
    parser.add_argument("output", help="where rank 0 writes the result (JSON)")
    args = parser.parse_args(argv)
    from .dist import is_rank_zero
    from .files import atomic_write_json

    result = measure(**json.loads(args.spec))
    if is_rank_zero():
        atomic_write_json(args.output, result)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
