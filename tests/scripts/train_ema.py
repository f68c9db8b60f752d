"""Train a small net with a moving average of the weights, checkpoints and a report (the kill -9 and the
two-worker tests); plainly or under horovodrun (each worker a shard of every batch of 8).

usage: train_ema.py PREFIX EPOCHS [SLEEP_PER_BATCH [bn|plain]]
'bn': a tiny ResNet with BatchNorm, 16 px; 'plain': the BatchNorm-free tiny_net, 8 px (identical on every worker).
Each rank writes its averages to PREFIX-averages-rank{r}.params at the end.
"""
import os
import sys
import time

import mxnet as mx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from helpers import ArrayBatches, quadrant_problem, tiny_net  # noqa: E402
from resnet_gluon import Callback, Checkpoint, Report, fit
from resnet_gluon._core import dist  # noqa: E402
from resnet_gluon.models.blocks import BasicBlock, ResNet  # noqa: E402

prefix, epochs = sys.argv[1], int(sys.argv[2])
delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
kind = sys.argv[4] if len(sys.argv) > 4 else "bn"
dist.init()


class Slow(Callback):
    """Slows batches down so the test can kill the run in the middle of an epoch; saves the averages at the end."""

    def on_batch_end(self, batch, logs):
        time.sleep(delay)

    def on_train_end(self, logs):
        ema = self.state.ema
        mx.nd.save(f"{prefix}-averages-rank{dist.rank()}.params", {f"{i:03d}": a for i, a in
                                                                   enumerate(ema.averages.values())})


mx.random.seed(3)
size = 16 if kind == "bn" else 8
x, y = quadrant_problem(64, size=size)
vx, vy = quadrant_problem(16, size=size, seed=3)
net = ResNet(BasicBlock, (1,), classes=4, stem_channels=8) if kind == "bn" else tiny_net()
share = 8 // dist.size()
fit(net, ArrayBatches(x, y, share, dist.rank(), dist.size()), ArrayBatches(vx, vy, share, dist.rank(), dist.size()),
    epochs=epochs, lr=0.1, warmup_epochs=0, progress=False, dtype="float32", ema_decay=0.8, ema_warmup=True,
    callbacks=[Checkpoint(prefix), Report(prefix + "-report.json", plot=False), Slow()])
print("DONE", flush=True)
