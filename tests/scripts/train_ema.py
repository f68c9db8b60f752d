"""Train a tiny ResNet with a moving average of the weights, checkpoints and a report (used by the kill -9 test).

usage: train_ema.py PREFIX EPOCHS [SLEEP_PER_BATCH]
"""
import os
import sys
import time

import mxnet as mx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from helpers import ArrayBatches, quadrant_problem  # noqa: E402
from resnet_gluon import Callback, Checkpoint, Report, fit  # noqa: E402
from resnet_gluon.blocks import BasicBlock, ResNet  # noqa: E402

prefix, epochs = sys.argv[1], int(sys.argv[2])
delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0


class Slow(Callback):
    """Slows batches down so the test can kill the run in the middle of an epoch."""

    def on_batch_end(self, batch, logs):
        time.sleep(delay)


mx.random.seed(3)
x, y = quadrant_problem(64, size=16)
vx, vy = quadrant_problem(16, size=16, seed=3)
net = ResNet(BasicBlock, (1,), classes=4, stem_channels=8)
fit(net, ArrayBatches(x, y, 8), ArrayBatches(vx, vy, 8), epochs=epochs, lr=0.1, warmup_epochs=0, progress=False,
    dtype="float32", ema_decay=0.8, ema_warmup=True,
    callbacks=[Checkpoint(prefix), Report(prefix + "-report.json", plot=False), Slow()])
print("DONE", flush=True)
