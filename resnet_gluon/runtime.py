"""Process-level settings: CPU threading for MXNet, the CUDA libraries of a GPU build, and choosing CPU or GPU
at run time.

MXNet reads its threading variables once, when it is first imported, so
:func:`apply_cpu_thread_defaults` must run before ``import mxnet``; ``import resnet_gluon`` calls it when
mxnet is not imported yet. It only fills variables that are unset: yours always win.

The values were chosen by measurement on a 2-core machine (``benchmarks/threads.py`` reprints it): there
MXNet's own default runs a single OpenMP thread, and a ResNet-50 v1.5 training step (32 px, batch 128) ran
at 67 img/s with it and at about 105 img/s with ``OMP_NUM_THREADS=2``.

With a CUDA build of mxnet, :func:`preload_cuda_libraries` (also called by ``import resnet_gluon``) must likewise
run before ``import mxnet``: it loads the CUDA libraries installed as wheels that ``libmxnet.so`` needs.
"""
from __future__ import annotations

import os
import sys
from typing import Dict, List, Optional

from . import _cuda_libs

__all__ = ["cpu_thread_defaults", "apply_cpu_thread_defaults", "default_data_threads", "preload_cuda_libraries",
           "num_gpus", "gpu_device_id", "default_context"]


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


def preload_cuda_libraries() -> List[str]:
    """Load the CUDA libraries installed as wheels (``nvidia-*-cu11``, ``nvidia-nvjpeg-cu12``) that a CUDA build of
    mxnet and DALI's 'mixed' decoder need; returns the files loaded.

    Does nothing (returns ``[]``) with the CPU build of mxnet, once mxnet is imported (the loader has already
    looked for them) or when ``RESNET_GLUON_NO_CUDA_PRELOAD=1``. See :mod:`resnet_gluon._cuda_libs` for why a
    preload rather than ``LD_LIBRARY_PATH``.
    """
    if "mxnet" in sys.modules or os.environ.get("RESNET_GLUON_NO_CUDA_PRELOAD") == "1":
        return []
    return _cuda_libs.preload()


def num_gpus() -> int:
    """GPUs MXNet can use here (0 with the CPU build of mxnet)."""
    import mxnet as mx

    try:
        return mx.context.num_gpus()
    except mx.MXNetError:
        return 0


def _gpu_count() -> int:
    return num_gpus()  # the module's function, looked up at call time (the parameter below shadows it)


def gpu_device_id(local_rank: Optional[int] = None, *, num_gpus: Optional[int] = None) -> int:
    """The GPU of a process: its Horovod local rank, one GPU per process (the reference's mapping).

    Parameters
    ----------
    local_rank : int, optional
        The process's rank on its machine; default Horovod's local rank (0 without ``horovodrun``).
    num_gpus : int, optional
        GPUs on this machine; default :func:`num_gpus`.

    Returns
    -------
    int
        The device ordinal for ``mx.gpu(...)`` and DALI's ``device_id``: ``local_rank``.

    Raises
    ------
    ValueError
        When ``local_rank >= num_gpus``: rather than an "invalid device ordinal" deep inside CUDA, a message
        saying how many processes the machine's GPUs can take. Processes never share a GPU: each would hold
        its own copy of the model and its own cuDNN workspaces.
    """
    from . import dist

    if local_rank is None:
        local_rank = dist.local_rank()
    if local_rank < 0:
        raise ValueError(f"local_rank must be >= 0, got {local_rank}")
    gpus = _gpu_count() if num_gpus is None else num_gpus
    if local_rank < gpus:
        return local_rank
    if gpus == 0:
        raise ValueError(f"local rank {local_rank} has no GPU: MXNet sees no GPU on this machine (the CPU build "
                         "of mxnet, no NVIDIA driver, or CUDA_VISIBLE_DEVICES hides them); train on the CPU, or "
                         "install a CUDA build (MXNET_DIST=mxnet-cu112 tools/setup_env.sh) on a machine with a GPU")
    processes = max(local_rank + 1, dist.local_size())
    raise ValueError(f"local rank {local_rank} has no GPU: this machine has {gpus} GPU(s) but {processes} processes "
                     f"run on it; run at most {gpus} process(es) per machine (horovodrun -np N -H host1:{gpus},"
                     f"host2:{gpus},...), one per GPU")


def default_context():
    """This worker's device: ``mx.gpu(gpu_device_id())`` when mxnet sees a GPU, else the CPU.

    Raises
    ------
    ValueError
        When this machine runs more processes than it has GPUs (see :func:`gpu_device_id`).
    """
    import mxnet as mx

    return mx.gpu(gpu_device_id()) if num_gpus() > 0 else mx.cpu()
