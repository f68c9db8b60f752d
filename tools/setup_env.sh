#!/usr/bin/env bash
# Creates .venv with the verified stack (../shared/ENVIRONMENT.md) from nothing; a no-op when done.
#
#   tools/setup_env.sh            # CPU build of mxnet (the default; development and CI machines)
#   MXNET_DIST=mxnet-cu112 tools/setup_env.sh   # a CUDA build instead (GPU machines): mxnet-cu102/cu112/cu117
#
# Order matters: the pinned stack first, horovod last, built with --no-build-isolation so that its
# build sees the installed mxnet (otherwise it silently builds without MXNet support).
#
# CUDA builds (README "GPUs") need an NVIDIA driver and a CUDA toolkit (nvcc), checked before anything is
# installed: horovod's build compiles GPU code when mxnet is a CUDA build (horovod/mxnet/CMakeLists.txt calls
# add_cuda()). They add the CUDA libraries as wheels (requirements-gpu.txt), which resnet_gluon/_core/cuda_libs.py
# loads before mxnet, and build horovod with NCCL (the wheel's). Horovod is rebuilt whenever the mxnet
# distribution changes ($venv/.horovod-build records what it was built against).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv="${VENV:-$root/.venv}"
mxnet_dist="${MXNET_DIST:-mxnet}"
horovod_version=0.28.1
user_ld_library_path=${LD_LIBRARY_PATH:-}

die() { echo "setup_env: error: $*" >&2; exit 1; }
say() { echo "setup_env: $*" >&2; }

case "$mxnet_dist" in
  mxnet) cuda=0 ;;
  mxnet-cu102|mxnet-cu112|mxnet-cu117) cuda=1 ;;
  *) die "MXNET_DIST=$mxnet_dist is not a build this script installs; use mxnet (CPU, the default), mxnet-cu102, mxnet-cu112 or mxnet-cu117" ;;
esac

gpu_driver_found() {  # libcuda.so.1 (the driver's library) where the loader looks, or a working nvidia-smi
  local ldconfig d IFS=:
  for ldconfig in ldconfig /sbin/ldconfig; do
    if command -v "$ldconfig" >/dev/null 2>&1 && "$ldconfig" -p 2>/dev/null | grep -q 'libcuda\.so\.1 '; then return 0; fi
  done
  for d in ${LD_LIBRARY_PATH:-}; do [ -n "$d" ] && [ -e "$d/libcuda.so.1" ] && return 0; done
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1
}

hvd_ops=none   # horovod's GPU operations
if [ "$cuda" = 1 ]; then
  gpu_driver_found || die "MXNET_DIST=$mxnet_dist needs an NVIDIA GPU driver (libcuda.so.1 not found) and this machine has none: install the driver (>= 525.60.13, see README 'GPUs') on a GPU machine, or leave MXNET_DIST unset for the CPU build"
  # MXNet 1.9.1's wheels hold GPU code for compute capability 5.0-8.6 only and no PTX (README "GPUs").
  if caps=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null) && [ -n "$caps" ] &&
     ! echo "$caps" | grep -Eq '^ *[5-8]\.'; then
    die "MXNET_DIST=$mxnet_dist cannot run on the GPU(s) here (compute capability $(echo $caps | tr ' ' ',')): MXNet 1.9.1's wheels carry GPU code for compute capability 5.0-8.6 only and no PTX; Hopper (9.0) and newer need an MXNet built from source for them (README 'GPUs')"
  fi
  nvcc=$(command -v nvcc || true)
  [ -z "$nvcc" ] && [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ] && nvcc="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
  [ -n "$nvcc" ] || die "MXNET_DIST=$mxnet_dist needs a CUDA toolkit (nvcc not found on PATH or in ${CUDA_HOME:-/usr/local/cuda}/bin): horovod's build compiles GPU code against a CUDA build of mxnet; install a CUDA toolkit no newer than the driver supports (CUDA 12 or older for Volta GPUs) and run again"
  hvd_ops=nccl
  # The toolkit's folder, also when nvcc is a wrapper script: nvcc names it (TOP) in a dry run.
  cuda_home=$("$nvcc" --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1 || true)
  cuda_home=$(cd "${cuda_home:-$(dirname "$(readlink -f "$nvcc")")/..}" && pwd)
  # Horovod links the toolkit's CUDA runtime (statically): one newer than the driver cannot start.
  toolkit_cuda=$("$nvcc" --version | grep -o 'release [0-9]*' | grep -o '[0-9]*$' || true)
  driver_cuda=$(nvidia-smi 2>/dev/null | grep -o 'CUDA Version: [0-9]*' | grep -o '[0-9]*$' || true)
  if [ -n "$toolkit_cuda" ] && [ -n "$driver_cuda" ] && [ "$toolkit_cuda" -gt "$driver_cuda" ]; then
    die "the CUDA toolkit at $cuda_home (CUDA $toolkit_cuda) is newer than this driver supports (CUDA $driver_cuda), so horovod built with it could not use the GPU: update the driver, or put an older toolkit's nvcc first on PATH, and run again"
  fi
