"""Horovod, when present: rank, size and the rank-zero mechanism.

Single process is the default: without ``horovodrun`` (or without horovod installed) the size is 1 and
the rank 0. Horovod is initialised on first use, never at import.
"""
from __future__ import annotations

import functools
import os
import shutil
import sys
from typing import Any, Callable, List, Sequence, TypeVar

__all__ = ["import_horovod", "horovod", "init", "rank", "size", "local_rank", "local_size", "is_rank_zero", "rank_zero_only",
           "under_horovodrun", "worker_command", "allreduce_sum", "broadcast_object", "barrier"]

F = TypeVar("F", bound=Callable)


def under_horovodrun() -> bool:
    """Whether this process was started by ``horovodrun`` (or mpirun) with more than one process."""
    for var in ("HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        if int(os.environ.get(var, "1")) > 1:
            return True
    return False


def worker_command(workers: int) -> List[str]:
    """The command that starts ``workers`` processes of this Python on this host, to be followed by ``-m module``
    or a script: ``[python]`` for one; ``horovodrun -np N -H localhost:N --gloo python`` for more.

    Raises
    ------
    FileNotFoundError
        For more than one worker without ``horovodrun`` beside this Python or on the ``PATH``.
    """
    if workers == 1:
        return [sys.executable]
    exe = shutil.which("horovodrun", path=os.path.dirname(sys.executable)) or shutil.which("horovodrun")
    if exe is None:
        raise FileNotFoundError(f"{workers} workers need horovodrun (pip install horovod, built with MXNet)")
    return [exe, "-np", str(workers), "-H", f"localhost:{workers}", "--gloo", sys.executable]


def import_horovod():
    """The ``horovod.mxnet`` module, not initialised.

    Raises
    ------
    ImportError
        When horovod is not installed with MXNet support, naming the install step.
    """
    try:
        # DALI must be loaded before Horovod's library: the other way round, DALI's first batch crashes
        # the process ("free(): invalid size"; DALI 1.35 + horovod 0.28.1, seen on CPU).
        import nvidia.dali  # noqa: F401
    except ImportError:
        pass
    try:
        import horovod.mxnet as hvd
    except ImportError as err:
        raise ImportError(
            f"horovod with MXNet support is needed ({err}). Install it after mxnet with: HOROVOD_WITH_MXNET=1 "
            "HOROVOD_WITH_GLOO=1 pip install --no-build-isolation horovod==0.28.1 (or run tools/setup_env.sh)"
        ) from err
    return hvd


def horovod():
    """The initialised ``horovod.mxnet`` module (see :func:`import_horovod`)."""
    hvd = import_horovod()
    if not hvd.is_initialized():
        hvd.init()
    return hvd


def _maybe_horovod():
    # Without horovodrun there is nothing to ask horovod; avoid importing it at all then.
    if not under_horovodrun():
        return None
    return horovod()


def init() -> None:
    """Initialise Horovod if this process runs under ``horovodrun``; a no-op otherwise and when done."""
    _maybe_horovod()


def rank() -> int:
    """This worker's rank among all workers (Horovod's, under ``horovodrun``; 0 otherwise)."""
    hvd = _maybe_horovod()
    return hvd.rank() if hvd else 0


def size() -> int:
    """The number of workers (Horovod's, under ``horovodrun``; 1 otherwise)."""
    hvd = _maybe_horovod()
    return hvd.size() if hvd else 1


def local_rank() -> int:
    """This worker's rank among the workers of its host (0 outside ``horovodrun``); the GPU it uses."""
    hvd = _maybe_horovod()
    return hvd.local_rank() if hvd else 0


def local_size() -> int:
    """The number of workers on this host (1 outside ``horovodrun``)."""
    hvd = _maybe_horovod()
    return hvd.local_size() if hvd else 1


def is_rank_zero() -> bool:
    """Whether this worker is rank 0, the one that writes files and prints."""
    return rank() == 0


def rank_zero_only(fn: F) -> F:
    """Run ``fn`` on rank 0 only; elsewhere the call does nothing and returns None."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if is_rank_zero():
            return fn(*args, **kwargs)
        return None

    return wrapper  # type: ignore[return-value]


def allreduce_sum(values: Sequence[float], *, name: str = "resnet_gluon_sum") -> List[float]:
    """The element-wise sum of ``values`` over all workers (float64); ``values`` itself with one worker."""
    if size() == 1:
        return [float(v) for v in values]
    import mxnet as mx

    summed = horovod().allreduce(mx.nd.array(values, dtype="float64"), average=False, name=name)
    return summed.asnumpy().tolist()


def broadcast_object(obj: Any, *, root_rank: int = 0, name: str = "resnet_gluon_object") -> Any:
    """``obj`` of ``root_rank`` on every worker (Horovod's ``broadcast_object``); ``obj`` with one worker.
    Every worker must call it."""
    if size() == 1:
        return obj
    return horovod().broadcast_object(obj, root_rank=root_rank, name=name)


def barrier(name: str = "resnet_gluon_barrier") -> None:
    """Wait until every worker gets here (a no-op with one worker)."""
    allreduce_sum([0.0], name=name)
