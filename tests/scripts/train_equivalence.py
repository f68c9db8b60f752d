"""Train a small BatchNorm-free net with fit(); run plainly or under horovodrun.

usage: train_equivalence.py OUT_DIR PER_WORKER_BATCH N_IMAGES
Saves OUT_DIR/params-rank{r}.params and prints the validation metrics fit reports as JSON on rank 0.
(BatchNorm statistics are per worker, as in the reference, so a BN-free net is what can match exactly.)
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import mxnet as mx
from mxnet.gluon import nn

from helpers import ArrayBatches, quadrant_problem
from resnet_gluon import dist, fit

out_dir, batch, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
dist.init()
mx.random.seed(42)
net = nn.HybridSequential()
net.add(nn.Conv2D(8, 3, padding=1, in_channels=3, activation="relu"), nn.MaxPool2D(2),
        nn.Conv2D(8, 3, padding=1, in_channels=8, activation="relu"), nn.GlobalAvgPool2D(), nn.Dense(4, in_units=8))
net.classes = 4
net.initialize(mx.init.Xavier())
x, y = quadrant_problem(n, size=8)
vx, vy = quadrant_problem(13, size=8, seed=1)
train = ArrayBatches(x, y, batch, dist.rank(), dist.size())
val = ArrayBatches(vx, vy, batch, dist.rank(), dist.size())
history = fit(net, train, val, epochs=2, lr=0.05, warmup_epochs=0, progress=False)
net.save_parameters(os.path.join(out_dir, f"params-rank{dist.rank()}.params"))
if dist.rank() == 0:
    print("RESULT " + json.dumps({k: history.history[k] for k in ("val_top1", "val_loss", "val_num_images",
                                                                    "num_images", "loss")}))
