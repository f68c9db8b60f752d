"""tools/setup_env.sh: what it refuses before touching anything, and its no-op once done (fast; builds nothing)."""
import hashlib
import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "tools", "setup_env.sh")


def _gpu_driver_present() -> bool:
    for ldconfig in ("ldconfig", "/sbin/ldconfig"):
        if shutil.which(ldconfig):
            listing = subprocess.run([ldconfig, "-p"], capture_output=True, text=True).stdout
            if "libcuda.so.1 " in listing:
                return True
    for folder in os.environ.get("LD_LIBRARY_PATH", "").split(":"):
        if folder and os.path.exists(os.path.join(folder, "libcuda.so.1")):
            return True
    return bool(shutil.which("nvidia-smi")) and subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


def _setup_env(venv, **env):
    return subprocess.run(["bash", SCRIPT], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "VENV": str(venv), "SKIP_DATASET": "1", **env})


@pytest.mark.skipif(_gpu_driver_present(), reason="this machine has an NVIDIA driver")
def test_cuda_build_without_a_gpu_driver_stops_at_once_with_one_line(tmp_path):
    venv = tmp_path / "v"
    result = _setup_env(venv, MXNET_DIST="mxnet-cu112")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("setup_env: error: MXNET_DIST=mxnet-cu112 needs an NVIDIA GPU driver "
                               "(libcuda.so.1 not found)")
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not venv.exists()                      # checked before anything is created or installed


def test_unknown_mxnet_dist_is_a_one_line_error(tmp_path):
    venv = tmp_path / "v"
    result = _setup_env(venv, MXNET_DIST="mxnet-cu999")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "setup_env: error: MXNET_DIST=mxnet-cu999 is not a build this script installs; use mxnet (CPU, the "
        "default), mxnet-cu102, mxnet-cu112 or mxnet-cu117"]
    assert not venv.exists()


def test_cpu_environment_with_the_current_stamp_is_left_alone(tmp_path):
    # The stamp names what the environment is made of (the files below) and the mxnet distribution.
    files = ["requirements.txt", "constraints.txt", "requirements-gpu.txt", "setup.py", "tools/setup_env.sh"]
    digest = hashlib.sha256(b"".join(open(os.path.join(REPO, f), "rb").read() for f in files)).hexdigest()[:16]
    venv = tmp_path / "v"
    venv.mkdir()
    (venv / f".resnet_gluon-{digest}-mxnet").touch()
    result = _setup_env(venv)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert sorted(os.listdir(venv)) == [f".resnet_gluon-{digest}-mxnet"]   # no python looked for, nothing made
