"""The CUDA libraries of a GPU build, installed as wheels, made findable before mxnet and DALI load them.

MXNet 1.9.1's CUDA wheels (``mxnet-cu112``, ``mxnet-cu117``) link the CUDA 11 runtime, cuBLAS, cuDNN 8, NCCL,
cuFFT, cuSOLVER, cuRAND, NVRTC and NVTX (``mxnet-cu117`` also cuSPARSE) dynamically and ship none of them;
DALI 1.35 (``nvidia-dali-cuda120``) opens ``libnvjpeg.so.12`` for its 'mixed' decoder when a pipeline is built.
``tools/setup_env.sh`` installs them as NVIDIA's wheels (``requirements-gpu.txt``), which put each library in
``site-packages/nvidia/<name>/lib``, a folder no loader searches.

Why a preload rather than ``LD_LIBRARY_PATH``: the loader reads ``LD_LIBRARY_PATH`` once, when a process
starts, so it would have to be set before Python starts (in the venv's activate script); ``.venv/bin/python``,
``.venv/bin/resnet-gluon``, ``make`` and ``horovodrun``'s workers run without activating the venv and would
miss it, and it would leak into every child process. Loading the libraries by full path first (what PyTorch
does with the same wheels) works in any process that imports ``resnet_gluon`` before ``mxnet``: when
``libmxnet.so`` is loaded later, the loader matches its needed names (``libcudart.so.11.0``, ...) against the
libraries already loaded, and DALI's ``dlopen("libnvjpeg.so.12")`` finds the loaded one the same way.

Standard library only, so that ``tools/setup_env.sh`` can run it as a script before mxnet can be imported:
``python resnet_gluon/_core/cuda_libs.py dirs`` prints the library folders (``:``-separated, for
``LD_LIBRARY_PATH`` while horovod is built and checked); ``... check`` imports mxnet after the preload and
prints what it lacks; ``... dist`` prints the installed mxnet distribution.
"""
from __future__ import annotations

import ctypes
import glob
import os
import re
import sys
from typing import List, Optional, Sequence

__all__ = ["mxnet_distribution", "cuda_major", "wheel_packages", "library_dirs", "preload"]

# site-packages/nvidia/<name>/lib of the wheels in requirements-gpu.txt
CUDA11_PACKAGES = ("cuda_runtime", "cublas", "cudnn", "cufft", "curand", "cusolver", "cusparse", "cuda_nvrtc",
                   "nccl", "nvtx")
# DALI 1.35 is a CUDA 12 build whatever mxnet's CUDA version is.
DALI_PACKAGES = ("nvjpeg",)
# The OpenCL loader shipped in nvidia-cuda-runtime-cu11 is not used and would shadow the system's.
_SKIP = ("libOpenCL.so",)
_LOADED: List[ctypes.CDLL] = []  # kept referenced for the life of the process


def mxnet_distribution(path: Optional[Sequence[str]] = None) -> Optional[str]:
    """The installed mxnet distribution (``'mxnet'``, ``'mxnet-cu112'``, ...), or None.

    Read from the ``*.dist-info`` folder names on ``sys.path`` (about 1 ms; ``importlib.metadata`` takes 40-60
    ms for the ~100 distributions of the venv, on every import).
    """
    for entry in sys.path if path is None else path:
        for info in sorted(glob.glob(os.path.join(entry or ".", "mxnet*-*.*-info"))):
            match = re.match(r"(mxnet(?:[-_]cu\d+[a-z0-9]*)?)-\d", os.path.basename(info), re.IGNORECASE)
            if match:
                return match.group(1).lower().replace("_", "-")
    return None


def cuda_major(distribution: Optional[str]) -> Optional[int]:
    """The CUDA major version of an mxnet distribution: ``'mxnet-cu112'`` -> 11, ``'mxnet-cu102'`` -> 10;
    None for the CPU build."""
    match = re.fullmatch(r"mxnet-cu(\d+)\d[a-z0-9]*", distribution or "")
    return int(match.group(1)) if match else None


def wheel_packages(distribution: Optional[str]) -> tuple:
    """The ``nvidia/<name>`` wheel folders an mxnet distribution needs: the CUDA 11 ones for ``mxnet-cu11x``,
    nvJPEG 12 (DALI) for every CUDA build, none for the CPU build. ``mxnet-cu102`` needs CUDA 10.2 libraries,
    which exist only as NVIDIA's system packages, not as wheels."""
    major = cuda_major(distribution)
    if major is None:
        return ()
    return (CUDA11_PACKAGES if major == 11 else ()) + DALI_PACKAGES


def library_dirs(packages: Sequence[str], path: Optional[Sequence[str]] = None) -> List[str]:
    """The existing ``<entry>/nvidia/<package>/lib`` folders, for every entry of ``sys.path`` (or ``path``)."""
    dirs = []
    for entry in sys.path if path is None else path:
        for package in packages:
            lib = os.path.join(os.path.abspath(entry or "."), "nvidia", package, "lib")
            if os.path.isdir(lib) and lib not in dirs:
                dirs.append(lib)
    return dirs


def preload(distribution: Optional[str] = None, *, path: Optional[Sequence[str]] = None) -> List[str]:
    """Load (``RTLD_GLOBAL``) every library in the wheel folders the installed mxnet distribution needs;
    returns the files loaded (``[]`` for the CPU build).

    The wheels' libraries depend on each other (cuSOLVER on cuBLAS, cuDNN's parts on cuDNN) and find each other
    only once loaded, so the ones that fail are retried until a round loads nothing more. What still fails is
    left to the loader of mxnet, whose error names the missing library.
    """
    distribution = distribution or mxnet_distribution(path)
    files = []
    for lib in library_dirs(wheel_packages(distribution), path):
        files += sorted(f for f in glob.glob(os.path.join(lib, "lib*.so*"))
                        if not os.path.basename(f).startswith(_SKIP))
    loaded: List[str] = []
    pending = files
    while pending:
        failed = []
        for file in pending:
            try:
                _LOADED.append(ctypes.CDLL(file, mode=ctypes.RTLD_GLOBAL))
                loaded.append(file)
            except OSError:
                failed.append(file)
        if len(failed) == len(pending):
            break
        pending = failed
    return loaded


def _check() -> int:
    """Preload, then import mxnet; print one line saying what it lacks, if anything. Exit status 0 or 1."""
    distribution = mxnet_distribution()
    loaded = preload(distribution)
    try:
        import mxnet  # noqa: F401
    except OSError as err:
        print(f"{distribution} does not load: {err} ({len(loaded)} libraries preloaded from "
              f"{', '.join(library_dirs(wheel_packages(distribution))) or 'no nvidia-* wheel'})")
        return 1
    return 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "dist":
        print(mxnet_distribution() or "")
    elif command == "dirs":
        print(":".join(library_dirs(wheel_packages(mxnet_distribution()))))
    elif command == "check":
        sys.exit(_check())
    else:
        sys.exit(f"usage: python {sys.argv[0]} dist|dirs|check")
