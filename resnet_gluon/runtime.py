"""Process-level settings: CPU threading for MXNet, and choosing CPU or GPU at run time.

MXNet reads its threading variables once, when it is first imported, so
:func:`apply_cpu_thread_defaults` must run before ``import mxnet``; ``import resnet_gluon`` calls it when
mxnet is not imported yet. It only fills variables that are unset: yours always win.

The values were chosen by measurement on a 2-core machine (``benchmarks/threads.py`` reprints it): there
MXNet's own default runs a single OpenMP thread, and a ResNet-50 v1.5 training step (32 px, batch 128) ran
at 67 img/s with it and at about 105 img/s with ``OMP_NUM_THREADS=2``.
"""
from __future__ import annotations

import os
import sys
from typing import Dict, Optional

__all__ = ["cpu_thread_defaults", "apply_cpu_thread_defaults", "default_data_threads", "num_gpus", "default_context"]


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cores_per_process(local_size: Optional[int]) -> int:
    if local_size is None:
        local_size = int(os.environ.get("HOROVOD_LOCAL_SIZE", os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE", "1")))
    return max(1, _usable_cores() // max(1, local_size))


def cpu_thread_defaults(local_size: Optional[int] = None) -> Dict[str, str]:
    """The threading variables for MXNet on CPU.

    Parameters
    ----------
    local_size : int, optional
        Processes sharing this machine (Horovod's local size); default ``HOROVOD_LOCAL_SIZE`` or 1.
        The cores are split between them.

    Notes
    -----
    No thread pinning (``OMP_PROC_BIND``/``KMP_AFFINITY``): it pins the main thread to one core, and every
    thread and process it starts afterwards (DALI's workers, horovodrun's workers) inherits that single core.
    Measured without it, pinning gained nothing beyond noise.
    """
    threads = _cores_per_process(local_size)
    settings = {
        "OMP_NUM_THREADS": str(threads),
        "MXNET_CPU_WORKER_NTHREADS": "1",
    }
    return settings


def default_data_threads(local_size: Optional[int] = None) -> int:
    """Input-pipeline threads per worker: the reference's 3 (``--dali-threads``), at most this worker's share
    of the cores (at least 1).

    Measured on 2 cores (the embedded demo's training at 28 px, batch 64, DALI CPU, alternating runs): 2 threads
    gave 86.8 img/s, 1 thread 82.4.
    """
    return max(1, min(3, _cores_per_process(local_size)))


def apply_cpu_thread_defaults(local_size: Optional[int] = None) -> Dict[str, str]:
    """Set the unset variables of :func:`cpu_thread_defaults`; returns what was set.

    Does nothing (and returns ``{}``) once mxnet is imported, since it would no longer take effect, or when
    ``RESNET_GLUON_NO_THREAD_DEFAULTS=1``.
    """
    if "mxnet" in sys.modules or os.environ.get("RESNET_GLUON_NO_THREAD_DEFAULTS") == "1":
        return {}
    applied = {k: v for k, v in cpu_thread_defaults(local_size).items() if k not in os.environ}
    os.environ.update(applied)
    return applied


def num_gpus() -> int:
    """GPUs MXNet can use here (0 with the CPU build of mxnet)."""
    import mxnet as mx

    try:
        return mx.context.num_gpus()
    except mx.MXNetError:
        return 0


def default_context():
    """This worker's GPU (Horovod's local rank) when mxnet sees one, else the CPU."""
    import mxnet as mx

    from . import dist

    return mx.gpu(dist.local_rank()) if num_gpus() > 0 else mx.cpu()
