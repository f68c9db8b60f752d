"""Training-step and inference speed of resnet50_v1_5 against gluoncv's resnet50_v1b, in one run.

    .venv/bin/python benchmarks/model.py [--batch-size 32] [--image-size 224] [--steps 10] [--dtypes float32,bfloat16]

Each measurement runs in its own process (AMP is process-wide), after 3 warm-up steps, and prints img/s
and the ratio ours / gluoncv (>= 1.0 means we add no overhead).
"""
import argparse
import json
import subprocess
import sys
import time

WORKER = r"""
import json, sys, time
import resnet_gluon as rg                         # thread defaults before mxnet
import mxnet as mx
from mxnet import autograd, gluon
which, mode, dtype, bs, size, steps = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:7])
if dtype == "bfloat16" and mode == "train":
    rg.amp.init("bfloat16")
if which == "ours":
    net = rg.resnet50_v1_5(classes=1000)
else:
    import gluoncv
    net = gluoncv.model_zoo.resnet50_v1b(pretrained=False, classes=1000)
net.initialize(mx.init.Xavier())
net.hybridize(static_alloc=True, static_shape=True)
x = mx.nd.random.normal(shape=(bs, 3, size, size)); y = mx.nd.array([i % 1000 for i in range(bs)])
if mode == "infer" and dtype == "bfloat16":
    net = rg.amp.convert(net, "bfloat16", input_shape=x.shape)
    net.hybridize(static_alloc=True, static_shape=True)
trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.01, "momentum": 0.9})
loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
def step():
    if mode == "train":
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward(); trainer.step(bs); loss.wait_to_read()
    else:
        net(x).wait_to_read()
for _ in range(3):
    step()
t = time.perf_counter()
for _ in range(steps):
    step()
print(json.dumps({"img_s": steps * bs / (time.perf_counter() - t)}))
"""


def measure(which, mode, dtype, args):
    proc = subprocess.run([sys.executable, "-c", WORKER, which, mode, dtype, str(args.batch_size),
                           str(args.image_size), str(args.steps)], capture_output=True, text=True)
    if proc.returncode:
        return None, proc.stderr.strip().splitlines()[-1]
    return json.loads(proc.stdout.strip().splitlines()[-1])["img_s"], ""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--modes", default="train,infer")
    args = parser.parse_args()
    from resnet_gluon.amp import bfloat16_supported

    print(f"batch {args.batch_size}, {args.image_size} px, {args.steps} timed steps after 3 warm-up")
    print(f"{'mode':6} {'dtype':9} {'ours img/s':>11} {'gluoncv img/s':>14} {'ratio':>6}")
    for mode in args.modes.split(","):
        for dtype in args.dtypes.split(","):
            if dtype == "bfloat16" and not bfloat16_supported():
                print(f"{mode:6} {dtype:9} skipped: this CPU has no oneDNN bfloat16 (needs AVX-512)")
                continue
            ours, err1 = measure("ours", mode, dtype, args)
            theirs, err2 = measure("gluoncv", mode, dtype, args)
            if ours is None or theirs is None:
                print(f"{mode:6} {dtype:9} failed: {err1 or err2}")
                continue
            print(f"{mode:6} {dtype:9} {ours:11.2f} {theirs:14.2f} {ours / theirs:6.3f}", flush=True)


if __name__ == "__main__":
    main()
