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

On CPUs with AMX (Intel Xeon 4th generation and newer), :func:`enable_amx` (also called by ``import
resnet_gluon`` before mxnet loads) turns on oneDNN's AMX kernels, which MXNet 1.9.1's oneDNN 2.4 leaves off;
:func:`onednn_isa` names the instruction set oneDNN's kernels use in this process.
"""
from __future__ import annotations

import ctypes
import os
import platform
import sys
from typing import Dict, FrozenSet, List, Optional

from . import cuda_libs as _cuda_libs

__all__ = ["cpu_thread_defaults", "apply_cpu_thread_defaults", "default_data_threads", "preload_cuda_libraries",
           "num_gpus", "gpu_device_id", "default_context", "place_parameters", "cpu_flags", "enable_amx",
           "amx_enabled", "amx_status", "onednn_isa"]

# Linux's arch_prctl request for the AMX tile state (arch/x86/include/uapi/asm/prctl.h, Linux >= 5.16) and the
# x86-64 system call number of arch_prctl.
_SYS_ARCH_PRCTL = 158
_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18
_ISA_VARIABLE = "DNNL_MAX_CPU_ISA"
_AMX_ISA = "AVX512_CORE_AMX"
#: oneDNN's CPU instruction sets from the least to the most capable, as named by DNNL_MAX_CPU_ISA.
_ISA_ORDER = ("sse41", "avx", "avx2", "avx512_core", "avx512_core_vnni", "avx512_core_bf16", "avx512_core_amx")
_amx = {"enabled": False, "reason": "not tried (mxnet was imported before resnet_gluon)", "set_variable": False}


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
    looked for them) or when ``RESNET_GLUON_NO_CUDA_PRELOAD=1``. See :mod:`resnet_gluon._core.cuda_libs` for why a
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


def place_parameters(net, ctx, *, initialize: bool = False) -> None:
    """Put the parameters of ``net`` (a Gluon Block) on ``ctx`` (an ``mx.Context``): initialised ones are moved
    there (a no-op where they already are). While some are not initialised nothing is moved; with ``initialize``
    those are initialised on ``ctx`` (``net.initialize``: its own or Gluon's default initializers), as ``fit``
    does; without it, as ``Predictor`` does for a network the caller initialises later, they are left alone."""
    params = net.collect_params()
    try:
        contexts = {c for p in params.values() for c in p.list_ctx()}
    except RuntimeError:  # some parameter is not initialised (Gluon raises on list_ctx)
        if initialize:
            net.initialize(ctx=ctx)
        return
    if contexts and contexts != {ctx}:
        params.reset_ctx(ctx)


def cpu_flags() -> FrozenSet[str]:
    """The CPU's feature flags as Linux lists them (``/proc/cpuinfo``; empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _request_amx_permission() -> Optional[str]:
    """Ask Linux for the AMX tile state for this process; None when granted, else why not."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) != 0:
        err = ctypes.get_errno()
        return f"Linux refused the AMX tile state ({os.strerror(err)}; it needs Linux >= 5.16)"
    return None


def enable_amx() -> bool:
    """Turn on oneDNN's AMX kernels for this process where the CPU and Linux allow it; returns whether they are on.

    MXNet 1.9.1 bundles oneDNN 2.4, which uses AMX only when ``DNNL_MAX_CPU_ISA=AVX512_CORE_AMX`` is set, and
    which never asks Linux for the AMX tile state, so that setting alone kills the process ("Illegal instruction").
    This asks Linux for the state first (``arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)``) and only then
    sets the variable. Measured on a 2-core Xeon with AMX (issue #21): bfloat16 training 1.63x float32 with AMX,
    0.76x without it.

    Must run before mxnet is loaded (``import resnet_gluon`` calls it); afterwards it changes nothing and returns
    the state. The permission belongs to this process: every process that computes (``horovodrun`` workers,
    benchmark subprocesses, notebook kernels) gets it by importing resnet_gluon before mxnet. ``import
    resnet_gluon`` removes the variable again once oneDNN has read it, so that child processes that load mxnet
    without resnet_gluon do not inherit a setting they cannot run.

    Nothing changes where the CPU has no AMX (``amx_tile`` and ``amx_bf16`` flags), on Linux older than 5.16,
    when ``RESNET_GLUON_NO_AMX=1``, or when ``DNNL_MAX_CPU_ISA`` is already set to something else (yours wins;
    if it names AMX, the permission is still requested, without which it would crash).
    """
    if "mxnet" in sys.modules:
        return _amx["enabled"]
    _amx.update(enabled=False, set_variable=False)
    user_isa = os.environ.get(_ISA_VARIABLE)
    if os.environ.get("RESNET_GLUON_NO_AMX") == "1":
        _amx["reason"] = "switched off (RESNET_GLUON_NO_AMX=1)"
    elif platform.machine() not in ("x86_64", "AMD64") or not sys.platform.startswith("linux"):
        _amx["reason"] = "not an x86-64 Linux machine"
    elif not {"amx_tile", "amx_bf16", "avx512_bf16"} <= cpu_flags():
        _amx["reason"] = "this CPU has no AMX (amx_tile, amx_bf16)"
    elif user_isa is not None and user_isa.upper() != _AMX_ISA:
        _amx["reason"] = f"{_ISA_VARIABLE}={user_isa} is set"
    else:
        refused = _request_amx_permission()
        if refused:
            _amx["reason"] = refused
        else:
            _amx.update(enabled=True, reason="on", set_variable=user_isa is None)
            os.environ[_ISA_VARIABLE] = _AMX_ISA
    return _amx["enabled"]


def _settle_onednn_isa() -> None:
    """After mxnet is loaded: make oneDNN read the ISA variable (one tiny convolution), then remove the variable
    that :func:`enable_amx` set, so that child processes do not inherit it without the AMX permission."""
    if not _amx["set_variable"]:
        return
    import mxnet as mx

    x = mx.nd.ones((1, 4, 4, 4))
    mx.nd.Convolution(x, mx.nd.ones((4, 4, 1, 1)), kernel=(1, 1), num_filter=4, no_bias=True).wait_to_read()
    os.environ.pop(_ISA_VARIABLE, None)
    _amx["set_variable"] = False


def amx_enabled() -> bool:
    """Whether oneDNN's AMX kernels are on in this process (see :func:`enable_amx`)."""
    return _amx["enabled"]


def amx_status() -> str:
    """``'on'``, or why AMX is off in this process (one phrase, e.g. ``'this CPU has no AMX (amx_tile, amx_bf16)'``)."""
    return _amx["reason"]


def onednn_isa() -> str:
    """The instruction set of oneDNN's CPU kernels in this process, as oneDNN names it.

    The most capable of ``sse41``, ``avx``, ``avx2``, ``avx512_core``, ``avx512_core_vnni``, ``avx512_core_bf16``
    (from the CPU's flags) and ``avx512_core_amx`` (only when :func:`amx_enabled`), capped by a
    ``DNNL_MAX_CPU_ISA`` you set; oneDNN 2.4's own dispatch follows the same order (its verbose log's ``isa:``).
    """
    flags = cpu_flags()
    isa = "any"
    for name, needs in (("sse41", {"sse4_1"}), ("avx", {"avx"}), ("avx2", {"avx2"}),
                        ("avx512_core", {"avx512f", "avx512bw", "avx512vl", "avx512dq"}),
                        ("avx512_core_vnni", {"avx512_vnni"}), ("avx512_core_bf16", {"avx512_bf16"})):
        if needs <= flags:
            isa = name
    if _amx["enabled"]:
        isa = "avx512_core_amx"
    cap = os.environ.get(_ISA_VARIABLE, "").lower()
    if cap in _ISA_ORDER and isa in _ISA_ORDER and _ISA_ORDER.index(cap) < _ISA_ORDER.index(isa):
        isa = cap
    return isa
