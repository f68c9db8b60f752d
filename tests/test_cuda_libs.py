"""The CUDA libraries of a GPU build of MXNet (_core/cuda_libs.py): the distribution's name and CUDA version, the
pip wheels it needs, preloading them in dependency order."""
import ctypes
import os
import shutil
import subprocess

import pytest

from resnet_gluon._core import cuda_libs as _cuda_libs, runtime


def test_mxnet_distribution_names_and_cuda_versions(tmp_path):
    for name in ("mxnet_cu112-1.9.1.dist-info", "numpy-1.23.5.dist-info"):
        (tmp_path / name).mkdir()
    assert _cuda_libs.mxnet_distribution([str(tmp_path)]) == "mxnet-cu112"
    assert _cuda_libs.mxnet_distribution([str(tmp_path / "nothing")]) is None
    assert [_cuda_libs.cuda_major(d) for d in ("mxnet-cu112", "mxnet-cu117", "mxnet-cu102", "mxnet", None)] == [
        11, 11, 10, None, None]
    assert "cudnn" in _cuda_libs.wheel_packages("mxnet-cu117") and "nvjpeg" in _cuda_libs.wheel_packages("mxnet-cu117")
    assert _cuda_libs.wheel_packages("mxnet-cu102") == ("nvjpeg",)   # CUDA 10.2 has no wheels
    assert _cuda_libs.wheel_packages("mxnet") == ()


def test_installed_mxnet_distribution_matches_its_build():
    import mxnet as mx

    installed = _cuda_libs.mxnet_distribution()
    assert installed is not None and installed.startswith("mxnet")
    assert (_cuda_libs.cuda_major(installed) is not None) == mx.runtime.Features().is_enabled("CUDA")
    assert runtime.preload_cuda_libraries() == []   # mxnet is loaded already: too late, and nothing to do


def _shared_library(folder, soname, source, *link):
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(folder / soname), "-x", "c", "-",
                    *link], input=source.encode(), check=True)
    return str(folder / soname)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build two small shared libraries")
def test_preload_loads_wheel_libraries_that_need_each_other(tmp_path):
    # Two libraries in two wheel folders, where the one loaded first needs the other (as cuSOLVER needs cuBLAS):
    # on its own it does not load; the preload retries it once its dependency is loaded.
    site = tmp_path / "site-packages"
    (site / "mxnet_cu112-1.9.1.dist-info").mkdir(parents=True)
    tag = f"rgtest{os.getpid()}"
    dep = _shared_library(site / "nvidia" / "cublas" / "lib", f"lib{tag}dep.so.1", "int rg_dep(void){return 41;}")
    user = _shared_library(site / "nvidia" / "cuda_runtime" / "lib", f"lib{tag}user.so.1",
                           "int rg_dep(void); int rg_user(void){return rg_dep() + 1;}",
                           f"-L{os.path.dirname(dep)}", f"-l:lib{tag}dep.so.1")
    _shared_library(site / "nvidia" / "cuda_runtime" / "lib", "libOpenCL.so.1", "int rg_cl(void){return 0;}")
    _shared_library(site / "nvidia" / "cusparse" / "lib", f"lib{tag}other.so.1", "int rg_other(void){return 0;}")
    with pytest.raises(OSError, match=f"lib{tag}dep.so.1"):
        ctypes.CDLL(user)
    other = str(site / "nvidia" / "cusparse" / "lib" / f"lib{tag}other.so.1")
    assert _cuda_libs.preload(path=[str(site)]) == [dep, other, user]   # no libOpenCL (not used; would shadow)
    assert ctypes.CDLL(f"lib{tag}user.so.1").rg_user() == 42        # found by name, as libmxnet.so's needs are
    # Only the wheels the mxnet build needs: mxnet-cu102 gets nvJPEG only, the CPU build nothing.
    assert _cuda_libs.preload("mxnet-cu102", path=[str(site)]) == []
    assert _cuda_libs.preload("mxnet", path=[str(site)]) == []
