"""bfloat16 AMP training on CPU lowers the loss of a small learnable problem (own process: AMP is global)."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import mxnet as mx

from helpers import ArrayBatches, quadrant_problem
from resnet_gluon._core import amp
from resnet_gluon import fit
from resnet_gluon.models.blocks import BasicBlock, ResNet

mx.random.seed(0)
net = ResNet(BasicBlock, (1, 1), classes=4, stem_channels=16)
x, y = quadrant_problem(256, size=32)
history = fit(net, ArrayBatches(x, y, 32), epochs=4, dtype="bfloat16", lr=0.1, warmup_epochs=0, progress=False)
# The graph really runs in bfloat16: AMP inserted casts into the cached graph.
# tojson() drops amp_cast nodes by default (MXNet 1.9: remove_amp_cast=True), so ask for them.
graph = net._cached_graph[1].tojson(remove_amp_cast=False) if net._cached_graph else ""
print("RESULT " + json.dumps({"loss": history.history["loss"], "dtype": amp.initialized_dtype(),
                              "amp_cast_in_graph": "amp_cast" in graph}))
try:
    amp.init("float32")
except RuntimeError as err:
    print("SWITCH_ERROR " + str(err))
