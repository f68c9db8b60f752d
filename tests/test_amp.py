"""amp: what 'auto' picks (test_runtime.py, with AMX) and the bfloat16 conversion for inference."""
import json

import mxnet as mx

from resnet_gluon._core import amp
from resnet_gluon.models.blocks import BasicBlock, ResNet


def test_bfloat16_conversion_builds_a_bfloat16_graph(monkeypatch):
    # MXNet's convert_symbol wants the name 'bfloat16', not NumPy's bfloat16 dtype (it asserted before). Building the
    # graph needs no bfloat16 kernel, so this runs on any CPU; running it needs AVX-512 (test_predictor.py, bf16).
    monkeypatch.setattr(amp, "resolve_dtype", lambda dtype, ctx=None, **kw: dtype)
    net = ResNet(BasicBlock, (1, 1), classes=4, stem_channels=16)
    net.initialize()
    converted = amp.convert(net, "bfloat16", input_shape=(1, 3, 32, 32))
    assert isinstance(converted, mx.gluon.SymbolBlock)
    dtypes = {name: str(p.dtype) for name, p in converted.collect_params().items()}
    # cast_optional_params: convolution and dense weights are stored in bfloat16, not cast on every call
    conv = [d for n, d in dtypes.items() if n.endswith("weight") and "batchnorm" not in n and "bn" not in n]
    assert conv and all("bfloat16" in d for d in conv), dtypes
    graph = json.loads(converted(mx.sym.var("data")).tojson(remove_amp_cast=False))
    assert "amp_cast" in {n["op"] for n in graph["nodes"]}
