import json
import os
import subprocess
import sys

import mxnet as mx
import pytest

from resnet_gluon._core import dist, runtime


# --- one GPU per Horovod local rank -------------------------------------------------------------------------------

def test_gpu_device_id_is_the_local_rank_when_the_machine_has_that_gpu():
    assert runtime.gpu_device_id(0, num_gpus=1) == 0
    assert runtime.gpu_device_id(3, num_gpus=8) == 3


def test_gpu_device_id_more_processes_than_gpus_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(dist, "local_size", lambda: 2)
    with pytest.raises(ValueError) as err:
        runtime.gpu_device_id(1, num_gpus=1)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("local rank 1 has no GPU: this machine has 1 GPU(s) but 2 processes run on it")
    assert "at most 1 process(es) per machine" in message and "-H host1:1" in message
    monkeypatch.setattr(dist, "local_size", lambda: 4)
    with pytest.raises(ValueError, match=r"local rank 2 has no GPU: this machine has 2 GPU\(s\) but 4 processes"):
        runtime.gpu_device_id(2, num_gpus=2)


def test_gpu_device_id_without_any_gpu_says_so():
    with pytest.raises(ValueError, match="local rank 0 has no GPU: MXNet sees no GPU on this machine"):
        runtime.gpu_device_id(0, num_gpus=0)
    with pytest.raises(ValueError, match="local_rank must be >= 0"):
        runtime.gpu_device_id(-1, num_gpus=1)


def test_gpu_device_id_defaults_come_from_horovod_and_mxnet(monkeypatch):
    monkeypatch.setattr(runtime, "num_gpus", lambda: 2)
    monkeypatch.setattr(dist, "local_rank", lambda: 1)
    monkeypatch.setattr(dist, "local_size", lambda: 3)
    assert runtime.gpu_device_id() == 1
    monkeypatch.setattr(dist, "local_rank", lambda: 2)
    with pytest.raises(ValueError, match=r"local rank 2 has no GPU: this machine has 2 GPU\(s\) but 3 processes"):
        runtime.gpu_device_id()


# ------------------------------------------------------------------------------------------ AMX, oneDNN's ISA
def _fresh(code: str, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("DNNL_MAX_CPU_ISA", "RESNET_GLUON_NO_AMX")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**environ, **env})


_STATE = ("import json, os, resnet_gluon; from resnet_gluon import runtime, amp; "
          "print(json.dumps(dict(on=runtime.amx_enabled(), why=runtime.amx_status(), isa=runtime.onednn_isa(), "
          "auto=amp.resolve_dtype('auto'), var=os.environ.get('DNNL_MAX_CPU_ISA'))))")


def test_amx_switch_turns_it_off_on_any_cpu():
    proc = _fresh(_STATE, RESNET_GLUON_NO_AMX="1")
    state = json.loads(proc.stdout.strip().splitlines()[-1])
    assert state == dict(on=False, why="switched off (RESNET_GLUON_NO_AMX=1)", isa=state["isa"], auto="float32",
                         var=None), state
    assert state["isa"] != "avx512_core_amx"


def test_without_amx_nothing_changes_and_auto_is_float32():
    if {"amx_tile", "amx_bf16"} <= runtime.cpu_flags():
        pytest.skip("this CPU has AMX: test_amx_kernels_run_and_children_are_safe covers it")
    state = json.loads(_fresh(_STATE).stdout.strip().splitlines()[-1])
    assert state == dict(on=False, why="this CPU has no AMX (amx_tile, amx_bf16)", isa=runtime.onednn_isa(),
                         auto="float32", var=None), state


@pytest.mark.amx
def test_amx_kernels_run_and_children_are_safe():
    # oneDNN's verbose log names the kernels: with AMX on, bfloat16 convolutions run on avx512_core_amx ones.
    code = ("import subprocess, sys, os, resnet_gluon, mxnet as mx; from resnet_gluon import runtime; "
            "assert runtime.amx_enabled(), runtime.amx_status(); "
            "assert 'DNNL_MAX_CPU_ISA' not in os.environ, 'children would inherit the ISA without the permission'; "
            "b = lambda a: mx.nd.amp_cast(a, dtype='bfloat16'); "
            "mx.nd.Convolution(b(mx.nd.ones((8, 64, 14, 14))), b(mx.nd.ones((64, 64, 3, 3))), kernel=(3, 3), "
            "num_filter=64, no_bias=True, pad=(1, 1)).wait_to_read(); "
            "child = subprocess.run([sys.executable, '-c', 'import mxnet as mx; mx.nd.Convolution(mx.nd.ones((1, 4, "
            "4, 4)), mx.nd.ones((4, 4, 1, 1)), kernel=(1, 1), num_filter=4, no_bias=True).wait_to_read(); print(7)'], "
            "capture_output=True, text=True); assert child.stdout.strip() == '7', child; print('ISA', runtime.onednn_isa())")
    proc = _fresh(code, DNNL_VERBOSE="1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ISA avx512_core_amx" in proc.stdout
    assert "amx" in "".join(line for line in proc.stdout.splitlines() if line.startswith("dnnl_verbose,exec")), \
        proc.stdout[-3000:]


@pytest.mark.parametrize("flags,cap,isa", [
    ({"sse4_1", "avx", "avx2", "fma"}, None, "avx2"),
    ({"sse4_1", "avx", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq"}, None, "avx512_core"),
    ({"sse4_1", "avx", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16"}, None,
     "avx512_core_bf16"),
    ({"sse4_1", "avx", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni"}, "AVX2", "avx2"),
])
def test_onednn_isa_from_the_cpu_flags_and_the_users_cap(monkeypatch, flags, cap, isa):
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset(flags))
    if cap:
        monkeypatch.setenv("DNNL_MAX_CPU_ISA", cap)
    else:
        monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert runtime.onednn_isa() == isa


def test_auto_picks_bfloat16_only_where_amx_is_on(monkeypatch):
    from resnet_gluon._core import amp

    monkeypatch.setattr(amp, "_initialized", None)
    monkeypatch.setattr(amp, "bfloat16_supported", lambda: True)  # an AVX512_BF16 CPU
    monkeypatch.setattr(runtime, "amx_enabled", lambda: False)
    assert amp.resolve_dtype("auto", mx.cpu()) == "float32"      # bfloat16 without AMX: 0.76x float32
    monkeypatch.setattr(runtime, "amx_enabled", lambda: True)
    assert amp.resolve_dtype("auto", mx.cpu()) == "bfloat16"
    assert amp.resolve_dtype("auto", mx.gpu(0)) == "float16"


def test_place_parameters_moves_initialised_ones_and_initialises_only_when_asked():
    from mxnet import gluon

    place_parameters = runtime.place_parameters
    net = gluon.nn.Dense(2, in_units=3)
    place_parameters(net, mx.cpu(1))  # Predictor: an uninitialised network is left alone
    with pytest.raises(RuntimeError):
        net.weight.list_ctx()
    place_parameters(net, mx.cpu(1), initialize=True)  # fit: initialised where it runs
    assert net.weight.list_ctx() == [mx.cpu(1)]
    place_parameters(net, mx.cpu(0))
    assert net.weight.list_ctx() == net.bias.list_ctx() == [mx.cpu(0)]