fi

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
stamp_key=$(cat requirements.txt constraints.txt requirements-gpu.txt setup.py tools/setup_env.sh | sha256sum | cut -c1-16)-$mxnet_dist
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
# Never two mxnet distributions in one environment: remove another build first.
installed_dist=$("$venv/bin/python" resnet_gluon/_core/cuda_libs.py dist)
if [ -n "$installed_dist" ] && [ "$installed_dist" != "$mxnet_dist" ]; then
  say "removing $installed_dist (replaced by $mxnet_dist)"
  "${pip[@]}" uninstall -y "$installed_dist" >/dev/null
fi
if [ "$mxnet_dist" = mxnet ]; then
  pip_or_die -r requirements.txt -c constraints.txt
else
  # Swap the CPU pin for the CUDA build.
  grep -v '^mxnet==' requirements.txt > "$venv/requirements-stack.txt"
  grep -v '^mxnet==' constraints.txt > "$venv/constraints-stack.txt"
  pip_or_die -r "$venv/requirements-stack.txt" -c "$venv/constraints-stack.txt" "$mxnet_dist==1.9.1"
  if [ "$mxnet_dist" = mxnet-cu102 ]; then
    # CUDA 10.2 exists only as NVIDIA's system packages; the check below names what mxnet lacks.
    say "installing nvJPEG 12 for DALI (mxnet-cu102 needs the CUDA 10.2 toolkit, cuDNN and NCCL installed system-wide)"
    pip_or_die $(grep '^nvidia-nvjpeg-cu12==' requirements-gpu.txt)
  else
    say "installing the CUDA 11 libraries and nvJPEG 12 as wheels (requirements-gpu.txt, about 2.5 GB)"
    pip_or_die -r requirements-gpu.txt
  fi
  why=$("$venv/bin/python" resnet_gluon/_core/cuda_libs.py check) ||
    die "$why; install what it names (README 'GPUs') and run again"
  # For the processes of this script that load mxnet without resnet_gluon (horovod's build, horovodrun).
  export LD_LIBRARY_PATH="$("$venv/bin/python" resnet_gluon/_core/cuda_libs.py dirs)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

onnxruntime_version=1.17.3
if ! "$venv/bin/python" -c "import onnxruntime" >/dev/null 2>&1; then
  # --no-deps: its wheels declare numpy>=1.24.2, which mxnet 1.9.1 cannot use; it runs on numpy 1.23.5
  # (checked below), and its other dependencies are in requirements.txt.
  say "installing onnxruntime $onnxruntime_version (without its numpy pin)"
  pip_or_die --no-deps "onnxruntime==$onnxruntime_version"
fi

# What horovod is built against; venvs from before this record hold a CPU-built horovod.
hvd_record="$venv/.horovod-build"
hvd_want="$mxnet_dist $hvd_ops"
hvd_have=$(cat "$hvd_record" 2>/dev/null || echo "mxnet none")
if [ "$hvd_have" != "$hvd_want" ] && "${pip[@]}" show horovod >/dev/null 2>&1; then
  say "rebuilding horovod: it was built for '$hvd_have', this environment needs '$hvd_want'"
  "${pip[@]}" uninstall -y horovod >/dev/null
fi
if ! "$venv/bin/python" -c "import horovod.mxnet" >/dev/null 2>&1; then
  hvd_env=(HOROVOD_WITH_MXNET=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_WITHOUT_TENSORFLOW=1
           HOROVOD_WITHOUT_PYTORCH=1)
  if [ "$hvd_ops" = nccl ]; then
    hvd_env+=(HOROVOD_GPU_OPERATIONS=NCCL HOROVOD_NCCL_LINK=SHARED
              "HOROVOD_CUDA_HOME=$cuda_home")
    nccl_lib=$(echo "${LD_LIBRARY_PATH:-}" | tr ':' '\n' | grep '/nvidia/nccl/lib$' | head -1 || true)
    if [ -n "$nccl_lib" ]; then   # the nvidia-nccl-cu11 wheel (mxnet-cu102: the system's NCCL)
      # The wheel holds libnccl.so.2 only; horovod's build looks for libnccl.so (and its library keeps this
      # folder as its run path, so that it finds libnccl.so.2 there).
      nccl_home="$venv/horovod-nccl"
      mkdir -p "$nccl_home/lib"
      ln -sfn "${nccl_lib%/lib}/include" "$nccl_home/include"
      ln -sf "$nccl_lib/libnccl.so.2" "$nccl_home/lib/libnccl.so"
      ln -sf "$nccl_lib/libnccl.so.2" "$nccl_home/lib/libnccl.so.2"
      hvd_env+=("HOROVOD_NCCL_HOME=$nccl_home" "HOROVOD_NCCL_INCLUDE=$nccl_home/include" "HOROVOD_NCCL_LIB=$nccl_home/lib")
    fi
    # mxnet's headers include cuBLAS, cuRAND and cuSOLVER headers, which a minimal toolkit lacks: the wheels have them.
    wheel_includes=$(echo "${LD_LIBRARY_PATH:-}" | tr ':' '\n' | sed -n 's|/nvidia/\([a-z_0-9]*\)/lib$|/nvidia/\1/include|p' |
                     while read -r d; do if [ -d "$d" ]; then echo "$d"; fi; done | paste -sd: -)
    [ -n "$wheel_includes" ] && hvd_env+=("CPLUS_INCLUDE_PATH=$wheel_includes${CPLUS_INCLUDE_PATH:+:$CPLUS_INCLUDE_PATH}")
    say "building horovod $horovod_version against $mxnet_dist with NCCL (CUDA toolkit: $cuda_home; 10-30 minutes: it compiles CUDA kernels for every GPU architecture nvcc knows)"
  else
    say "building horovod $horovod_version against $mxnet_dist (about 2 minutes on 2 cores)"
  fi
  env "${hvd_env[@]}" "${pip[@]}" install --no-build-isolation --no-cache-dir -c constraints.txt "horovod==$horovod_version" ||
    die "building horovod failed (the lines above say why). It needs cmake, g++ and the package registry (PyPI)$([ "$hvd_ops" = nccl ] && echo ", and for NCCL the CUDA toolkit at $cuda_home and NCCL (the nvidia-nccl-cu11 wheel; for mxnet-cu102 NCCL installed system-wide)")"
fi
pip_or_die --no-build-isolation --no-deps -e .

say "checking the stack"
check=$("$venv/bin/horovodrun" --check-build 2>&1) || die "horovodrun --check-build failed: $check"
echo "$check" | grep -q '\[X\] MXNet' || die "horovod was built without MXNet support; remove $venv and run again"
echo "$check" | grep -q '\[X\] Gloo' || die "horovod was built without Gloo; remove $venv and run again"
if [ "$hvd_ops" = nccl ]; then
  echo "$check" | grep -q '\[X\] NCCL' || die "horovod was built without NCCL; remove $venv and run again"
fi
if [ "$cuda" = 1 ]; then
  # As users run it: no LD_LIBRARY_PATH of ours, the preload of `import resnet_gluon` finds the libraries.
  gpu_check=$(LD_LIBRARY_PATH="$user_ld_library_path" "$venv/bin/python" -c "
import resnet_gluon, mxnet as mx, horovod.mxnet as hvd
n = mx.context.num_gpus()
assert n > 0, 'mxnet sees no GPU'
assert float((mx.nd.ones((2, 2), ctx=mx.gpu(0)) * 2).sum().asscalar()) == 8, 'a GPU kernel gave a wrong result'
assert hvd.cuda_built() and hvd.nccl_built(), 'horovod.mxnet was built without CUDA or NCCL'
print('%d GPU(s); horovod built with CUDA and NCCL %s' % (n, hvd.nccl_built()))
" 2>&1 | tail -1) || die "$mxnet_dist does not run on this GPU: $gpu_check"
  say "$gpu_check"
fi
"$venv/bin/python" -c "import nvidia.dali.plugin.mxnet" ||
  die "nvidia.dali.plugin.mxnet does not import; the DALI wheel must be nvidia-dali-cuda120==1.35.0"
"$venv/bin/python" -c "import numpy, onnxruntime, onnx.mapping, openvino; assert numpy.__version__ == '1.23.5', numpy.__version__" ||
  die "numpy must stay 1.23.5 with onnx/onnxruntime beside it; remove $venv and run again"
"$venv/bin/python" -W error::UserWarning -c "import resnet_gluon" || die "import resnet_gluon failed"

echo "$hvd_want" > "$hvd_record"
rm -f "$venv"/.resnet_gluon-*
touch "$stamp"
say "environment ready: $venv"
