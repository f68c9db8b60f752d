#!/usr/bin/env bash
# Creates .venv with the verified stack (../shared/ENVIRONMENT.md) from nothing; a no-op when done.
#
#   tools/setup_env.sh            # CPU build of mxnet (the default; development and CI machines)
#   MXNET_DIST=mxnet-cu112 tools/setup_env.sh   # a CUDA build instead (GPU machines)
#
# Order matters: the pinned stack first, horovod last, built with --no-build-isolation so that its
# build sees the installed mxnet (otherwise it silently builds without MXNet support).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv="${VENV:-$root/.venv}"
mxnet_dist="${MXNET_DIST:-mxnet}"
horovod_version=0.28.1

die() { echo "setup_env: error: $*" >&2; exit 1; }
say() { echo "setup_env: $*" >&2; }

# The embedded demo data set (Debian package); cheap to check, so it runs before the no-op test.
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "${SKIP_DATASET:-0}" != 1 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing the Debian package dataset-fashion-mnist (the embedded demo data set)"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null ||
           { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null; }; }; then
      say "warning: could not install dataset-fashion-mnist; the demo needs it: run 'apt-get install dataset-fashion-mnist'"
    fi
  else
    say "note: the demo needs the Debian package dataset-fashion-mnist: run 'sudo apt-get install dataset-fashion-mnist'"
  fi
fi

# What the environment is made of; a change to any of it rebuilds.
stamp_key=$(cat requirements.txt constraints.txt setup.py tools/setup_env.sh | sha256sum | cut -c1-16)-$mxnet_dist
stamp="$venv/.resnet_gluon-$stamp_key"
if [ -f "$stamp" ]; then
  exit 0
fi

python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      python=$candidate; break
    fi
  done
fi
[ -n "$python" ] || die "Python 3.11 is required (mxnet 1.9.1 and the pinned stack are verified on 3.11 only); install python3.11 or set PYTHON=/path/to/python3.11"
command -v cmake >/dev/null 2>&1 || die "cmake is required to build horovod; install it (e.g. 'apt-get install cmake')"
command -v g++ >/dev/null 2>&1 || die "g++ is required to build horovod; install it (e.g. 'apt-get install g++')"

if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv"
  "$python" -m venv "$venv" || die "could not create a virtual environment; install the venv module (e.g. 'apt-get install python3.11-venv')"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)

pip_or_die() {
  if ! "${pip[@]}" install "$@"; then
    die "pip install $* failed. If the lines above say a connection failed, this machine cannot reach the package registry (PyPI): fix the network or a pip index mirror (PIP_INDEX_URL) and run this script again"
  fi
}

say "installing the pinned stack (mxnet distribution: $mxnet_dist)"
if [ "$mxnet_dist" = mxnet ]; then
  pip_or_die -r requirements.txt -c constraints.txt
else
  # Never two mxnet distributions in one environment: swap the CPU pin for the CUDA build.
  grep -v '^mxnet==' requirements.txt > "$venv/requirements-gpu.txt"
  grep -v '^mxnet==' constraints.txt > "$venv/constraints-gpu.txt"
  "${pip[@]}" uninstall -y mxnet >/dev/null 2>&1 || true
  pip_or_die -r "$venv/requirements-gpu.txt" -c "$venv/constraints-gpu.txt" "$mxnet_dist==1.9.1"
fi

onnxruntime_version=1.17.3
if ! "$venv/bin/python" -c "import onnxruntime" >/dev/null 2>&1; then
  # --no-deps: its wheels declare numpy>=1.24.2, which mxnet 1.9.1 cannot use; it runs on numpy 1.23.5
  # (checked below), and its other dependencies are in requirements.txt.
  say "installing onnxruntime $onnxruntime_version (without its numpy pin)"
  pip_or_die --no-deps "onnxruntime==$onnxruntime_version"
fi

if ! "$venv/bin/python" -c "import horovod.mxnet" >/dev/null 2>&1; then
  say "building horovod $horovod_version against mxnet (about 2 minutes on 2 cores)"
  HOROVOD_WITH_MXNET=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
  HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 \
    pip_or_die --no-build-isolation --no-cache-dir -c constraints.txt "horovod==$horovod_version"
fi
pip_or_die --no-build-isolation --no-deps -e .

say "checking the stack"
check=$("$venv/bin/horovodrun" --check-build 2>&1) || die "horovodrun --check-build failed: $check"
echo "$check" | grep -q '\[X\] MXNet' || die "horovod was built without MXNet support; remove $venv and run again"
echo "$check" | grep -q '\[X\] Gloo' || die "horovod was built without Gloo; remove $venv and run again"
"$venv/bin/python" -c "import nvidia.dali.plugin.mxnet" ||
  die "nvidia.dali.plugin.mxnet does not import; the DALI wheel must be nvidia-dali-cuda120==1.35.0"
"$venv/bin/python" -c "import numpy, onnxruntime, onnx.mapping; assert numpy.__version__ == '1.23.5', numpy.__version__" ||
  die "numpy must stay 1.23.5 with onnx/onnxruntime beside it; remove $venv and run again"
"$venv/bin/python" -W error::UserWarning -c "import resnet_gluon" || die "import resnet_gluon failed"

rm -f "$venv"/.resnet_gluon-*
touch "$stamp"
say "environment ready: $venv"
