import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _has_gpu() -> bool:
    import mxnet as mx

    try:
        return mx.context.num_gpus() > 0
    except mx.MXNetError:
        return False


def pytest_collection_modifyitems(config, items):
    from resnet_gluon._core.amp import bfloat16_supported
    from resnet_gluon._core.runtime import cpu_flags

    skips = {}
    if not _has_gpu():
        skips["gpu"] = pytest.mark.skip(reason="needs a GPU (none found by mxnet)")
    if not bfloat16_supported():
        skips["bf16"] = pytest.mark.skip(reason="this CPU has no oneDNN bfloat16 support (needs AVX-512)")
    if not {"amx_tile", "amx_bf16"} <= cpu_flags():
        skips["amx"] = pytest.mark.skip(reason="this CPU has no AMX (amx_tile, amx_bf16 flags)")
    for item in items:
        for marker, skip in skips.items():
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    import mxnet as mx
    import numpy as np

    mx.random.seed(0)
    np.random.seed(0)


def horovodrun(np_: int, script: str, *args: str, timeout: float = 600, env=None) -> subprocess.CompletedProcess:
    """Run ``python script args`` under ``horovodrun -np np_`` with Gloo on this host; fail loudly on error."""
    exe = shutil.which("horovodrun", path=os.path.dirname(sys.executable)) or shutil.which("horovodrun")
    assert exe, "horovodrun is not installed in this environment (run tools/setup_env.sh)"
    cmd = [exe, "-np", str(np_), "-H", f"localhost:{np_}", "--gloo", sys.executable, script, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc
