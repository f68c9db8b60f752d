"""fit()'s own overhead: fit on synthetic data against a bare Gluon loop over the same model, in one run.

    .venv/bin/python benchmarks/fit_overhead.py [--image-size 28] [--batch-size 64] [--steps 8] [--rounds 16]

The bare loop is forward, loss, backward and ``gluon.Trainer.step`` with nothing else (no metrics, no reads
back to the host but the final wait). The two take turns ``--rounds`` times on the same ``resnet50_v1_5``
(float32, CPU or this worker's GPU), in the order fit, bare, bare, fit, fit, bare, ... so that a steady drift
of the machine's speed hits both alike. Warm-up is excluded: each fit call runs two epochs of ``--steps``
steps and only its second counts (the first rebuilds the graph: fit hybridizes the net); the bare loop runs
``--warmup`` steps before its clock starts.

Two figures per side: img/s (wall clock; on the reference's terms: fit's ``total_ips``) and the process's CPU
milliseconds per image (all threads). CPU time counts the work each side does and is far less sensitive than
wall time to the machine's speed changing under the run; a stall with idle threads would show in img/s only.
The goal of issue 16: fit >= 0.98x the bare loop at 28 px, batch 64, float32. The +- figure is the 95%
t-interval of the mean round ratio: on a 2-core machine whose speed changes by 10% within seconds, a round's
ratio scatters widely, and only many rounds narrow it.
"""
import argparse
import os
import statistics
import time


def bare_loop(net, data, label, trainer, loss_fn, steps: int, warmup: int):
    """(img/s, CPU ms per image) of forward/backward/step over ``steps`` steps after ``warmup`` untimed ones."""
    import mxnet as mx
    from mxnet import autograd

    for i in range(warmup + steps):
        if i == warmup:
            mx.nd.waitall()
            start, cpu = time.perf_counter(), time.process_time()
        with autograd.record():
            loss = loss_fn(net(data), label)
        loss.backward()
        trainer.step(data.shape[0])
    mx.nd.waitall()
    images = steps * data.shape[0]
    return images / (time.perf_counter() - start), 1e3 * (time.process_time() - cpu) / images


def fit_epoch(net, source, lr: float):
    """(img/s, CPU ms per image) of the second of two ``fit`` epochs (img/s: fit's own ``total_ips``)."""
    import resnet_gluon as rg

    class CPUClock(rg.Callback):
        def on_epoch_begin(self, epoch, logs):
            self.cpu = time.process_time()

        def on_epoch_end(self, epoch, logs):
            self.ms = 1e3 * (time.process_time() - self.cpu) / logs["num_images"]

    clock = CPUClock()
    history = rg.fit(net, source, epochs=2, dtype="float32", progress=False, lr=lr, warmup_epochs=0,
                     callbacks=[clock])
    return history.history["total_ips"][-1], clock.ms


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before the bare loop's clock starts")
    parser.add_argument("--rounds", type=int, default=16, help="measurements of each side, in ABBA order")
    parser.add_argument("--lr", type=float, default=0.025, help="both: the reference's 0.1 per 256 images")
    args = parser.parse_args()
    import resnet_gluon as rg
    from mxnet import gluon
    from resnet_gluon.data import pipelines
    from resnet_gluon.data.preprocessing import Preprocessing
    from resnet_gluon._core.runtime import default_context

    ctx = default_context()
    source = pipelines.SyntheticData(batch_size=args.batch_size, num_batches=args.steps, classes=10,
                                     preprocessing=Preprocessing.for_size(args.image_size), ctx=ctx)
    data, label = next(iter(source))
    net = rg.resnet50_v1_5(classes=10)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    print(f"resnet50_v1_5, {args.image_size} px, batch {args.batch_size}, float32, {ctx}; {args.steps} timed "
          f"steps per measurement, {args.rounds} rounds; load average {os.getloadavg()[0]:.1f}", flush=True)
    fit_epoch(net, source, args.lr)  # initialises the net before the bare trainer takes its parameters
    bare_trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": args.lr, "momentum": 0.9, "wd": 1e-4})
    fit, bare = [], []
    for r in range(args.rounds):
        sides = ["fit", "bare"] if r % 2 == 0 else ["bare", "fit"]
        for side in sides:
            if side == "fit":
                fit.append(fit_epoch(net, source, args.lr))
            else:
                bare.append(bare_loop(net, data, label, bare_trainer, loss_fn, args.steps, args.warmup))
        print(f"round {r + 1:2} ({sides[0]} first): fit {fit[-1][0]:7.2f} img/s {fit[-1][1]:6.2f} CPU ms/img   "
              f"bare loop {bare[-1][0]:7.2f} img/s {bare[-1][1]:6.2f} CPU ms/img   "
              f"img/s ratio {fit[-1][0] / bare[-1][0]:.3f}", flush=True)
    fit_ips, fit_cpu = zip(*fit)
    bare_ips, bare_cpu = zip(*bare)
    ratios = [f / b for f, b in zip(fit_ips, bare_ips)]
    from scipy import stats

    t = stats.t.ppf(0.975, len(ratios) - 1) if len(ratios) > 1 else float("nan")
    spread = t * statistics.stdev(ratios) / len(ratios) ** 0.5 if len(ratios) > 1 else float("nan")
    print(f"img/s: fit {statistics.mean(fit_ips):.2f}, bare loop {statistics.mean(bare_ips):.2f}; ratio of means "
          f"{statistics.mean(fit_ips) / statistics.mean(bare_ips):.3f}, median of round ratios "
          f"{statistics.median(ratios):.3f}, mean of round ratios {statistics.mean(ratios):.3f} +- {spread:.3f} "
          f"(95% t-interval over rounds; goal >= 0.98)")
    print(f"CPU ms per image: fit {statistics.median(fit_cpu):.2f}, bare loop {statistics.median(bare_cpu):.2f} "
          f"(medians); bare / fit {statistics.median(bare_cpu) / statistics.median(fit_cpu):.3f}; "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
