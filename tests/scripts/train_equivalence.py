"""Train a small BatchNorm-free net with fit() or with the README's own loop; run plainly or under horovodrun.

usage: train_equivalence.py OUT_DIR PER_WORKER_BATCH N_IMAGES [fit|loop] [scaled]
Saves OUT_DIR/params-rank{r}.params and prints the validation metrics fit reports as JSON on rank 0.
'loop' is the README's "own loop" (Trainer.backward + Trainer.step, an empty last batch included); 'scaled'
turns dynamic loss scaling on (what float16 uses), for both.
(BatchNorm statistics are per worker, as in the reference, so a BN-free net is what can match exactly.)
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import mxnet as mx

from helpers import ArrayBatches, quadrant_problem, readme_loop, tiny_net
from resnet_gluon import Trainer, fit
from resnet_gluon._core import dist

out_dir, batch, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
mode = sys.argv[4] if len(sys.argv) > 4 else "fit"
scaled = len(sys.argv) > 5 and sys.argv[5] == "scaled"
dist.init()
mx.random.seed(42)
net = tiny_net()
x, y = quadrant_problem(n, size=8)
vx, vy = quadrant_problem(13, size=8, seed=1)
train = ArrayBatches(x, y, batch, dist.rank(), dist.size())
val = ArrayBatches(vx, vy, batch, dist.rank(), dist.size())
options = dict(lr=0.05, warmup_epochs=0, epochs=2, loss_scaling=True if scaled else None)
if mode == "fit":
    history = fit(net, train, val, dtype="float32", progress=False, **options)
    result = {k: history.history[k] for k in ("val_top1", "val_loss", "val_num_images", "num_images", "loss")}
else:
    net.hybridize()
    trainer = Trainer(net.collect_params(), batch_size=batch, steps_per_epoch=len(train), **options)
    readme_loop(net, train, trainer, 2)
    result = {"loss_scale": trainer.loss_scale, "loss_scaling": trainer._amp_loss_scaler is not None}
net.save_parameters(os.path.join(out_dir, f"params-rank{dist.rank()}.params"))
if dist.rank() == 0:
    print("RESULT " + json.dumps(result))
